// Label masks from PNG files: the class index of every pixel, as Int32.
//
// A small, strict PNG decoder (PNG spec, 3rd edition) on zlib's `inflate`, for segmentation masks.
// libpng is not used: its simplified API turns palette images into colours, while a Pascal VOC
// `SegmentationClass` PNG stores the class as the palette INDEX, and its low-level API reports
// errors through setjmp, which Swift cannot use.
//
// Read: colour type 0 (grayscale, bit depths 1, 2, 4, 8, 16) and 3 (palette, bit depths 1, 2, 4,
// 8), not interlaced. The value of a pixel is its gray level or palette index (the palette's
// colours and any tRNS are ignored; an index past the palette's end is kept: it still names a
// class).
// 255 in 8-bit masks (`SegmentationMask.pngIgnoreValue`, VOC's "void") and 65535 in 16-bit masks
// become `SegmentationMask.ignore`.
//
// Refused with an `ImageDecodeError`: RGB, RGBA and gray+alpha images (a mask holds indices, not
// colours), interlacing, a bad signature, a chunk whose CRC does not match, chunks out of order
// (IHDR first, PLTE before IDAT, IDATs consecutive, IEND last), unknown critical chunks, sides
// over `maximumImageSide`, image data that does not inflate to exactly the declared rows, and
// unknown filter types. Every length and offset is checked against the bytes before use, so a
// hostile file throws instead of reading out of bounds; the inflated data grows with what the
// stream actually produces, so a forged header cannot make it allocate gigabytes up front. Bytes
// after the end of the zlib stream are ignored (the data it holds is complete and its Adler-32
// checked), as libpng does.

import CMixerZlib

/// Decodes a grayscale or palette PNG mask into `values` `[height, width]` (row-major): gray
/// levels or palette indices, with 255 (8-bit) and 65535 (16-bit) mapped to
/// `SegmentationMask.ignore`. Throws `ImageDecodeError` for any other or malformed PNG.
public func decodeLabelPNG(_ bytes: UnsafeRawBufferPointer) throws -> (
  width: Int, height: Int, values: [Int32]
) {
  let (header, compressed) = try readLabelPNGChunks(bytes)
  var data = try inflateImageData(compressed, count: header.filteredByteCount)
  try data.withUnsafeMutableBufferPointer { try unfilterRows($0, header: header) }
  let values = data.withUnsafeBufferPointer { unpackValues($0, header: header) }
  return (header.width, header.height, values)
}

/// The size a mask PNG declares, after checking its chunks (without inflating anything): a caller
/// that knows the size to expect (its image's) can refuse a mismatch before the decoder allocates
/// 4 bytes per pixel. A 1-bit mask of 32768×32768 zeros compresses to about 130 KB and would
/// otherwise inflate to 4 GiB of labels.
public func labelPNGSize(_ bytes: UnsafeRawBufferPointer) throws -> (width: Int, height: Int) {
  let (header, _) = try readLabelPNGChunks(bytes)
  return (header.width, header.height)
}

/// The IHDR fields a mask needs, and the row sizes they imply.
struct LabelPNGHeader {
  var width: Int
  var height: Int
  var bitDepth: Int
  var colourType: Int

  /// Bytes of one row's samples, without its filter-type byte.
  var rowBytes: Int { (width * bitDepth + 7) / 8 }
  /// The filters' "bytes per complete pixel": 2 for 16-bit gray, else 1 (sub-byte depths round up).
  var filterStride: Int { max(1, bitDepth / 8) }
  /// The inflated image data: per row, a filter-type byte then `rowBytes`.
  var filteredByteCount: Int { height * (rowBytes + 1) }
}

