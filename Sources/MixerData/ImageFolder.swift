// A folder of JPEG/PNG images, one subfolder per class (torchvision's ImageFolder, ImageNet's
// layout):
//
//   ROOT/train/<class>/**/*.{jpg,jpeg,png}   and   ROOT/val/<class>/...    (or ROOT/validation)
//   ROOT/<class>/**/*.{jpg,jpeg,png}                                      (one tree)
//
// Classes are the training tree's subfolders in byte order of their names; samples are listed
// class by class, files in byte order of their paths, so index i is the same file on every rank
// and machine. Validation is `ROOT/val` when it exists; otherwise, or when `valFraction` is given,
// each file of the training tree goes to validation when a seeded hash of its path below the tree
// (e.g. "n01440764/n01440764_10026.JPEG") falls below `valFraction`.
//
// Loading decodes the file (format from its bytes; see ImageCodec.swift), crops, resizes, flips and
// augments it for (seed, epoch, index) (Preprocess.swift) and normalises it. The crop is drawn from
// the header's size before decoding, so a JPEG whose crop has pixels to spare is decoded at 1/2,
// 1/4 or 1/8 of its size (`jpegDecodeScaling`, on by default; measured on 2000×1500 JPEGs with
// train crops: 91 instead of 73 images/s per thread; no change at ImageNet's typical 500×375).
//
// A file that cannot be read or decoded throws `DataError.sampleFailed` naming it. With
// `skipBadImages`, the failure is recorded in `badImages` (and reported once per file on standard
// error) and sample i is replaced by the next index i+1, i+2, ... (cyclically) whose file decodes,
// with i's crop and flip and the replacement's label: the same substitute on every rank and every
// run. Up to 100 consecutive bad files are skipped before the load fails.

import Foundation
import MixerNumerics

/// Labelled JPEG/PNG images in one folder per class, preprocessed to a fixed size.
public struct ImageFolder: EpochAugmentedDataset {
  /// The training tree (`ROOT/train` or `ROOT`) or validation tree (`ROOT/val`) this split reads.
  public let directory: String
  public let split: DataSplit
  public let classNames: [String]
  public let preprocessing: ImagePreprocessing
  public let skipBadImages: Bool
  public let jpegDecodeScaling: Bool
  /// Files substituted so far (with `skipBadImages`).
  public let badImages = BadImageLog()
  let files: FileTable

  public var count: Int { files.count }
  public var numClasses: Int { classNames.count }
  public var height: Int { preprocessing.outputHeight }
  public var width: Int { preprocessing.outputWidth }

  static let splitTag: UInt64 = 0x5350_4C54  // "SPLT"
  static let extensions: Set<String> = ["jpg", "jpeg", "png"]
  static let maximumSkips = 100

