// NPZ.swift: NumPy `.npz` archives (a zip of `NAME.npy` entries, as written by `np.savez`): a
// reader of stored or deflated entries and a writer of stored float32 entries.
//
// The writer uses ZIPFoundation's `Archive`. The reader walks the zip structure itself
// (`ZipDirectory` below, every offset and size checked against the file before use) and uses
// ZIPFoundation only to inflate and checksum entry data: ZIPFoundation's `Archive` trusts the
// offsets in a file and traps on crafted ones. Entry sizes are capped (`maxEntryBytes`) and
// entries may not overlap, so a small file cannot expand into an unbounded allocation.

import Foundation
import ZIPFoundation

/// Reading and writing `.npz` archives.
public enum NPZ {
  /// The default cap on one entry's uncompressed size (2 GiB).
  public static let defaultMaxEntryBytes = 1 << 31

  /// Decodes an `.npz` held in memory into its arrays, in archive order. Entry names lose their
  /// `.npy` suffix (the parameter names of OfficialNames.swift). An entry whose declared
  /// uncompressed size exceeds `maxEntryBytes` is an error.
  public static func decode(
    _ bytes: Data, source: String = "archive.npz", maxEntryBytes: Int = defaultMaxEntryBytes
  ) throws -> [(name: String, array: TypedArray)] {
    let entries = try ZipDirectory.entries(of: bytes, source: source, maxEntryBytes: maxEntryBytes)
    var result: [(name: String, array: TypedArray)] = []
    var seen = Set<String>()
    for entry in entries {
      let entrySource = "\(source): \(entry.name)"
      guard entry.name.hasSuffix(".npy"), entry.name.count > 4 else {
        throw CheckpointFormatError(entrySource, "entry is not a .npy array")
      }
      let name = String(entry.name.dropLast(4))
      guard seen.insert(name).inserted else {
        throw CheckpointFormatError(entrySource, "entry appears twice")
      }
      let contents = try ZipDirectory.contents(of: entry, in: bytes, source: entrySource)
      result.append((name, try NPY.decode(contents, source: entrySource)))
    }
    return result
  }

  /// Reads an `.npz` file into its arrays, in archive order.
  public static func read(
    contentsOf url: URL, maxEntryBytes: Int = defaultMaxEntryBytes
  ) throws -> [(name: String, array: TypedArray)] {
    try decode(Data(contentsOf: url), source: url.lastPathComponent, maxEntryBytes: maxEntryBytes)
  }

  /// Reads an `.npz` file into float32 arrays keyed by name (integer arrays are converted).
  public static func readFloats(
    contentsOf url: URL, maxEntryBytes: Int = defaultMaxEntryBytes
  ) throws -> [String: NDArray] {
    var result: [String: NDArray] = [:]
    for (name, array) in try read(contentsOf: url, maxEntryBytes: maxEntryBytes) {
      result[name] = array.ndarray
    }
    return result
  }

  /// Encodes float32 arrays as an `.npz` of stored (uncompressed) `NAME.npy` entries, in order.
  public static func encode(_ arrays: [(name: String, array: NDArray)]) throws -> Data {
    let archive = try Archive(data: Data(), accessMode: .create)
    try add(arrays, to: archive)
    guard let data = archive.data else {
      throw CheckpointFormatError("npz writer", "ZIPFoundation returned no archive data")
    }
    return data
  }

  /// Writes float32 arrays to an `.npz` file atomically (see `encode`).
  public static func write(_ arrays: [(name: String, array: NDArray)], to url: URL) throws {
    try AtomicFile.create(url) { temporary in
      let archive = try Archive(url: temporary, accessMode: .create)
      try add(arrays, to: archive)
    }
  }

  /// Adds each array as a stored `NAME.npy` entry with a fixed date, so output is reproducible.
  static func add(_ arrays: [(name: String, array: NDArray)], to archive: Archive) throws {
    var seen = Set<String>()
    let date = Date(timeIntervalSince1970: 315_532_800)  // 1980-01-01, the zip epoch
    for (name, array) in arrays {
      guard !name.isEmpty, seen.insert(name).inserted else {
        throw CheckpointFormatError("npz writer", "array name '\(name)' is empty or repeated")
      }
      let npy = try NPY.encode(array)
      try archive.addEntry(
        with: name + ".npy", type: .file, uncompressedSize: Int64(npy.count), modificationDate: date,
        compressionMethod: .none
      ) { position, size in
        let start = Int(position)
        return npy.subdata(in: start..<min(start + size, npy.count))
      }
    }
  }
}

