// CIFAR-10 and CIFAR-100 in their binary distributions (https://www.cs.toronto.edu/~kriz/cifar.html):
//
//   CIFAR-10   data_batch_1.bin … data_batch_5.bin (train), test_batch.bin (validation);
//              records of 1 label byte + 3072 pixel bytes; class names in batches.meta.txt
//   CIFAR-100  train.bin, test.bin; records of 2 label bytes (coarse, fine) + 3072 pixel bytes;
//              the fine label (100 classes) is used; names in fine_label_names.txt
//
// Pixels are stored channel-planar: 1024 R, 1024 G, 1024 B bytes, each 32×32 row-major. The
// directory may be the extracted folder (cifar-10-batches-bin, cifar-100-binary) or its parent.
// All records are read into memory at construction, where every file's size and every label is
// checked. Images go through the same preprocessing as image folders; by default the validation
// split keeps the whole 32×32 image (identity at 32 px).

import Foundation

/// CIFAR-10 or CIFAR-100 from the binary files, preprocessed to a fixed size.
public struct CIFAR: InMemoryImageDataset {
  public enum Variant: String, Sendable {
    case cifar10, cifar100

    var numClasses: Int { self == .cifar10 ? 10 : 100 }
    var labelBytes: Int { self == .cifar10 ? 1 : 2 }
    var recordSize: Int { labelBytes + CIFAR.imageBytes }
    var extractedFolder: String { self == .cifar10 ? "cifar-10-batches-bin" : "cifar-100-binary" }
    var namesFile: String { self == .cifar10 ? "batches.meta.txt" : "fine_label_names.txt" }
    func files(_ split: DataSplit) -> [String] {
      switch (self, split) {
      case (.cifar10, .train): return (1...5).map { "data_batch_\($0).bin" }
      case (.cifar10, .validation): return ["test_batch.bin"]
      case (.cifar100, .train): return ["train.bin"]
      case (.cifar100, .validation): return ["test.bin"]
      }
    }
  }

  static let side = 32
  static let imageBytes = 3 * 32 * 32

  public let variant: Variant
  public let split: DataSplit
  public let directory: String
  public let classNames: [String]
  public let preprocessing: ImagePreprocessing
  let records: Records

  public var count: Int { records.count }
  public var numClasses: Int { variant.numClasses }
  public var height: Int { preprocessing.outputHeight }
  public var width: Int { preprocessing.outputWidth }

  /// Reads the split's files from `directory`; throws `DataError.invalidConfiguration` naming a
  /// missing file, a size that is not a whole number of records, or a label out of range.
  public init(
    directory: String, variant: Variant, split: DataSplit, imageHeight: Int, imageWidth: Int,
    seed: UInt64, options: DataOptions = DataOptions()
  ) throws {
    try options.validate()
    var folder = URL(fileURLWithPath: directory)
    let first = variant.files(.train)[0]
    if !FileManager.default.fileExists(atPath: folder.appendingPathComponent(first).path),
      FileManager.default.fileExists(
        atPath: folder.appendingPathComponent(variant.extractedFolder).appendingPathComponent(first)
          .path)
    {
      folder.appendPathComponent(variant.extractedFolder)
    }
    var data: [UInt8] = []
    for name in variant.files(split) {
      let path = folder.appendingPathComponent(name).path
      guard FileManager.default.fileExists(atPath: path) else {
        throw DataError.invalidConfiguration(
          "\(variant.rawValue): \(path) is missing (expected \(variant.files(split).joined(separator: ", ")) "
            + "from the binary version of the dataset)")
      }
      let bytes: [UInt8]
      do { bytes = try readFileBytes(path) } catch {
        throw DataError.invalidConfiguration("\(variant.rawValue): cannot read \(path): \(error)")
      }
      guard !bytes.isEmpty && bytes.count % variant.recordSize == 0 else {
        throw DataError.invalidConfiguration(
          "\(variant.rawValue): \(path) has \(bytes.count) bytes, not a whole number of "
            + "\(variant.recordSize)-byte records (\(variant.labelBytes) label byte(s) + 3072 pixels): "
            + "a truncated download, or the \(variant == .cifar10 ? "CIFAR-100" : "CIFAR-10") files?"
        )
      }
      for record in 0..<bytes.count / variant.recordSize {
        let label = Int(bytes[record * variant.recordSize + variant.labelBytes - 1])
        guard label < variant.numClasses else {
          throw DataError.invalidConfiguration(
            "\(variant.rawValue): record \(record) of \(path) has label \(label), not in 0..<\(variant.numClasses)"
          )
        }
      }
      data += bytes
    }
    self.variant = variant
    self.split = split
    self.directory = folder.path
    records = Records(
      data: data, recordSize: variant.recordSize, labelOffset: variant.labelBytes - 1)
    classNames = readClassNames(
      folder.appendingPathComponent(variant.namesFile).path, count: variant.numClasses)
    preprocessing = options.preprocessing(
      kind: variant == .cifar10 ? .cifar10 : .cifar100, split: split, height: imageHeight,
      width: imageWidth, seed: seed)
  }

  /// The label of sample `index`, without decoding it.
  public func label(of index: Int) -> Int { records.label(index) }

  /// The 32×32 RGB image of sample `index`, before preprocessing.
  public func image(_ index: Int) -> RGBImage {
    let base = index * records.recordSize + records.labelOffset + 1
    let plane = CIFAR.side * CIFAR.side
    var pixels = [UInt8](repeating: 0, count: CIFAR.imageBytes)
    records.data.withUnsafeBufferPointer { data in
      for p in 0..<plane {
        pixels[3 * p] = data[base + p]
        pixels[3 * p + 1] = data[base + plane + p]
        pixels[3 * p + 2] = data[base + 2 * plane + p]
      }
    }
    return RGBImage(width: CIFAR.side, height: CIFAR.side, pixels: pixels)
  }

  public var sourceName: String { variant.rawValue }
}

/// Fixed-size labelled records in one buffer.
final class Records: @unchecked Sendable {
  let data: [UInt8]
  let recordSize: Int
  let labelOffset: Int
  let count: Int

  init(data: [UInt8], recordSize: Int, labelOffset: Int) {
    self.data = data
    self.recordSize = recordSize
    self.labelOffset = labelOffset
    count = data.count / recordSize
  }

  func label(_ index: Int) -> Int { Int(data[index * recordSize + labelOffset]) }
}

/// The non-empty lines of a names file when it has at least `count` of them, else "0", "1", ….
func readClassNames(_ path: String, count: Int) -> [String] {
  if let text = try? String(contentsOfFile: path, encoding: .utf8) {
    let names = text.split(whereSeparator: \.isNewline)
      .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    if names.count >= count { return Array(names.prefix(count)) }
  }
  return (0..<count).map(String.init)
}
