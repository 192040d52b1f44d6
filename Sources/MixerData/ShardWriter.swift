// Writing WebDataset shards from another dataset (`mixer-dist shard create`): each sample becomes
// two tar members, `KEY.jpg|jpeg|png` (the encoded image) and `KEY.cls` (its label as decimal
// text), KEY being the sample's number in its split, zero-padded to six digits or more.
//
// Image folders give their files' bytes unchanged; CIFAR and MNIST (held decoded in memory) give
// each image encoded as PNG (lossless). A split's samples are cut into shards in order: a shard
// closes before the sample that would take its source bytes past `shardBytes` or its samples
// past `shardSamples`. The cut is planned from the source sizes (a folder's file sizes, the raw
// pixels of CIFAR/MNIST, whose PNGs come out smaller), the same on every rank, so under mpirun
// rank r writes shards r, r + N, r + 2N, ... of each split; after a barrier rank 0 writes the
// indexes (scanning the written shards, which checks them) and `classes.txt`.

import Foundation

/// A dataset whose samples can be given as encoded image files (for writing shards).
public protocol EncodedImageSource: Dataset {
  /// The encoded image of sample `index` and the file extension for it (jpg, jpeg or png).
  func encodedImage(_ index: Int) throws -> (bytes: [UInt8], fileExtension: String)
  /// The label of sample `index`, without decoding it.
  func label(of index: Int) -> Int
  /// About how many bytes sample `index`'s image takes (for planning shard sizes; no decoding).
  func sourceSize(_ index: Int) -> Int
}

extension ImageFolder: EncodedImageSource {
  public func encodedImage(_ index: Int) throws -> (bytes: [UInt8], fileExtension: String) {
    let path = path(of: index)
    do {
      return (try readFileBytes(path), (path as NSString).pathExtension.lowercased())
    } catch {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(path): \(error)")
    }
  }

  public func sourceSize(_ index: Int) -> Int {
    var info = stat()
    return stat(path(of: index), &info) == 0 ? Int(info.st_size) : 0
  }
}

extension CIFAR: EncodedImageSource {}
extension MNIST: EncodedImageSource {}

extension InMemoryImageDataset {
  public func encodedImage(_ index: Int) throws -> (bytes: [UInt8], fileExtension: String) {
    let image = image(index)
    return (try encodePNG(pixels: image.pixels, width: image.width, height: image.height, channels: 3), "png")
  }

  public func sourceSize(_ index: Int) -> Int {
    let image = image(index)
    return image.width * image.height * 3
  }
}

extension WebDataset: EncodedImageSource {
  public func encodedImage(_ index: Int) throws -> (bytes: [UInt8], fileExtension: String) {
    let bytes = try imageBytes(index)
    let format = bytes.withUnsafeBytes { ImageFormat.detect($0) }
    return (bytes, format == .png ? "png" : "jpg")
  }

  public func sourceSize(_ index: Int) -> Int { Int(self.index.sizes[Int(samples[index])]) }
}

/// How to cut splits into shards.
public struct ShardPlan: Sendable, Equatable {
  /// Most source bytes per shard (at least one sample per shard whatever its size).
  public var shardBytes: Int
  /// Most samples per shard.
  public var shardSamples: Int

  public init(shardBytes: Int = 256 << 20, shardSamples: Int = 100_000) {
    self.shardBytes = shardBytes
    self.shardSamples = shardSamples
  }

  /// The first sample of each shard and the end: shard s holds `bounds[s]..<bounds[s + 1]`.
  public func bounds(sizes: [Int]) -> [Int] {
    var bounds = [0]
    var bytes = 0
    for (sample, size) in sizes.enumerated() {
      let member = 1024 + (size + 511) / 512 * 512  // two headers, the data and its padding
      if sample > bounds.last!, bytes + member > shardBytes || sample - bounds.last! >= shardSamples {
        bounds.append(sample)
        bytes = 0
      }
      bytes += member
    }
    return bounds + [sizes.count]
  }
}

