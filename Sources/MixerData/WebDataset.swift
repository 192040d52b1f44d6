// WebDataset shards as a random-access dataset (`--data wds:PATH`):
//
//   wds:DIR                          DIR/train-NNNNNN.tar and DIR/val-NNNNNN.tar (shard create)
//   wds:'DIR/train-{000000..000146}.tar'              validation: DIR/val-NNNNNN.tar
//   wds:'DIR/train-{000000..000146}.tar,DIR/val-{000000..000006}.tar'
//
// The split's index (ShardIndex.swift) is read, or built and stored on first use, and the shards
// checked against it. Sample i is the index's i-th sample (shard order, then tar order), so the
// existing sampler's permutation of global indices, keyed by (seed, epoch), gives the same
// global batches on any number of ranks and an exact resume; each rank reads its samples with
// positioned reads (`pread`) from a cache of open shards (every shard, when the open-file limit
// allows). Loading decodes and augments
// exactly as an image folder does (same crop, flip, RandAugment and eval crop), so shards made
// from a folder train to the same parameters as the folder.
//
// Classes: `classes.txt` (one name per line, class 0 first) in the training shards' folder, else
// 0..<(largest training label + 1) named by number. A sample without an image, without a label,
// with an unreadable label or with a label outside the classes is refused when the dataset is
// opened, naming its shard and key; with `skipBadImages` such samples are left out (counted in
// `skippedSamples` and said once on stderr), and images that fail to decode are substituted as
// in `ImageFolder` (the next sample that decodes, with the failed sample's crop).

import Foundation

/// Labelled JPEG/PNG images in WebDataset tar shards, read by offset through an index.
public struct WebDataset: EpochAugmentedDataset {
  public let shardSet: ShardSet
  public let index: ShardIndex
  public let split: DataSplit
  public let classNames: [String]
  public let preprocessing: ImagePreprocessing
  public let skipBadImages: Bool
  public let jpegDecodeScaling: Bool
  /// Decode failures substituted so far (with `skipBadImages`).
  public let badImages = BadImageLog()
  /// Samples left out when opening (no image, no or bad label; with `skipBadImages`).
  public let skippedSamples: Int
  /// Whether opening built the index (it was missing or listed other shards).
  public let builtIndex: Bool
  public let splitDescription: String?
  /// Dataset index → index sample.
  let samples: [UInt32]
  let files: OpenShards

  public var count: Int { samples.count }
  public var numClasses: Int { classNames.count }
  public var height: Int { preprocessing.outputHeight }
  public var width: Int { preprocessing.outputWidth }

