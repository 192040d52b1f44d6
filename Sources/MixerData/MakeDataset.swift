// `--data KIND:PATH` → a dataset. KIND is one of shapes, folder, wds, cifar10, cifar100, mnist,
// fashion-mnist, and for segmentation segshapes (embedded) and segfolder (images + PNG masks);
// given a bare PATH the kind is inferred from what the directory holds:
//   data_batch_1.bin (or cifar-10-batches-bin/)  → cifar10
//   train.bin + test.bin (or cifar-100-binary/)  → cifar100
//   train-images-idx3-ubyte[.gz]                 → mnist (Fashion-MNIST has the same files: say
//                                                  fashion-mnist:PATH to get its class names)
//   images/ + masks/ (or train/images/)          → segfolder
//   train-NNNNNN.tar shards                      → wds (WebDataset shards, see WebDataset.swift)
//   train/ or class folders holding images       → folder

import Foundation

/// The kinds of data `--data` names.
public enum DataKind: String, Sendable, CaseIterable, Codable {
  case shapes
  case folder
  case cifar10
  case cifar100
  case mnist
  case fashionMNIST = "fashion-mnist"
  case segshapes
  case segfolder
  case wds

  /// The kind and what it reads, for `--help` (a new kind cannot be added without one).
  public var help: String {
    switch self {
    case .shapes: return "shapes (embedded, the default)"
    case .folder: return "folder (class subfolders of JPEG/PNG images)"
    case .cifar10: return "cifar10"
    case .cifar100: return "cifar100"
    case .mnist: return "mnist"
    case .fashionMNIST: return "fashion-mnist"
    case .segshapes: return "segshapes (embedded; the default of --task segmentation)"
    case .segfolder: return "segfolder (images/ + masks/ PNGs, for --task segmentation)"
    case .wds: return "wds (WebDataset .tar shards: a folder of train-NNNNNN.tar, or TRAIN_PATTERN[,VAL_PATTERN])"
    }
  }

  /// Every kind with what it reads, comma-separated, for `--help`.
  public static var helpList: String { allCases.map(\.help).joined(separator: ", ") }

  /// Kinds that need no path.
  public var isEmbedded: Bool { self == .shapes || self == .segshapes }
  /// Kinds with a class per pixel.
  public var hasMasks: Bool { self == .segshapes || self == .segfolder }
}

/// `--data` parsed once: `KIND:PATH`, a `KIND` alone (the embedded kinds, and `default` for
/// shapes) or a bare `PATH` whose kind is inferred from what the directory holds when the data
/// is opened (`resolved()`). The text is kept as given: a run records it (made absolute).
public struct DataSpec: Equatable, Sendable, CustomStringConvertible {
  private enum Form: Equatable, Sendable {
    /// `KIND:PATH`, KIND spelled as given (any case)
    case prefixed(DataKind, spelling: String, path: String)
    /// `KIND` alone, or `default` (shapes)
    case alone(DataKind)
    /// a bare `PATH`
    case path(String)
  }

  /// The text as given.
  public let text: String
  private let form: Form

  /// Reads `text`; errors (a missing path, a folder of unknown data) come from `resolved()`.
  public init(_ text: String) {
    self.text = text
    if let colon = text.firstIndex(of: ":"), let kind = DataKind(rawValue: String(text[..<colon]).lowercased()) {
      form = .prefixed(kind, spelling: String(text[..<colon]), path: String(text[text.index(after: colon)...]))
    } else if let kind = DataKind(rawValue: text.lowercased()) {
      form = .alone(kind)
    } else if text.lowercased() == "default" {
      form = .alone(.shapes)
    } else {
      form = .path(text)
    }
  }

  public var description: String { text }

  /// The kind the text names (nil for a bare path, whose kind `resolved()` infers).
  public var kind: DataKind? {
    switch form {
    case .prefixed(let kind, _, _), .alone(let kind): return kind
    case .path: return nil
    }
  }

  /// True for the embedded kinds (generated in memory: no path, nothing to find on disk).
  public var isEmbedded: Bool { kind?.isEmbedded ?? false }

  /// The kind and the path it reads: a bare path's kind inferred from what the directory holds;
  /// throws when a kind that reads files has no path.
  public func resolved() throws -> (kind: DataKind, path: String) {
    switch form {
    case .prefixed(let kind, _, let path):
      guard kind.isEmbedded || !path.isEmpty else {
        throw DataError.invalidConfiguration("--data \(text): give the path after '\(kind.rawValue):'")
      }
      return (kind, path)
    case .alone(let kind):
      guard kind.isEmbedded else {
        throw DataError.invalidConfiguration("--data \(text) needs a path: \(kind.rawValue):PATH")
      }
      return (kind, "")
    case .path(let path):
      return (try inferDataKind(directory: path), path)
    }
  }