  /// Lists the files of `split` under `root`. Throws `DataError.invalidConfiguration` when the
  /// folder has no class folders, a class folder holds no images, the validation tree names a
  /// class the training tree lacks, or the split is empty.
  public init(
    root: String, split: DataSplit, imageHeight: Int, imageWidth: Int, seed: UInt64,
    options: DataOptions = DataOptions()
  ) throws {
    try options.validate()
    let rootURL = URL(fileURLWithPath: root)
    guard isDirectory(rootURL.path) else {
      throw DataError.invalidConfiguration(
        "image folder \(root) does not exist or is not a directory")
    }
    let (trainTree, tree, keep) = ImageFolder.splitTrees(root: rootURL, split: split, options: options)
    let classes = try ImageFolder.classFolders(trainTree)
    guard !classes.isEmpty else {
      throw DataError.invalidConfiguration(
        "no class folders in \(trainTree.path): expected ROOT/train/<class>/*.jpg (and ROOT/val/<class>/...) "
          + "or ROOT/<class>/*.jpg")
    }

    let labelOf = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    let folders = tree == trainTree ? classes : try ImageFolder.classFolders(tree)
    let walk = try FolderWalk(tree: tree, extensions: ImageFolder.extensions)
    var found: [FoundFile] = []
    var labels: [Int32] = []
    for folder in folders {
      guard let label = labelOf[folder] else {
        throw DataError.invalidConfiguration(
          "\(tree.appendingPathComponent(folder).path) is a class the training tree \(trainTree.path) does not have"
        )
      }
      let images = try walk.files(below: folder)
      found += images
      labels += Array(repeating: Int32(label), count: images.count)
    }
    // a file reached twice counts once, in the class of its own path (see FolderWalk.swift)
    let distinct = walk.distinct(found)
    var perClass = [Int](repeating: 0, count: classes.count)
    let table = FileTable()
    for (index, file) in found.enumerated() where distinct[index] {
      perClass[Int(labels[index])] += 1
      if keep?(file.path) ?? true { table.append(path: file.path, label: labels[index]) }
    }
    let links = walk.counts.summary
    for folder in folders where perClass[labelOf[folder]!] == 0 {
      throw DataError.invalidConfiguration(
        "class folder \(tree.appendingPathComponent(folder).path) holds no .jpg, .jpeg or .png images"
          + (links.map { " of its own (\($0))" } ?? ""))
    }
    guard table.count > 0 else {
      throw DataError.invalidConfiguration(
        "the \(split.rawValue) split of \(root) is empty (valFraction \(options.valFraction ?? 0.1))"
      )
    }
    directory = tree.path
    self.split = split
    classNames = classes
    files = table
    preprocessing = options.preprocessing(
      kind: .folder, split: split, height: imageHeight, width: imageWidth, seed: seed)
    skipBadImages = options.skipBadImages
    jpegDecodeScaling = options.jpegDecodeScaling
    if keep == nil {
      splitDescription = "\(split == .train ? "train" : "validation"): \(tree.path) (\(table.count) images"
        + (links.map { "; \($0)" } ?? "") + ")"
    } else {
      let fraction = options.valFraction ?? 0.1
      let ignored = ["val", "validation"].map { rootURL.appendingPathComponent($0) }
        .first { trainTree != rootURL && isDirectory($0.path) }
      splitDescription = "\(split == .train ? "train" : "validation"): \(table.count) images "
        + (split == .train ? "left in" : "held out of") + " \(trainTree.path) (--val-fraction \(fraction), "
        + "by a hash of each file name with split seed \(options.splitSeed))"
        + (ignored.map { "; \($0.path) is not used because --val-fraction is given" } ?? "")
        + (links.map { "; in \(trainTree.path): \($0)" } ?? "")
    }
    linkCounts = walk.counts
  }

  /// How this split was made (its folder, or the held-out share of train/ and the seed), and the
  /// symbolic links its tree held.
  public let splitDescription: String?
  /// The symbolic links the listing of this split's tree followed and skipped.
  public let linkCounts: LinkCounts

  /// Reads sample `index`'s file and checks its header, end and declared size (no decoding).
  public func checkSample(_ index: Int) throws {
    let path = path(of: index)
    guard let data = FileManager.default.contents(atPath: path) else {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(path): cannot read the file")
    }
    do {
      _ = try data.withUnsafeBytes { try checkImageHeader($0) }
    } catch {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(path): \(error)")
    }
  }

  /// The file of sample `index`.
  public func path(of index: Int) -> String {
    directory + "/" + files.path(index)
  }

