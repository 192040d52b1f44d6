// MNIST and Fashion-MNIST in the IDX format (http://yann.lecun.com/exdb/mnist/):
//
//   train-images-idx3-ubyte, train-labels-idx1-ubyte      (train, 60,000)
//   t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte       (validation, 10,000)
//
// each raw or gzip-compressed (`.gz`; also the `train-images.idx3-ubyte` spelling). An image file
// is the magic 0x00000803, then count, rows, columns as big-endian 32-bit integers, then the pixels;
// a label file is 0x00000801, count, then one byte per label (0–9). Both are read into memory at
// construction, where magic numbers, sizes, counts and labels are checked. The 28×28 gray images
// become RGB (three equal channels) and go through the common preprocessing; training flips are off
// by default for MNIST digits (a mirrored 2 is not a 2) and on for Fashion-MNIST.
//
// Gzipped files (`.gz`, as the datasets are distributed) are inflated in memory (Inflate.swift).

import Foundation

/// MNIST or Fashion-MNIST from IDX files, preprocessed to a fixed size.
public struct MNIST: InMemoryImageDataset {
  public enum Variant: String, Sendable {
    case mnist
    case fashion = "fashion-mnist"

    var classNames: [String] {
      switch self {
      case .mnist: return (0..<10).map(String.init)
      case .fashion:
        return [
          "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag",
          "Ankle boot",
        ]
      }
    }
  }

  public let variant: Variant
  public let split: DataSplit
  public let directory: String
  public let preprocessing: ImagePreprocessing
  /// Source image size (28×28 for both datasets).
  public let sourceHeight: Int
  public let sourceWidth: Int
  let images: [UInt8]
  let labels: [UInt8]

  public var count: Int { labels.count }
  public var numClasses: Int { 10 }
  public var classNames: [String] { variant.classNames }
  public var height: Int { preprocessing.outputHeight }
  public var width: Int { preprocessing.outputWidth }

  /// Reads the split's two IDX files from `directory`; throws `DataError.invalidConfiguration`
  /// naming a missing or malformed file.
  public init(
    directory: String, variant: Variant, split: DataSplit, imageHeight: Int, imageWidth: Int,
    seed: UInt64, options: DataOptions = DataOptions()
  ) throws {
    try options.validate()
    let prefix = split == .train ? "train" : "t10k"
    let imagePath = try MNIST.findFile(directory, prefix: prefix, kind: "images", dimensions: 3)
    let labelPath = try MNIST.findFile(directory, prefix: prefix, kind: "labels", dimensions: 1)
    let imageFile = try readIDX(imagePath)
    let labelFile = try readIDX(labelPath)
    try MNIST.check(imageFile, path: imagePath, magic: 0x0803, headerWords: 3)
    try MNIST.check(labelFile, path: labelPath, magic: 0x0801, headerWords: 1)
    let count = bigEndianWord(imageFile, at: 4)
    let rows = bigEndianWord(imageFile, at: 8)
    let columns = bigEndianWord(imageFile, at: 12)
    guard rows > 0 && columns > 0 && imageFile.count == 16 + count * rows * columns else {
      throw DataError.invalidConfiguration(
        "\(imagePath) has \(imageFile.count) bytes, but its header promises \(count) images of "
          + "\(rows)x\(columns) (\(16 + count * rows * columns) bytes): truncated or corrupt")
    }
    let labelCount = bigEndianWord(labelFile, at: 4)
    guard labelFile.count == 8 + labelCount else {
      throw DataError.invalidConfiguration(
        "\(labelPath) has \(labelFile.count) bytes, but its header promises \(labelCount) labels "
          + "(\(8 + labelCount) bytes): truncated or corrupt")
    }
    guard labelCount == count, count > 0 else {
      throw DataError.invalidConfiguration(
        "\(imagePath) holds \(count) images but \(labelPath) holds \(labelCount) labels")
    }
    let labels = Array(labelFile[8...])
    if let bad = labels.firstIndex(where: { $0 >= 10 }) {
      throw DataError.invalidConfiguration(
        "\(labelPath): label \(labels[bad]) of sample \(bad - labels.startIndex) is not in 0..<10")
    }
    self.variant = variant
    self.split = split
    self.directory = directory
    self.labels = labels
    images = Array(imageFile[16...])
    sourceHeight = rows
    sourceWidth = columns
    preprocessing = options.preprocessing(
      kind: variant == .mnist ? .mnist : .fashionMNIST, split: split, height: imageHeight,
      width: imageWidth, seed: seed)
  }