/// One file in a zip archive, located and bounds-checked by `ZipDirectory`.
struct ZipEntry {
  var name: String
  /// 0 stored, 8 deflated.
  var method: UInt16
  var crc32: UInt32
  var compressedSize: Int
  var uncompressedSize: Int
  /// Offset of the entry's data in the archive (after its local header).
  var dataOffset: Int
}

/// A strict reader of the zip container structure (PKWARE APPNOTE 6.3): end of central directory
/// (with its ZIP64 variant), central directory, local headers. Single-disk, unencrypted archives
/// only; the central directory is authoritative for sizes and CRCs.
enum ZipDirectory {
  /// Locates every entry of `bytes`, checking that each lies inside the file, that entries do
  /// not overlap, and that no declared uncompressed size exceeds `maxEntryBytes`.
  static func entries(of bytes: Data, source: String, maxEntryBytes: Int) throws -> [ZipEntry] {
    try bytes.withUnsafeBytes { raw in
      let reader = ByteReader(raw: raw, source: source)
      let end = try findEndOfCentralDirectory(reader)
      var entries: [ZipEntry] = []
      var spans: [(start: Int, end: Int)] = []
      var position = end.directoryOffset
      let directoryEnd = end.directoryOffset + end.directorySize
      for index in 0..<end.entryCount {
        guard position <= directoryEnd - 46 else {
          throw reader.failure("central directory entry \(index) runs past the directory")
        }
        guard try reader.u32(position) == 0x0201_4b50 else {
          throw reader.failure("central directory entry \(index) has a bad signature")
        }
        let flags = try reader.u16(position + 8)
        let method = try reader.u16(position + 10)
        let crc = try reader.u32(position + 16)
        var compressed = Int(try reader.u32(position + 20))
        var uncompressed = Int(try reader.u32(position + 24))
        let nameLength = Int(try reader.u16(position + 28))
        let extraLength = Int(try reader.u16(position + 30))
        let commentLength = Int(try reader.u16(position + 32))
        var disk = Int(try reader.u16(position + 34))
        var localOffset = Int(try reader.u32(position + 42))
        let nameStart = position + 46
        let next = nameStart + nameLength + extraLength + commentLength
        guard next <= directoryEnd else {
          throw reader.failure("central directory entry \(index) runs past the directory")
        }
        let nameBytes = try reader.bytes(nameStart, nameLength)
        guard let name = String(bytes: nameBytes, encoding: .utf8) else {
          throw reader.failure("entry \(index) has a name that is not UTF-8")
        }
        // ZIP64 extended information: the saturated fields, in this order.
        if uncompressed == 0xffff_ffff || compressed == 0xffff_ffff || localOffset == 0xffff_ffff
          || disk == 0xffff
        {
          var field = try zip64Field(reader, start: nameStart + nameLength, length: extraLength)
          if uncompressed == 0xffff_ffff { uncompressed = try field.next64(reader, "uncompressed size") }
          if compressed == 0xffff_ffff { compressed = try field.next64(reader, "compressed size") }
          if localOffset == 0xffff_ffff { localOffset = try field.next64(reader, "local header offset") }
          if disk == 0xffff { disk = Int(try field.next32(reader)) }
        }
        let entrySource = "\(source): \(name)"
        guard disk == 0 else {
          throw CheckpointFormatError(entrySource, "multi-disk archives are not supported")
        }
        guard flags & 0x41 == 0 else { throw CheckpointFormatError(entrySource, "entry is encrypted") }
        guard method == 0 || method == 8 else {
          throw CheckpointFormatError(entrySource, "compression method \(method) is not supported")
        }
        guard uncompressed <= maxEntryBytes else {
          throw CheckpointFormatError(
            entrySource, "declared size \(uncompressed) bytes exceeds the limit of \(maxEntryBytes)")
        }
        guard method == 8 || compressed == uncompressed else {
          throw CheckpointFormatError(
            entrySource, "stored entry has compressed size \(compressed) != \(uncompressed)")
        }
        // The local header: signature, the same name, then the data.
        guard localOffset <= raw.count - 30, try reader.u32(localOffset) == 0x0403_4b50 else {
          throw CheckpointFormatError(entrySource, "local header at \(localOffset) is missing")
        }
        let localNameLength = Int(try reader.u16(localOffset + 26))
        let localExtraLength = Int(try reader.u16(localOffset + 28))
        guard localNameLength == nameLength,
          try reader.bytes(localOffset + 30, localNameLength).elementsEqual(nameBytes)
        else {
          throw CheckpointFormatError(entrySource, "local header name differs from the central directory")
        }
        let dataOffset = localOffset + 30 + localNameLength + localExtraLength
        guard dataOffset <= raw.count, compressed <= raw.count - dataOffset else {
          throw CheckpointFormatError(entrySource, "data runs past the end of the file")
        }
        spans.append((localOffset, dataOffset + compressed))
        entries.append(
          ZipEntry(
            name: name, method: method, crc32: crc, compressedSize: compressed,
            uncompressedSize: uncompressed, dataOffset: dataOffset))
        position = next
      }
      spans.sort { $0.start < $1.start }
      for (previous, current) in zip(spans, spans.dropFirst()) where current.start < previous.end {
        throw reader.failure("entries overlap at offset \(current.start)")
      }
      return entries
    }
  }