  /// The label of sample `index`, without decoding it.
  public func label(of index: Int) -> Int { Int(files.labels[index]) }

  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    try load(index, epoch: 0, into: pixels)
  }

  public func load(_ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int
  {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(
        index: index, step: nil, reason: "index out of range 0..<\(count) of \(directory)")
    }
    do {
      return try load(file: index, as: index, epoch: epoch, into: pixels)
    } catch {
      guard skipBadImages else {
        throw DataError.sampleFailed(
          index: index, step: nil, reason: "\(path(of: index)): \(error) (--skip-bad-images substitutes such files)")
      }
      badImages.record(path: path(of: index), reason: "\(error)")
    }
    let tries = min(ImageFolder.maximumSkips, count - 1)
    for offset in stride(from: 1, through: tries, by: 1) {
      let substitute = (index + offset) % count
      do {
        return try load(file: substitute, as: index, epoch: epoch, into: pixels)
      } catch {
        badImages.record(path: path(of: substitute), reason: "\(error)")
      }
    }
    throw DataError.sampleFailed(
      index: index, step: nil,
      reason: "\(path(of: index)) and the next \(tries) images all fail to decode")
  }

  /// Decodes file `file` and preprocesses it with the randomness of sample `index`.
  func load(file: Int, as index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws
    -> Int
  {
    let bytes = try readFileBytes(path(of: file))
    try bytes.withUnsafeBytes { raw in
      try preprocessing.process(
        encoded: raw, jpegDecodeScaling: jpegDecodeScaling, epoch: epoch, index: index, into: pixels)
    }
    return label(of: file)
  }

  /// The training tree (`ROOT/train`, or `ROOT` without one), the tree `split` reads, and, when
  /// validation is held out of the training tree, which paths below it belong to `split`: the
  /// validation tree is `ROOT/val` (or `ROOT/validation`) when it exists and `valFraction` is nil;
  /// otherwise a path is held out when its seeded hash falls below `valFraction ?? 0.1`. Shared by
  /// the image and segmentation folders.
  static func splitTrees(root: URL, split: DataSplit, options: DataOptions) -> (
    train: URL, tree: URL, keep: ((String) -> Bool)?
  ) {
    let trainTree =
      isDirectory(root.appendingPathComponent("train").path)
      ? root.appendingPathComponent("train") : root
    let valTree = ["val", "validation"].map { root.appendingPathComponent($0) }
      .first { trainTree != root && isDirectory($0.path) }
    if options.valFraction == nil, let valTree {
      return (trainTree, split == .train ? trainTree : valTree, nil)
    }
    let fraction = options.valFraction ?? 0.1
    let splitSeed = options.splitSeed
    return (trainTree, trainTree, { path in
      let heldOut = ImageFolder.splitHash(path, seed: splitSeed) < fraction
      return split == .validation ? heldOut : !heldOut
    })
  }

  /// A uniform number in [0, 1) from a seeded hash of a path (FNV-1a, then `CounterRNG.hash`).
  static func splitHash(_ path: String, seed: UInt64) -> Double {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in path.utf8 {
      hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }
    return Double(CounterRNG.hash(seed, splitTag, hash, 0) >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// Subfolder names of `url` (not starting with "."), in byte order.
  static func classFolders(_ url: URL) throws -> [String] {
    try listDirectory(url).filter {
      !$0.hasPrefix(".") && isDirectory(url.appendingPathComponent($0).path)
    }
  }

  /// Image files below `tree/folder` (any depth, links followed as FolderWalk.swift says), as
  /// paths below `tree`, in walk order.
  static func imageFiles(in tree: URL, folder: String) throws -> [String] {
    let walk = try FolderWalk(tree: tree, extensions: extensions)
    let found = try walk.files(below: folder)
    return zip(found, walk.distinct(found)).filter(\.1).map(\.0.path)
  }
}

extension ImagePreprocessing {
  /// Decodes an encoded JPEG/PNG and preprocesses it with the randomness of (epoch, index); the
  /// crop is drawn from the header's size first, so a JPEG may be decoded at a reduced size
  /// (`jpegDecodeScaling`). Shared by the image folders and the WebDataset shards.
  func process(
    encoded bytes: UnsafeRawBufferPointer, jpegDecodeScaling: Bool, epoch: Int, index: Int,
    into pixels: UnsafeMutablePointer<Float>
  ) throws {
    let (image, fullWidth, fullHeight) = try decodeImage(
      bytes,
      minimumScale: jpegDecodeScaling
        ? { width, height in
          let (box, _) = crop(sourceWidth: width, sourceHeight: height, epoch: epoch, index: index)
          return minimumDecodeScale(box: box)
        } : nil)
    let (box, flip) = crop(sourceWidth: fullWidth, sourceHeight: fullHeight, epoch: epoch, index: index)
    let scaledBox = box.scaled(Double(image.width) / Double(fullWidth), Double(image.height) / Double(fullHeight))
    process(image: image, box: scaledBox, flip: flip, epoch: epoch, index: index, into: pixels)
  }
}

/// Relative paths and labels of many files, packed (ImageNet has 1.28 million).
final class FileTable: @unchecked Sendable {
  private(set) var bytes: [UInt8] = []
  private(set) var offsets: [Int] = [0]
  private(set) var labels: [Int32] = []

  var count: Int { labels.count }

  func append(path: String, label: Int32) {
    bytes.append(contentsOf: path.utf8)
    offsets.append(bytes.count)
    labels.append(label)
  }

  func path(_ index: Int) -> String {
    String(decoding: bytes[offsets[index]..<offsets[index + 1]], as: UTF8.self)
  }
}

/// Entry names of a directory in byte order of their UTF-8.
func listDirectory(_ url: URL) throws -> [String] {
  do {
    return try FileManager.default.contentsOfDirectory(atPath: url.path)
      .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
  } catch {
    throw DataError.invalidConfiguration("cannot list \(url.path): \(error.localizedDescription)")
  }
}

func isDirectory(_ path: String) -> Bool {
  var directory: ObjCBool = false
  return FileManager.default.fileExists(atPath: path, isDirectory: &directory)
    && directory.boolValue
}