/// Parses a size such as `256MB`, `1.5GB`, `64KiB` or `1000000` (bytes; K/M/G are powers of 1024).
public func parseByteSize(_ text: String) throws -> Int {
  let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
  let units: [(String, Double)] = [
    ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("KB", 1024), ("MB", 1_048_576),
    ("GB", 1_073_741_824), ("K", 1024), ("M", 1_048_576), ("G", 1_073_741_824), ("B", 1),
  ]
  let (number, scale) = units.first { trimmed.hasSuffix($0.0) }.map { (String(trimmed.dropLast($0.0.count)), $0.1) } ?? (trimmed, 1)
  guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value * scale >= 1 else {
    throw DataError.invalidConfiguration("--shard-size \(text): expected a size such as 256MB, 1GB or 1000000")
  }
  return Int(value * scale)
}

/// Writes the shards of `splits` (a source per split name, e.g. "train", "val") into `output` as
/// `<split>-NNNNNN.tar`: this rank's share of them (shards `rank`, `rank + worldSize`, ...), then,
/// after `barrier`, on rank 0 only, each split's index `<split>.wdsindex` and `classes.txt` (from
/// the first split's class names). Refuses an output folder that already holds shards. Returns
/// the number of shards and samples written per split (every rank returns the totals).
@discardableResult
public func createShards(
  splits: [(name: String, source: any EncodedImageSource)], output: String, plan: ShardPlan, rank: Int = 0,
  worldSize: Int = 1, barrier: () throws -> Void = {}, log: (String) -> Void = { _ in }
) throws -> [(split: String, shards: Int, samples: Int)] {
  guard plan.shardBytes > 0, plan.shardSamples > 0 else {
    throw DataError.invalidConfiguration("shard size and samples per shard must be positive")
  }
  try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
  for (name, _) in splits where ShardSet(directory: output, prefix: name) != nil {
    throw DataError.invalidConfiguration("\(output) already holds \(name)-NNNNNN.tar shards: choose an empty folder")
  }
  try barrier()  // every rank has looked before any writes
  var written: [(String, Int, Int)] = []
  for (name, source) in splits {
    let bounds = plan.bounds(sizes: (0..<source.count).map(source.sourceSize))
    let shards = bounds.count - 1
    let width = max(6, String(source.count - 1).count)
    for shard in stride(from: rank, to: shards, by: worldSize) {
      let path = output + "/" + name + "-" + String(format: "%06d", shard) + ".tar"
      let writer = try TarWriter(path: path)
      for sample in bounds[shard]..<bounds[shard + 1] {
        let digits = String(sample)
        let key = String(repeating: "0", count: max(0, width - digits.count)) + digits
        let (bytes, fileExtension) = try source.encodedImage(sample)
        try writer.append(name: key + "." + fileExtension, bytes: bytes)
        try writer.append(name: key + ".cls", bytes: Array(String(source.label(of: sample)).utf8))
      }
      try writer.finish()
      log("\(path): samples \(bounds[shard])..<\(bounds[shard + 1]), \(writer.bytesWritten) bytes")
    }
    written.append((name, shards, source.count))
  }
  try barrier()
  if rank == 0 {
    for (name, _) in splits {
      guard let set = ShardSet(directory: output, prefix: name) else {
        throw DataError.invalidConfiguration("\(output): the \(name) shards are missing after writing")
      }
      let started = Date()
      let index = try ShardIndex.build(set)
      try index.write(to: set.indexPath)
      log("\(set.indexPath): \(index.count) samples of \(set.shards.count) shard(s) indexed in "
        + String(format: "%.2f s", Date().timeIntervalSince(started)))
    }
    if let names = splits.first?.source.classNames {
      try (names.joined(separator: "\n") + "\n").write(toFile: output + "/classes.txt", atomically: true, encoding: .utf8)
    }
  }
  try barrier()
  return written
}