  /// The decompressed data of `entry`, checked against its declared size and CRC-32.
  static func contents(of entry: ZipEntry, in bytes: Data, source: String) throws -> Data {
    let start = bytes.startIndex + entry.dataOffset
    let compressed = bytes.subdata(in: start..<(start + entry.compressedSize))
    var output: Data
    if entry.method == 0 {
      output = compressed
    } else {
      output = Data()
      output.reserveCapacity(min(entry.uncompressedSize, 1 << 26))
      // ZIPFoundation's zlib loop sets avail_in to bufferSize whatever the chunk's length, so
      // every chunk handed over is exactly bufferSize bytes (zero-padded at the end), and asking
      // for more after the last one means the deflate stream never ended.
      let bufferSize = max(64, min(entry.compressedSize, 1 << 16))
      let limit = entry.uncompressedSize
      do {
        _ = try Data.decompress(
          size: Int64(entry.compressedSize), bufferSize: bufferSize, skipCRC32: true,
          provider: { position, _ in
            let from = Int(position)
            guard from < compressed.count || (from == 0 && compressed.isEmpty) else {
              throw CheckpointFormatError(source, "deflate stream is truncated")
            }
            var chunk = compressed.subdata(in: from..<min(from + bufferSize, compressed.count))
            chunk.append(Data(count: bufferSize - chunk.count))
            return chunk
          },
          consumer: { chunk in
            guard chunk.count <= limit - output.count else {
              throw CheckpointFormatError(source, "inflates to more than its declared \(limit) bytes")
            }
            output.append(chunk)
          })
      } catch let error as CheckpointFormatError {
        throw error
      } catch {
        throw CheckpointFormatError(source, "deflate stream is corrupt (\(error))")
      }
    }
    guard output.count == entry.uncompressedSize else {
      throw CheckpointFormatError(source, "holds \(output.count) bytes, declared \(entry.uncompressedSize)")
    }
    guard output.crc32(checksum: 0) == entry.crc32 else {
      throw CheckpointFormatError(source, "CRC-32 mismatch (corrupt data)")
    }
    return output
  }

  /// What the end-of-central-directory records say.
  struct End {
    var entryCount: Int
    var directorySize: Int
    var directoryOffset: Int
  }

