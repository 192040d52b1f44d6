// Looking at a dataset: renders samples into one RGB8 grid image and writes it as binary PPM (P6)
// or as PNG. The PNG writer needs no zlib: it stores the scanlines in uncompressed deflate blocks
// (RFC 1950/1951) with their CRC-32 and Adler-32, which every viewer reads.

import Foundation

/// Indices of the first `perClass` samples of each class, class by class (row r = class r).
public func indicesByClass(dataset: some Dataset, perClass: Int) throws -> [Int] {
  var found = [[Int]](repeating: [], count: dataset.numClasses)
  var scratch = [Float](repeating: 0, count: dataset.pixelsPerImage)
  var index = 0
  while index < dataset.count && found.contains(where: { $0.count < perClass }) {
    let label = try scratch.withUnsafeMutableBufferPointer {
      try dataset.load(index, into: $0.baseAddress!)
    }
    if found[label].count < perClass { found[label].append(index) }
    index += 1
  }
  return found.flatMap { $0 }
}

/// Samples `indices` laid out `columns` per row, each pixel drawn `scale × scale`, with
/// `padding` grey pixels between images: (width, height, RGB8 bytes row-major).
public func renderGrid(
  dataset: some Dataset, indices: [Int], columns: Int, scale: Int = 2, padding: Int = 2
) throws -> (width: Int, height: Int, rgb: [UInt8]) {
  precondition(columns >= 1 && scale >= 1 && padding >= 0)
  let rows = (indices.count + columns - 1) / columns
  let cellWidth = dataset.width * scale + padding, cellHeight = dataset.height * scale + padding
  let width = columns * cellWidth + padding, height = rows * cellHeight + padding
  var rgb = [UInt8](repeating: 128, count: width * height * 3)
  var image = [Float](repeating: 0, count: dataset.pixelsPerImage)
  for (n, index) in indices.enumerated() {
    _ = try image.withUnsafeMutableBufferPointer { try dataset.load(index, into: $0.baseAddress!) }
    let left = padding + (n % columns) * cellWidth, top = padding + (n / columns) * cellHeight
    for y in 0..<dataset.height * scale {
      for x in 0..<dataset.width * scale {
        let source = ((y / scale) * dataset.width + x / scale) * 3
        let target = ((top + y) * width + left + x) * 3
        for channel in 0..<3 {
          let value = (image[source + channel] * 127.5 + 127.5).rounded()
          rgb[target + channel] = UInt8(min(max(value, 0), 255))
        }
      }
    }
  }
  return (width, height, rgb)
}

/// Writes RGB8 bytes (`[height, width, 3]`) as a binary PPM file.
public func writePPM(path: String, width: Int, height: Int, rgb: [UInt8]) throws {
  precondition(rgb.count == width * height * 3)
  var data = Data("P6\n\(width) \(height)\n255\n".utf8)
  data.append(contentsOf: rgb)
  try data.write(to: URL(fileURLWithPath: path), options: .atomic)
}

/// Writes RGB8 bytes (`[height, width, 3]`) as an 8-bit RGB PNG file (uncompressed deflate).
public func writePNG(path: String, width: Int, height: Int, rgb: [UInt8]) throws {
  precondition(rgb.count == width * height * 3)
  // Scanlines, each prefixed with filter type 0 (none).
  var scanlines = [UInt8]()
  scanlines.reserveCapacity(height * (width * 3 + 1))
  for y in 0..<height {
    scanlines.append(0)
    scanlines.append(contentsOf: rgb[y * width * 3..<(y + 1) * width * 3])
  }
  // zlib stream: header, stored blocks of at most 65,535 bytes, Adler-32 of the data.
  var zlib: [UInt8] = [0x78, 0x01]
  var offset = 0
  repeat {
    let length = min(65_535, scanlines.count - offset)
    let final: UInt8 = offset + length == scanlines.count ? 1 : 0
    zlib.append(final)
    zlib.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
    zlib.append(contentsOf: [UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)])
    zlib.append(contentsOf: scanlines[offset..<offset + length])
    offset += length
  } while offset < scanlines.count
  var a: UInt32 = 1, b: UInt32 = 0
  for byte in scanlines {
    a = (a + UInt32(byte)) % 65_521
    b = (b + a) % 65_521
  }
  zlib.append(contentsOf: bigEndian((b << 16) | a))

  var header = bigEndian(UInt32(width)) + bigEndian(UInt32(height))
  header += [8, 2, 0, 0, 0]  // bit depth 8, colour type RGB, deflate, no filter, no interlace
  var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
  for (type, body) in [("IHDR", header), ("IDAT", zlib), ("IEND", [])] {
    let typed = Array(type.utf8) + body
    png += bigEndian(UInt32(body.count)) + typed + bigEndian(crc32(typed))
  }
  try Data(png).write(to: URL(fileURLWithPath: path), options: .atomic)
}

private func bigEndian(_ value: UInt32) -> [UInt8] {
  [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
}

/// CRC-32 (polynomial 0xEDB88320) as PNG chunks use.
private func crc32(_ bytes: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
  }
  return ~crc
}

/// Renders `perClass` samples of every class, one class per row, to `path`: PNG when the path
/// ends in `.png`, PPM otherwise.
public func writeImageGrid(
  dataset: some Dataset, perClass: Int = 10, scale: Int = 2, path: String
) throws {
  let indices = try indicesByClass(dataset: dataset, perClass: perClass)
  let grid = try renderGrid(dataset: dataset, indices: indices, columns: perClass, scale: scale)
  if path.lowercased().hasSuffix(".png") {
    try writePNG(path: path, width: grid.width, height: grid.height, rgb: grid.rgb)
  } else {
    try writePPM(path: path, width: grid.width, height: grid.height, rgb: grid.rgb)
  }
}