  /// The spec with its path made absolute against the current directory, so a run's record reads
  /// the same data from anywhere: `folder:digits` → `folder:/home/me/digits`, a bare `digits` →
  /// `/home/me/digits` (its kind still inferred when used), each pattern of `wds:TRAIN,VAL`;
  /// embedded kinds and absolute paths are kept as they are.
  public var absolute: DataSpec {
    func absolute(_ path: String) -> String {
      guard !path.isEmpty, !path.hasPrefix("/") else { return path }
      let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
      let directory = FileManager.default.currentDirectoryPath
      return relative == "." ? directory : (directory as NSString).appendingPathComponent(relative)
    }
    switch form {
    case .prefixed(let kind, let spelling, let path):
      if kind.isEmbedded { return self }
      let paths = kind == .wds ? splitTopLevelCommas(path).map(absolute) : [absolute(path)]
      return DataSpec(spelling + ":" + paths.joined(separator: ","))
    case .alone: return self
    case .path(let path): return DataSpec(absolute(path))
    }
  }
}

/// The kind of dataset a directory holds (see the top of this file).
public func inferDataKind(directory: String) throws -> DataKind {
  let known = DataKind.allCases.map(\.rawValue).joined(separator: ", ")
  guard isDirectory(directory) else {
    throw DataError.invalidConfiguration(
      "--data \(directory): no such directory, and not KIND:PATH with KIND one of \(known)")
  }
  let url = URL(fileURLWithPath: directory)
  let has = { (name: String) in
    FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path)
  }
  if has("data_batch_1.bin") || has("cifar-10-batches-bin/data_batch_1.bin") { return .cifar10 }
  if (has("train.bin") && has("test.bin")) || has("cifar-100-binary/train.bin") { return .cifar100 }
  if ["train-images-idx3-ubyte", "train-images.idx3-ubyte"].contains(where: {
    has($0) || has($0 + ".gz")
  }) {
    return .mnist
  }
  if isDirectory(url.appendingPathComponent("images").path) && isDirectory(url.appendingPathComponent("masks").path)
    || isDirectory(url.appendingPathComponent("train/images").path)
  {
    return .segfolder
  }
  if ShardSet(directory: directory, prefix: "train") != nil { return .wds }
  if isDirectory(url.appendingPathComponent("train").path) { return .folder }
  if let folders = try? ImageFolder.classFolders(url), let first = folders.first,
    let files = try? ImageFolder.imageFiles(in: url, folder: first),
    !files.isEmpty
  {
    return .folder
  }
  throw DataError.invalidConfiguration(
    "cannot tell what kind of data \(directory) holds: say KIND:PATH with KIND one of \(known)")
}

/// The dataset `spec` (`KIND:PATH` or `PATH`, see `DataSpec`) names, for `split`, producing
/// `imageSize` images (the model's), with augmentation randomness from `seed` (the training seed).
public func makeDataset(
  spec: String, split: DataSplit, imageSize: (height: Int, width: Int), seed: UInt64,
  options: DataOptions = DataOptions()
) throws -> any Dataset {
  try options.validate()
  let (kind, path) = try DataSpec(spec).resolved()
  let (height, width) = imageSize
  switch kind {
  case .shapes:
    guard height == SyntheticShapes.side && width == SyntheticShapes.side else {
      throw DataError.invalidConfiguration(
        "the shapes data is \(SyntheticShapes.side)x\(SyntheticShapes.side) px but the model expects "
          + "\(height)x\(width): pass --image-size \(SyntheticShapes.side)")
    }
    let count = split == .train ? options.trainExamples : options.validationExamples
    return SyntheticShapes(split: split == .train ? .train : .validation, count: count, seed: 0)
  case .segshapes:
    guard height == SyntheticSegmentation.side && width == SyntheticSegmentation.side else {
      throw DataError.invalidConfiguration(
        "the segshapes data is \(SyntheticSegmentation.side)x\(SyntheticSegmentation.side) px but the model expects "
          + "\(height)x\(width): pass --image-size \(SyntheticSegmentation.side)")
    }
    let count = split == .train ? options.trainExamples : options.validationExamples
    return SyntheticSegmentation(split: split == .train ? .train : .validation, count: count, seed: 0)
  case .segfolder:
    return try SegmentationFolder(
      root: path, split: split, imageHeight: height, imageWidth: width, seed: seed, options: options)
  case .folder:
    return try ImageFolder(
      root: path, split: split, imageHeight: height, imageWidth: width, seed: seed, options: options
    )
  case .wds:
    return try WebDataset(
      path: path, split: split, imageHeight: height, imageWidth: width, seed: seed, options: options)
  case .cifar10, .cifar100:
    return try CIFAR(
      directory: path, variant: kind == .cifar10 ? .cifar10 : .cifar100, split: split,
      imageHeight: height, imageWidth: width, seed: seed, options: options)
  case .mnist, .fashionMNIST:
    return try MNIST(
      directory: path, variant: kind == .mnist ? .mnist : .fashion, split: split,
      imageHeight: height, imageWidth: width, seed: seed, options: options)
  }
}