  /// Finds the end-of-central-directory record (the last one whose comment reaches exactly to
  /// the end of the file) and, when its fields are saturated, the ZIP64 record it points to.
  static func findEndOfCentralDirectory(_ reader: ByteReader) throws -> End {
    let count = reader.raw.count
    guard count >= 22 else { throw reader.failure("too short to be a zip archive") }
    var found: Int?
    var offset = count - 22
    while offset >= max(0, count - 22 - 0xffff) {
      if try reader.u32(offset) == 0x0605_4b50, offset + 22 + Int(try reader.u16(offset + 20)) == count {
        found = offset
        break
      }
      offset -= 1
    }
    guard let eocd = found else {
      throw reader.failure("no end of central directory record (not a zip file?)")
    }
    let disk = try reader.u16(eocd + 4)
    let directoryDisk = try reader.u16(eocd + 6)
    let entriesOnDisk = Int(try reader.u16(eocd + 8))
    var entryCount = Int(try reader.u16(eocd + 10))
    var directorySize = Int(try reader.u32(eocd + 12))
    var directoryOffset = Int(try reader.u32(eocd + 16))
    var limit = eocd
    if entryCount == 0xffff || directorySize == 0xffff_ffff || directoryOffset == 0xffff_ffff {
      guard eocd >= 20, try reader.u32(eocd - 20) == 0x0706_4b50 else {
        throw reader.failure("ZIP64 end of central directory locator is missing")
      }
      let record = try checkedInt(reader.u64(eocd - 20 + 8), reader, "ZIP64 record offset")
      guard record <= eocd - 20 - 56, try reader.u32(record) == 0x0606_4b50 else {
        throw reader.failure("ZIP64 end of central directory record is missing")
      }
      guard try reader.u32(record + 16) == 0, try reader.u32(record + 20) == 0,
        try reader.u64(record + 24) == reader.u64(record + 32)
      else {
        throw reader.failure("multi-disk archives are not supported")
      }
      entryCount = try checkedInt(reader.u64(record + 32), reader, "entry count")
      directorySize = try checkedInt(reader.u64(record + 40), reader, "directory size")
      directoryOffset = try checkedInt(reader.u64(record + 48), reader, "directory offset")
      limit = record
    } else {
      guard disk == 0, directoryDisk == 0, entriesOnDisk == entryCount else {
        throw reader.failure("multi-disk archives are not supported")
      }
    }
    guard directoryOffset <= limit, directorySize <= limit - directoryOffset else {
      throw reader.failure(
        "central directory (\(directorySize) bytes at \(directoryOffset)) is outside the file")
    }
    guard entryCount <= directorySize / 46 else {
      throw reader.failure("\(entryCount) entries cannot fit in a \(directorySize)-byte central directory")
    }
    return End(entryCount: entryCount, directorySize: directorySize, directoryOffset: directoryOffset)
  }

  /// The data of the ZIP64 extended-information extra field (id 0x0001) inside an extra block.
  static func zip64Field(_ reader: ByteReader, start: Int, length: Int) throws -> FieldCursor {
    var position = start
    let end = start + length
    while position <= end - 4 {
      let id = try reader.u16(position)
      let size = Int(try reader.u16(position + 2))
      guard size <= end - position - 4 else { break }
      if id == 0x0001 { return FieldCursor(position: position + 4, end: position + 4 + size) }
      position += 4 + size
    }
    throw reader.failure("ZIP64 sizes are saturated but the ZIP64 extra field is missing")
  }

  /// Reads consecutive values out of one extra field, never past its end.
  struct FieldCursor {
    var position: Int
    var end: Int

    mutating func next64(_ reader: ByteReader, _ what: String) throws -> Int {
      guard position <= end - 8 else { throw reader.failure("ZIP64 extra field lacks the \(what)") }
      defer { position += 8 }
      return try checkedInt(reader.u64(position), reader, what)
    }

    mutating func next32(_ reader: ByteReader) throws -> UInt32 {
      guard position <= end - 4 else { throw reader.failure("ZIP64 extra field lacks the disk number") }
      defer { position += 4 }
      return try reader.u32(position)
    }
  }

  static func checkedInt(_ value: UInt64, _ reader: ByteReader, _ what: String) throws -> Int {
    guard let result = Int(exactly: value) else { throw reader.failure("\(what) \(value) is out of range") }
    return result
  }
}

/// Bounds-checked little-endian reads from a byte buffer; every out-of-range read throws.
struct ByteReader {
  let raw: UnsafeRawBufferPointer
  let source: String

  func u16(_ offset: Int) throws -> UInt16 {
    try check(offset, 2)
    return UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }

  func u32(_ offset: Int) throws -> UInt32 {
    try check(offset, 4)
    return UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }

  func u64(_ offset: Int) throws -> UInt64 {
    try check(offset, 8)
    return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
  }

  func bytes(_ offset: Int, _ length: Int) throws -> UnsafeRawBufferPointer {
    try check(offset, length)
    return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])
  }

  func check(_ offset: Int, _ length: Int) throws {
    guard offset >= 0, length >= 0, offset <= raw.count, length <= raw.count - offset else {
      throw failure("read of \(length) bytes at offset \(offset) is outside the \(raw.count)-byte file")
    }
  }

  func failure(_ message: String) -> CheckpointFormatError {
    CheckpointFormatError(source, message)
  }
}