private let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// Walks the chunks: checks the signature, each chunk's bounds and CRC, and their order; returns
/// the header and the concatenated IDAT data.
private func readLabelPNGChunks(_ bytes: UnsafeRawBufferPointer) throws -> (
  LabelPNGHeader, [UInt8]
) {
  guard bytes.count >= pngSignature.count,
    zip(pngSignature, bytes.prefix(pngSignature.count)).allSatisfy({ $0 == $1 })
  else {
    throw ImageDecodeError(bytes.isEmpty ? "empty file" : "not a PNG file (bad signature)")
  }
  var offset = pngSignature.count
  var header: LabelPNGHeader?
  var hasPalette = false
  var compressed: [UInt8] = []
  var imageData = ImageDataRun.notStarted
  while true {
    // A chunk: length (4 bytes, big-endian), type (4), data (length), CRC (4) of type and data.
    guard bytes.count - offset >= 12 else {
      throw ImageDecodeError("truncated PNG: no IEND chunk after \(offset) bytes")
    }
    let length = Int(readBigEndian32(bytes, at: offset))
    guard length <= Int(Int32.max) else {
      throw ImageDecodeError(
        "corrupt PNG: chunk length \(length) at byte \(offset) exceeds 2^31 − 1")
    }
    guard bytes.count - offset - 12 >= length else {
      throw ImageDecodeError(
        "truncated PNG: a chunk at byte \(offset) holds \(length) bytes, the file ends before")
    }
    let typeBytes = UnsafeRawBufferPointer(rebasing: bytes[offset + 4..<offset + 8])
    guard typeBytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
      throw ImageDecodeError("corrupt PNG: invalid chunk type at byte \(offset)")
    }
    let type = String(decoding: typeBytes, as: UTF8.self)
    let checked = UnsafeRawBufferPointer(rebasing: bytes[offset + 4..<offset + 8 + length])
    let storedCRC = readBigEndian32(bytes, at: offset + 8 + length)
    guard crc32Checksum(checked) == storedCRC else {
      throw ImageDecodeError("corrupt PNG: CRC mismatch in the \(type) chunk at byte \(offset)")
    }
    let data = UnsafeRawBufferPointer(rebasing: bytes[offset + 8..<offset + 8 + length])
    offset += 12 + length

    guard header != nil || type == "IHDR" else {
      throw ImageDecodeError("corrupt PNG: the first chunk is \(type), not IHDR")
    }
    if type != "IDAT" && imageData == .inProgress { imageData = .finished }
    switch type {
    case "IHDR":
      guard header == nil else { throw ImageDecodeError("corrupt PNG: a second IHDR chunk") }
      header = try parseLabelPNGHeader(data)
    case "PLTE":
      guard imageData == .notStarted else {
        throw ImageDecodeError("corrupt PNG: PLTE after the image data")
      }
      guard length % 3 == 0 && (1...256).contains(length / 3) else {
        throw ImageDecodeError("corrupt PNG: a PLTE chunk of \(length) bytes")
      }
      hasPalette = true
    case "IDAT":
      guard imageData != .finished else {
        throw ImageDecodeError("corrupt PNG: IDAT chunks are not consecutive")
      }
      imageData = .inProgress
      compressed.append(contentsOf: data)
    case "IEND":
      guard imageData != .notStarted else {
        throw ImageDecodeError("corrupt PNG: no IDAT chunk (no image data)")
      }
      guard let header else { throw ImageDecodeError("corrupt PNG: no IHDR chunk") }
      guard header.colourType != 3 || hasPalette else {
        throw ImageDecodeError("corrupt PNG: a palette image without a PLTE chunk")
      }
      return (header, compressed)
    default:
      // Bit 5 of the first byte clear (an uppercase letter) marks a critical chunk: one this
      // decoder does not know cannot be skipped safely.
      guard typeBytes[0] & 0x20 != 0 else {
        throw ImageDecodeError("unsupported PNG: unknown critical chunk \(type)")
      }
    }
  }
}

/// Where the chunk walk is relative to the (consecutive) IDAT chunks.
private enum ImageDataRun { case notStarted, inProgress, finished }

/// Checks the 13 bytes of IHDR and that the image is a mask this decoder reads.
private func parseLabelPNGHeader(_ data: UnsafeRawBufferPointer) throws -> LabelPNGHeader {
  guard data.count == 13 else {
    throw ImageDecodeError("corrupt PNG: an IHDR chunk of \(data.count) bytes, not 13")
  }
  let width = Int(readBigEndian32(data, at: 0))
  let height = Int(readBigEndian32(data, at: 4))
  let (bitDepth, colourType) = (Int(data[8]), Int(data[9]))
  let (compression, filter, interlace) = (data[10], data[11], data[12])
  guard (1...maximumImageSide).contains(width) && (1...maximumImageSide).contains(height) else {
    throw ImageDecodeError(
      "PNG of unsupported size \(width)x\(height) (each side must be in 1...\(maximumImageSide))")
  }
  let colourNames = [2: "RGB", 4: "gray+alpha", 6: "RGBA"]
  if let name = colourNames[colourType] {
    throw ImageDecodeError(
      "masks must hold class indices: a grayscale or palette PNG, not \(name)")
  }
  let depths: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 3: [1, 2, 4, 8]]
  guard let allowed = depths[colourType] else {
    throw ImageDecodeError("corrupt PNG: invalid colour type \(colourType)")
  }
  guard allowed.contains(bitDepth) else {
    throw ImageDecodeError(
      "corrupt PNG: bit depth \(bitDepth) is invalid for colour type \(colourType)")
  }
  guard compression == 0 && filter == 0 else {
    throw ImageDecodeError(
      "corrupt PNG: unknown compression method \(compression) or filter method \(filter)")
  }
  guard interlace == 0 else {
    throw ImageDecodeError(
      interlace == 1
        ? "interlaced (Adam7) PNG masks are not supported: save the mask without interlacing"
        : "corrupt PNG: unknown interlace method \(interlace)")
  }
  let header = LabelPNGHeader(
    width: width, height: height, bitDepth: bitDepth, colourType: colourType)
  // Sides are at most 2^15, so these cannot overflow a 64-bit Int; checked for 32-bit platforms.
  guard !(header.rowBytes + 1).multipliedReportingOverflow(by: height).overflow,
    !width.multipliedReportingOverflow(by: height).overflow
  else {
    throw ImageDecodeError("PNG of unsupported size \(width)x\(height): too many pixels")
  }
  return header
}

