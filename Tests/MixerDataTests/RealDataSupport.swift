// Test data written by the tests themselves: temporary folders, PNG/JPEG files through the same
// libraries the loader reads them with, CIFAR records and IDX files in their exact formats.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerData

/// Writes bytes to `folder/relative`, creating folders on the way.
@discardableResult
func writeFile(_ folder: URL, _ relative: String, _ bytes: [UInt8]) throws -> URL {
  let url = folder.appendingPathComponent(relative)
  try FileManager.default.createDirectory(
    at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
  try Data(bytes).write(to: url)
  return url
}

/// A deterministic RGB test pattern `[height, width, 3]`: distinct, smooth-ish values per seed.
func patternPixels(width: Int, height: Int, seed: Int, channels: Int = 3) -> [UInt8] {
  var pixels = [UInt8](repeating: 0, count: width * height * channels)
  for y in 0..<height {
    for x in 0..<width {
      for c in 0..<channels {
        pixels[(y * width + x) * channels + c] = UInt8(
          (x * (3 + c) + y * (5 + seed) + 37 * seed + 11 * c) % 256)
      }
    }
  }
  return pixels
}

/// A horizontal-and-vertical gradient: R = x, G = y, B = 77 (width, height ≤ 256).
func gradientPixels(width: Int, height: Int) -> [UInt8] {
  var pixels = [UInt8](repeating: 77, count: width * height * 3)
  for y in 0..<height {
    for x in 0..<width {
      pixels[(y * width + x) * 3] = UInt8(x)
      pixels[(y * width + x) * 3 + 1] = UInt8(y)
    }
  }
  return pixels
}

func writePNGFile(
  _ folder: URL, _ relative: String, pixels: [UInt8], width: Int, height: Int, channels: Int = 3
) throws {
  try writeFile(
    folder, relative,
    try encodePNG(pixels: pixels, width: width, height: height, channels: channels))
}

func writeJPEGFile(
  _ folder: URL, _ relative: String, pixels: [UInt8], width: Int, height: Int, channels: Int = 3,
  quality: Int = 95
) throws {
  try writeFile(
    folder, relative,
    try encodeJPEG(
      pixels: pixels, width: width, height: height, channels: channels, quality: quality))
}

/// One sample loaded into a fresh buffer: (label, pixels).
func loadSample(_ dataset: any Dataset, _ index: Int, epoch: Int? = nil) throws -> (Int, [Float]) {
  var pixels = [Float](repeating: .nan, count: dataset.pixelsPerImage)
  let source = epoch.map { epochView(of: dataset, epoch: $0) } ?? dataset
  let label = try pixels.withUnsafeMutableBufferPointer {
    try source.load(index, into: $0.baseAddress!)
  }
  return (label, pixels)
}

/// Normalised floats back to 0–255.
func toBytes(_ pixels: [Float]) -> [Float] { pixels.map { $0 * 127.5 + 127.5 } }

/// The largest |a − b| and its index.
func maxDifference(_ a: [Float], _ b: [Float]) -> (value: Float, index: Int) {
  precondition(a.count == b.count)
  var worst: (Float, Int) = (0, -1)
  for i in a.indices where abs(a[i] - b[i]) > worst.0 || a[i].isNaN != b[i].isNaN {
    worst = (a[i].isNaN || b[i].isNaN ? .infinity : abs(a[i] - b[i]), i)
  }
  return worst
}

/// CIFAR records: `labels` (one or two bytes each) followed by 3072 CHW pixel bytes made from `seed`.
func cifarRecords(labels: [[UInt8]], seed: Int) -> [UInt8] {
  var bytes: [UInt8] = []
  for (n, label) in labels.enumerated() {
    bytes += label
    bytes += cifarImageCHW(seed: seed * 100 + n)
  }
  return bytes
}

/// 3072 bytes of a CIFAR image: R plane, G plane, B plane, each 32×32 row-major.
func cifarImageCHW(seed: Int) -> [UInt8] {
  (0..<3072).map { UInt8((($0 % 1024) * 7 + ($0 / 1024) * 50 + seed * 13) % 256) }
}

/// An IDX file: big-endian magic and dimensions, then bytes.
func idxFile(magic: UInt32, dimensions: [Int], data: [UInt8]) -> [UInt8] {
  var bytes: [UInt8] = []
  for word in [Int(magic)] + dimensions {
    bytes += [
      UInt8(word >> 24 & 0xFF), UInt8(word >> 16 & 0xFF), UInt8(word >> 8 & 0xFF),
      UInt8(word & 0xFF),
    ]
  }
  return bytes + data
}

/// A gzip file holding `data` in stored (uncompressed) deflate blocks, with its CRC-32 and size.
func gzipStored(_ data: [UInt8]) -> [UInt8] {
  var bytes: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255]
  var offset = 0
  repeat {
    let length = min(65_535, data.count - offset)
    bytes.append(offset + length == data.count ? 1 : 0)
    bytes += [
      UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF),
    ]
    bytes += data[offset..<offset + length]
    offset += length
  } while offset < data.count
  let crc = crc32(data)
  let size = UInt32(truncatingIfNeeded: data.count)
  for word in [crc, size] {
    bytes += [
      UInt8(word & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word >> 16 & 0xFF), UInt8(word >> 24),
    ]
  }
  return bytes
}

/// Asserts that `body` throws a `DataError` whose description contains every fragment.
func assertDataError(
  _ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
  _ body: () throws -> Any
) {
  do {
    _ = try body()
    XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
  } catch {
    let text = "\(error)"
    XCTAssertTrue(error is DataError, "not a DataError: \(text)", file: file, line: line)
    for fragment in fragments {
      XCTAssertTrue(
        text.contains(fragment), "'\(text)' does not mention '\(fragment)'", file: file, line: line)
    }
  }
}

/// 0–255 bytes normalised by the official `(x − 127.5) / 127.5`.
func normalized(_ bytes: [UInt8]) -> [Float] {
  bytes.map { (Float($0) - 127.5) / 127.5 }
}

/// Gray pixels (every `channels`-th byte, e.g. 2 for gray+alpha) repeated into RGB.
func grayToRGB(_ pixels: [UInt8], channels: Int = 1) -> [UInt8] {
  var rgb: [UInt8] = []
  for p in stride(from: 0, to: pixels.count, by: channels) {
    rgb += [pixels[p], pixels[p], pixels[p]]
  }
  return rgb
}

/// RGBA pixels without their alpha.
func dropAlpha(_ rgba: [UInt8]) -> [UInt8] {
  var rgb: [UInt8] = []
  for p in stride(from: 0, to: rgba.count, by: 4) {
    rgb += [rgba[p], rgba[p + 1], rgba[p + 2]]
  }
  return rgb
}