  /// Opens the `split` shards of `path` (the part of `wds:PATH` after the colon).
  public init(
    path: String, split: DataSplit, imageHeight: Int, imageWidth: Int, seed: UInt64,
    options: DataOptions = DataOptions()
  ) throws {
    try options.validate()
    let set = try ShardSet.resolve(path, split: split)
    let (index, built) = try ShardIndex.load(set)
    let trainSet = split == .train ? set : try ShardSet.resolve(path, split: .train)
    let classesFile = trainSet.folder + "/classes.txt"
    if FileManager.default.fileExists(atPath: classesFile) {
      classNames = try String(contentsOfFile: classesFile, encoding: .utf8).split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      guard !classNames.isEmpty else { throw DataError.invalidConfiguration("\(classesFile) names no classes") }
    } else {
      let trainIndex = split == .train ? index : try ShardIndex.load(trainSet).index
      let largest = Int(trainIndex.labels.max() ?? -1)
      guard largest >= 0 else {
        throw DataError.invalidConfiguration("the shards of \(trainSet.indexPath) hold no labelled sample (KEY.cls)")
      }
      classNames = (0...largest).map(String.init)
    }

    var samples: [UInt32] = []
    samples.reserveCapacity(index.count)
    var skipped: [String] = []
    for sample in 0..<index.count {
      let label = index.labels[sample]
      let problem: String?
      if index.offsets[sample] == ShardIndex.missingImage {
        problem = "has no image (KEY.jpg, .jpeg or .png)"
      } else if label == ShardIndex.missingLabel {
        problem = "has no label (KEY.cls)"
      } else if label == ShardIndex.unreadableLabel {
        problem = "has a .cls that is not a class index (a non-negative decimal number)"
      } else if Int(label) >= classNames.count {
        problem = "has label \(label), outside the \(classNames.count) classes"
          + (FileManager.default.fileExists(atPath: classesFile) ? " of \(classesFile)" : "")
      } else {
        problem = nil
      }
      guard let problem else {
        samples.append(UInt32(sample))
        continue
      }
      let where_ = "shard \(set.folder)/\(index.shards[Int(index.shardOfSample[sample])].name): sample \(index.key(sample))"
      guard options.skipBadImages else {
        throw DataError.invalidConfiguration("\(where_) \(problem) (--skip-bad-images leaves such samples out)")
      }
      skipped.append("\(where_) \(problem)")
    }
    guard !samples.isEmpty else {
      throw DataError.invalidConfiguration("the \(split.rawValue) shards of \(set.indexPath) hold no usable sample")
    }
    if let first = skipped.first {
      FileHandle.standardError.write(Data(
        "mixer-dist: warning: left out \(skipped.count) bad sample(s) of \(set.indexPath) (--skip-bad-images); first: \(first)\n".utf8))
    }
    shardSet = set
    self.index = index
    self.split = split
    self.samples = samples
    skippedSamples = skipped.count
    builtIndex = built
    files = OpenShards(paths: set.shards)
    // preprocessed as an image folder is, so shards of a folder train as the folder does
    preprocessing = options.preprocessing(kind: .folder, split: split, height: imageHeight, width: imageWidth, seed: seed)
    skipBadImages = options.skipBadImages
    jpegDecodeScaling = options.jpegDecodeScaling
    splitDescription = "\(split == .train ? "train" : "validation"): \(set.shards.count) shard(s) indexed by "
      + "\(set.indexPath)\(built ? " (built now)" : "") (\(samples.count) images"
      + (skipped.isEmpty ? ")" : ", \(skipped.count) bad sample(s) left out)")
  }

  /// The label of sample `index`, without reading it.
  public func label(of index: Int) -> Int { Int(self.index.labels[Int(samples[index])]) }

  /// The shard and key of sample `index`, for messages.
  public func describe(_ index: Int) -> String {
    let sample = Int(samples[index])
    return "\(shardSet.shards[Int(self.index.shardOfSample[sample])]): sample \(self.index.key(sample))"
  }

  /// The encoded image bytes of sample `index` (one positioned read).
  public func imageBytes(_ index: Int) throws -> [UInt8] {
    let sample = Int(samples[index])
    let shard = Int(self.index.shardOfSample[sample])
    let size = Int(self.index.sizes[sample])
    let offset = Int64(self.index.offsets[sample])
    var bytes = [UInt8](repeating: 0, count: size)
    let got = try files.read(shard: shard, offset: offset, into: &bytes)
    guard got == size else {
      throw ImageDecodeError("read \(got) of \(size) bytes at offset \(offset): the shard is shorter than its index says")
    }
    return bytes
  }