  /// The label of sample `index`.
  public func label(of index: Int) -> Int { Int(labels[index]) }

  /// The gray image of sample `index` as RGB, before preprocessing.
  public func image(_ index: Int) -> RGBImage {
    let n = sourceHeight * sourceWidth
    var pixels = [UInt8](repeating: 0, count: 3 * n)
    for p in 0..<n {
      let value = images[index * n + p]
      pixels[3 * p] = value
      pixels[3 * p + 1] = value
      pixels[3 * p + 2] = value
    }
    return RGBImage(width: sourceWidth, height: sourceHeight, pixels: pixels)
  }

  public var sourceName: String { variant.rawValue }

  /// The first existing spelling of an IDX file: `<prefix>-<kind>-idx<d>-ubyte` or
  /// `<prefix>-<kind>.idx<d>-ubyte`, raw or `.gz`.
  static func findFile(_ directory: String, prefix: String, kind: String, dimensions: Int) throws
    -> String
  {
    let names = ["-", "."].flatMap { separator in
      ["", ".gz"].map { "\(prefix)-\(kind)\(separator)idx\(dimensions)-ubyte\($0)" }
    }
    for name in names {
      let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
      if FileManager.default.fileExists(atPath: path) { return path }
    }
    throw DataError.invalidConfiguration(
      "no \(names[0])[.gz] in \(directory) (the MNIST / Fashion-MNIST IDX files)")
  }

  static func check(_ bytes: [UInt8], path: String, magic: Int, headerWords: Int) throws {
    let found = bytes.count >= 4 ? bigEndianWord(bytes, at: 0) : -1
    guard found == magic else {
      throw DataError.invalidConfiguration(
        "\(path) starts with \(found < 0 ? "too few bytes" : "0x" + String(found, radix: 16)), not the IDX magic "
          + "0x\(String(magic, radix: 16))"
          + (magic == 0x0803 ? " of an image file" : " of a label file"))
    }
    guard bytes.count >= 4 * (headerWords + 1) else {
      throw DataError.invalidConfiguration(
        "\(path) has only \(bytes.count) bytes: a truncated IDX header")
    }
  }
}

private func bigEndianWord(_ bytes: [UInt8], at offset: Int) -> Int {
  (0..<4).reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
}

/// The bytes of an IDX file, gunzipped when it starts with the gzip magic.
func readIDX(_ path: String) throws -> [UInt8] {
  let bytes: [UInt8]
  do { bytes = try readFileBytes(path) } catch {
    throw DataError.invalidConfiguration("cannot read \(path): \(error)")
  }
  guard bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B else { return bytes }
  do { return try gunzip(bytes) } catch {
    throw DataError.invalidConfiguration("\(path): \(error)")
  }
}

/// Decompresses a gzip (or zlib) stream, all members.
func gunzip(_ input: [UInt8]) throws -> [UInt8] {
  do {
    return try inflateStream(input, format: .gzipOrZlib)
  } catch InflateError.inputTooLarge {
    throw ImageDecodeError("over 4 GiB of gzip data: decompress it first (gunzip)")
  } catch InflateError.cannotStart {
    throw ImageDecodeError("zlib could not start inflating")
  } catch InflateError.corrupt(let message, let inputUsedUp) {
    throw ImageDecodeError(
      inputUsedUp ? "truncated gzip data (\(message))" : "corrupt gzip data (\(message))")
  } catch InflateError.truncated(_, let message) {
    throw ImageDecodeError("truncated gzip data (\(message))")
  }
}