/// Inflates the zlib stream of the IDAT chunks, which must hold exactly `count` bytes.
private func inflateImageData(_ compressed: [UInt8], count: Int) throws -> [UInt8] {
  let truncated = { (produced: Int) in
    ImageDecodeError("truncated PNG: the image data ends after \(produced) of \(count) bytes")
  }
  let output: [UInt8]
  do {
    output = try inflateStream(compressed, format: .zlib, limit: count)
  } catch InflateError.inputTooLarge {
    throw ImageDecodeError("unsupported PNG: over 4 GiB of compressed image data")
  } catch InflateError.cannotStart {
    throw ImageDecodeError("zlib could not start inflating")
  } catch InflateError.corrupt(let message, _) {
    throw ImageDecodeError("corrupt PNG image data (\(message))")
  } catch InflateError.truncated(let produced, _) {
    throw truncated(produced)
  } catch {
    throw ImageDecodeError("corrupt PNG: the image data holds more than the \(count) bytes of its rows")
  }
  guard output.count == count else { throw truncated(output.count) }
  return output
}

/// Undoes the per-row filters in place over `data` `[height, 1 + rowBytes]`: each row's first
/// byte names its filter (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth), predicting each byte from
/// the byte `filterStride` to its left (a), the byte above (b) and the one above-left (c).
private func unfilterRows(
  _ data: UnsafeMutableBufferPointer<UInt8>, header: LabelPNGHeader
) throws {
  let rowBytes = header.rowBytes
  let step = header.filterStride
  precondition(data.count == header.height * (rowBytes + 1))
  let base = data.baseAddress!
  for r in 0..<header.height {
    let row = base + r * (rowBytes + 1) + 1
    // The row above, already unfiltered; the first row sees zeros above it.
    let above: UnsafeMutablePointer<UInt8>? = r > 0 ? row - (rowBytes + 1) : nil
    switch row[-1] {
    case 0:
      break
    case 1:
      for i in stride(from: step, to: rowBytes, by: 1) { row[i] &+= row[i - step] }
    case 2:
      if let above { for i in 0..<rowBytes { row[i] &+= above[i] } }
    case 3:
      for i in 0..<rowBytes {
        let left = i >= step ? Int(row[i - step]) : 0
        let up = above.map { Int($0[i]) } ?? 0
        row[i] &+= UInt8((left + up) / 2)
      }
    case 4:
      for i in 0..<rowBytes {
        let left = i >= step ? Int(row[i - step]) : 0
        let up = above.map { Int($0[i]) } ?? 0
        let upLeft = i >= step ? above.map { Int($0[i - step]) } ?? 0 : 0
        row[i] &+= UInt8(paethPredictor(left, up, upLeft))
      }
    case let filter:
      throw ImageDecodeError("corrupt PNG: unknown filter type \(filter) in row \(r)")
    }
  }
}

/// The Paeth predictor: of a, b, c the one closest to a + b − c (ties prefer a, then b).
private func paethPredictor(_ a: Int, _ b: Int, _ c: Int) -> Int {
  let estimate = a + b - c
  let (da, db, dc) = (abs(estimate - a), abs(estimate - b), abs(estimate - c))
  if da <= db && da <= dc { return a }
  return db <= dc ? b : c
}

/// Reads one value per pixel from the unfiltered rows: big-endian for 16 bits, and for 1, 2 and
/// 4 bits packed from the high bits of each byte down (a row's last byte may be padded).
private func unpackValues(_ data: UnsafeBufferPointer<UInt8>, header: LabelPNGHeader) -> [Int32] {
  let (width, height, depth) = (header.width, header.height, header.bitDepth)
  let rowBytes = header.rowBytes
  var values = [Int32](repeating: 0, count: width * height)
  values.withUnsafeMutableBufferPointer { out in
    for y in 0..<height {
      let row = data.baseAddress! + y * (rowBytes + 1) + 1
      let target = out.baseAddress! + y * width
      switch depth {
      case 16:
        for x in 0..<width {
          let value = Int32(row[2 * x]) << 8 | Int32(row[2 * x + 1])
          target[x] = value == 0xFFFF ? SegmentationMask.ignore : value
        }
      case 8:
        let ignored = Int32(SegmentationMask.pngIgnoreValue)
        for x in 0..<width {
          let value = Int32(row[x])
          target[x] = value == ignored ? SegmentationMask.ignore : value
        }
      default:
        let perByte = 8 / depth
        let mask = UInt8((1 << depth) - 1)
        for x in 0..<width {
          let shift = 8 - depth * (x % perByte + 1)
          target[x] = Int32((row[x / perByte] >> UInt8(shift)) & mask)
        }
      }
    }
  }
  return values
}

/// The big-endian UInt32 at `offset` (the caller has checked `offset + 4 <= bytes.count`).
private func readBigEndian32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
  UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
    | UInt32(bytes[offset + 3])
}

/// zlib's CRC-32 (the PNG chunk CRC) of `bytes` (at most 2^31 + 3 bytes: a chunk's type and data).
private func crc32Checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
  guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
  return UInt32(
    truncatingIfNeeded: crc32(0, base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
}
