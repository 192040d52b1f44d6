// ZipBuilder.swift: a test-only writer of stored zip archives, with optional ZIP64 records, so
// the tests can build archives the library's writer never produces (ZIP64 central directories)
// and patch fields to make malformed ones.

import Foundation
import MixerTestSupport

extension Data {
  mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }

  /// Overwrites the little-endian integer at `offset`.
  mutating func patchLE<T: FixedWidthInteger>(_ offset: Int, _ value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { replaceSubrange(offset..<(offset + $0.count), with: $0) }
  }

  /// Offsets of every occurrence of the 4-byte little-endian `signature`.
  func offsets(ofSignature signature: UInt32) -> [Int] {
    let bytes = [UInt8](self)
    let pattern = Swift.withUnsafeBytes(of: signature.littleEndian) { Array($0) }
    return (0..<Swift.max(0, bytes.count - 3)).filter { Array(bytes[$0..<($0 + 4)]) == pattern }
  }
}

/// A zip of stored entries; with `zip64`, every size and offset goes through ZIP64 records.
func buildStoredZip(_ files: [(name: String, contents: Data)], zip64: Bool = false) -> Data {
  var archive = Data()
  var central = Data()
  for (name, contents) in files {
    let offset = archive.count
    let nameBytes = Data(name.utf8)
    let crc = crc32(contents)
    archive.appendLE(UInt32(0x0403_4b50))
    archive.appendLE(UInt16(zip64 ? 45 : 20))
    archive.appendLE(UInt16(0))  // flags
    archive.appendLE(UInt16(0))  // stored
    archive.appendLE(UInt16(0))  // time
    archive.appendLE(UInt16(0x21))  // date
    archive.appendLE(crc)
    archive.appendLE(UInt32(contents.count))
    archive.appendLE(UInt32(contents.count))
    archive.appendLE(UInt16(nameBytes.count))
    archive.appendLE(UInt16(0))
    archive.append(nameBytes)
    archive.append(contents)

    central.appendLE(UInt32(0x0201_4b50))
    central.appendLE(UInt16(0x031e))
    central.appendLE(UInt16(zip64 ? 45 : 20))
    central.appendLE(UInt16(0))
    central.appendLE(UInt16(0))
    central.appendLE(UInt16(0))
    central.appendLE(UInt16(0x21))
    central.appendLE(crc)
    central.appendLE(zip64 ? UInt32.max : UInt32(contents.count))
    central.appendLE(zip64 ? UInt32.max : UInt32(contents.count))
    central.appendLE(UInt16(nameBytes.count))
    central.appendLE(UInt16(zip64 ? 28 : 0))
    central.appendLE(UInt16(0))  // comment
    central.appendLE(UInt16(0))  // disk
    central.appendLE(UInt16(0))
    central.appendLE(UInt32(0))
    central.appendLE(zip64 ? UInt32.max : UInt32(offset))
    central.append(nameBytes)
    if zip64 {
      central.appendLE(UInt16(1))
      central.appendLE(UInt16(24))
      central.appendLE(UInt64(contents.count))
      central.appendLE(UInt64(contents.count))
      central.appendLE(UInt64(offset))
    }
  }
  let directoryOffset = archive.count
  archive.append(central)
  if zip64 {
    let recordOffset = archive.count
    archive.appendLE(UInt32(0x0606_4b50))
    archive.appendLE(UInt64(44))
    archive.appendLE(UInt16(45))
    archive.appendLE(UInt16(45))
    archive.appendLE(UInt32(0))
    archive.appendLE(UInt32(0))
    archive.appendLE(UInt64(files.count))
    archive.appendLE(UInt64(files.count))
    archive.appendLE(UInt64(central.count))
    archive.appendLE(UInt64(directoryOffset))
    archive.appendLE(UInt32(0x0706_4b50))
    archive.appendLE(UInt32(0))
    archive.appendLE(UInt64(recordOffset))
    archive.appendLE(UInt32(1))
  }
  archive.appendLE(UInt32(0x0605_4b50))
  archive.appendLE(UInt16(0))
  archive.appendLE(UInt16(0))
  archive.appendLE(zip64 ? UInt16.max : UInt16(files.count))
  archive.appendLE(zip64 ? UInt16.max : UInt16(files.count))
  archive.appendLE(zip64 ? UInt32.max : UInt32(central.count))
  archive.appendLE(zip64 ? UInt32.max : UInt32(directoryOffset))
  archive.appendLE(UInt16(0))
  return archive
}
