// Looking at a dataset: renders samples into one RGB8 grid image and writes it as binary PPM (P6)
// or as PNG (through libpng, `encodePNG` in ImageCodec.swift).

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

/// Writes RGB8 bytes (`[height, width, 3]`) as an 8-bit RGB PNG file.
public func writePNG(path: String, width: Int, height: Int, rgb: [UInt8]) throws {
  precondition(rgb.count == width * height * 3)
  let png = try encodePNG(pixels: rgb, width: width, height: height, channels: 3)
  try Data(png).write(to: URL(fileURLWithPath: path), options: .atomic)
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
