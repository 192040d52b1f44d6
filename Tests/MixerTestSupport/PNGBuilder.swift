// PNGBuilder.swift: PNG files built chunk by chunk for test data, so tests can write what no
// encoder writes (chosen bit depths, filters, chunk orders, broken fields with valid CRCs) and
// inputs for the binary without linking its libraries. CRC-32 is computed here bit by bit,
// independently of the zlib and libpng the code under test uses.

import CMixerZlib
import Foundation

/// The 8-byte PNG signature.
public let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as PNG chunks and zip entries use.
public func crc32<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
  }
  return ~crc
}

/// `value` as 4 big-endian bytes.
public func bigEndianBytes(_ value: UInt32) -> [UInt8] {
  [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
}

/// A PNG chunk: length, type, data, and the CRC-32 of type and data.
public func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
  let body = Array(type.utf8) + data
  return bigEndianBytes(UInt32(data.count)) + body + bigEndianBytes(crc32(body))
}

/// IHDR data: width, height, bit depth, colour type, compression 0, filter 0, interlace.
public func pngHeader(
  width: UInt32, height: UInt32, bitDepth: UInt8, colourType: UInt8, interlace: UInt8 = 0
) -> [UInt8] {
  bigEndianBytes(width) + bigEndianBytes(height) + [bitDepth, colourType, 0, 0, interlace]
}

/// `data` as a zlib stream (zlib's `compress`).
public func zlibCompress(_ data: [UInt8]) -> [UInt8] {
  var size = compressBound(uLong(data.count))
  var output = [UInt8](repeating: 0, count: Int(size))
  let status = output.withUnsafeMutableBufferPointer { target in
    data.withUnsafeBufferPointer {
      compress(target.baseAddress, &size, $0.baseAddress, uLong($0.count))
    }
  }
  precondition(status == Z_OK, "zlib compress failed: \(status)")
  return Array(output.prefix(Int(size)))
}

/// An 8-bit RGB PNG (gray with `channels` 1) of `rgb` `[height, width, channels]`, every row
/// unfiltered.
public func pngFile(width: Int, height: Int, rgb: [UInt8], channels: Int = 3) -> Data {
  precondition((channels == 1 || channels == 3) && rgb.count == width * height * channels)
  var rows: [UInt8] = []
  for y in 0..<height {
    rows.append(0)
    rows += rgb[(y * width * channels)..<((y + 1) * width * channels)]
  }
  let header = pngHeader(
    width: UInt32(width), height: UInt32(height), bitDepth: 8, colourType: channels == 1 ? 0 : 2)
  return Data(
    pngSignature + pngChunk("IHDR", header) + pngChunk("IDAT", zlibCompress(rows)) + pngChunk("IEND", []))
}