  public func checkSample(_ index: Int) throws {
    do {
      let bytes = try imageBytes(index)
      _ = try bytes.withUnsafeBytes { try checkImageHeader($0) }
    } catch {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(describe(index)): \(error)")
    }
  }

  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    try load(index, epoch: 0, into: pixels)
  }

  public func load(_ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(index: index, step: nil, reason: "index out of range 0..<\(count) of \(shardSet.indexPath)")
    }
    do {
      return try load(sample: index, as: index, epoch: epoch, into: pixels)
    } catch {
      guard skipBadImages else {
        throw DataError.sampleFailed(
          index: index, step: nil, reason: "\(describe(index)): \(error) (--skip-bad-images substitutes such images)")
      }
      badImages.record(path: describe(index), reason: "\(error)")
    }
    let tries = min(ImageFolder.maximumSkips, count - 1)
    for offset in stride(from: 1, through: tries, by: 1) {
      let substitute = (index + offset) % count
      do {
        return try load(sample: substitute, as: index, epoch: epoch, into: pixels)
      } catch {
        badImages.record(path: describe(substitute), reason: "\(error)")
      }
    }
    throw DataError.sampleFailed(
      index: index, step: nil, reason: "\(describe(index)) and the next \(tries) images all fail to decode")
  }

  /// Reads and decodes sample `sample` with the randomness of sample `index`.
  func load(sample: Int, as index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    let bytes = try imageBytes(sample)
    try bytes.withUnsafeBytes { raw in
      try preprocessing.process(encoded: raw, jpegDecodeScaling: jpegDecodeScaling, epoch: epoch, index: index, into: pixels)
    }
    return label(of: sample)
  }
}

/// The cache of open shard files shared by the loader threads: positioned reads need no seeking,
/// so one descriptor serves every thread. The global order visits shards at random, so the cache
/// holds every shard when it can (each shard is then opened once per run): by default as many as
/// half the open-file limit, which is raised towards its hard limit when the shards need it.
/// Beyond that the least recently used unused descriptor is closed.
final class OpenShards: @unchecked Sendable {
  let paths: [String]
  let capacity: Int
  private let lock = NSLock()
  private var open: [Int: (descriptor: Int32, users: Int, used: UInt64)] = [:]
  private var clock: UInt64 = 0
  /// Descriptors opened so far (a measure of metadata traffic).
  private(set) var opened = 0

  init(paths: [String], capacity: Int? = nil) {
    self.paths = paths
    self.capacity = max(1, capacity ?? OpenShards.defaultCapacity(shards: paths.count))
  }

  /// Every shard when half the open-file limit allows it (raising the soft limit when needed and
  /// allowed), else half the limit.
  static func defaultCapacity(shards: Int) -> Int {
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 64 }
    let wanted = rlim_t(2 * shards + 64)
    if limit.rlim_cur < wanted && limit.rlim_cur < limit.rlim_max {
      var raised = limit
      raised.rlim_cur = min(wanted, limit.rlim_max)
      if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    return min(shards, Int(min(limit.rlim_cur, 1 << 20)) / 2)
  }

  deinit {
    for (_, file) in open { close(file.descriptor) }
  }

  /// Reads up to `bytes.count` bytes at `offset` of shard `shard`; returns how many (fewer only at
  /// the end of the file).
  func read(shard: Int, offset: Int64, into bytes: inout [UInt8]) throws -> Int {
    let descriptor = try acquire(shard)
    defer { release(shard) }
    var done = 0
    while done < bytes.count {
      let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
      if got < 0 && errno == EINTR { continue }
      guard got >= 0 else { throw ImageDecodeError("\(paths[shard]): read failed: \(String(cString: strerror(errno)))") }
      if got == 0 { break }
      done += got
    }
    return done
  }

  private func acquire(_ shard: Int) throws -> Int32 {
    try lock.withLock {
      clock += 1
      if var file = open[shard] {
        file.users += 1
        file.used = clock
        open[shard] = file
        return file.descriptor
      }
      let descriptor = Foundation.open(paths[shard], O_RDONLY | O_CLOEXEC)
      guard descriptor >= 0 else {
        throw ImageDecodeError("\(paths[shard]): cannot open: \(String(cString: strerror(errno)))")
      }
      open[shard] = (descriptor, 1, clock)
      opened += 1
      if open.count > capacity,
        let oldest = open.filter({ $0.value.users == 0 }).min(by: { $0.value.used < $1.value.used })
      {
        close(oldest.value.descriptor)
        open[oldest.key] = nil
      }
      return descriptor
    }
  }

  private func release(_ shard: Int) {
    lock.withLock { open[shard]?.users -= 1 }
  }
}
