// Tests of the embedded dataset: determinism, split disjointness, label balance, pixel range,
// shape placement, and the PPM grid writer.

import Foundation
import XCTest

@testable import MixerData
import MixerNumerics

final class SyntheticShapesTests: XCTestCase {
  private func image(_ dataset: SyntheticShapes, _ index: Int) throws -> (pixels: [Float], label: Int) {
    var pixels = [Float](repeating: .nan, count: dataset.pixelsPerImage)
    let label = try pixels.withUnsafeMutableBufferPointer {
      try dataset.load(index, into: $0.baseAddress!)
    }
    return (pixels, label)
  }

  func testSameSeedGivesIdenticalPixelsAndOtherSeedsDiffer() throws {
    let a = SyntheticShapes(split: .train, seed: 7)
    let b = SyntheticShapes(split: .train, seed: 7)
    let c = SyntheticShapes(split: .train, seed: 8)
    for index in [0, 1, 9, 10, 12_345, 49_999] {
      let x = try image(a, index), y = try image(b, index), z = try image(c, index)
      XCTAssertEqual(x.pixels, y.pixels, "index \(index): same seed must give the same bytes")
      XCTAssertEqual(x.label, y.label)
      XCTAssertNotEqual(x.pixels, z.pixels, "index \(index): seeds 7 and 8 gave the same image")
    }
    // Different seeds also change the label order.
    let labelsA = (0..<100).map { a.label(of: $0) }, labelsC = (0..<100).map { c.label(of: $0) }
    XCTAssertNotEqual(labelsA, labelsC)
  }

  func testPixelsAreNormalisedAndLabelsMatch() throws {
    let dataset = SyntheticShapes(split: .validation, seed: 3)
    XCTAssertEqual(dataset.count, 5_000)
    XCTAssertEqual(dataset.classNames.count, dataset.numClasses)
    XCTAssertEqual(Set(dataset.classNames).count, 10)
    for index in 0..<200 {
      let (pixels, label) = try image(dataset, index)
      XCTAssertEqual(label, dataset.label(of: index))
      XCTAssertTrue((0..<10).contains(label))
      let low = pixels.min()!, high = pixels.max()!
      XCTAssertTrue(low >= -1 && high <= 1 && low.isFinite && high.isFinite, "index \(index): [\(low), \(high)]")
      // Foreground and background are at least 120 apart on the 0–255 scale: a visible shape.
      XCTAssertGreaterThan(high - low, 0.5, "index \(index) has no contrast")
    }
  }

  func testLabelsAreBalancedAndNotIndexModTen() {
    let dataset = SyntheticShapes(split: .train, count: 5_003, seed: 1)
    var counts = [Int](repeating: 0, count: 10)
    var equalToIndexModTen = 0
    for index in 0..<dataset.count {
      let label = dataset.label(of: index)
      counts[label] += 1
      if label == index % 10 { equalToIndexModTen += 1 }
    }
    // Every block of ten holds each class once; the 3 left over are distinct classes.
    XCTAssertEqual(counts.min(), 500, "\(counts)")
    XCTAssertEqual(counts.max(), 501, "\(counts)")
    XCTAssertEqual(counts.reduce(0, +), 5_003)
    XCTAssertLessThan(equalToIndexModTen, 1_000, "labels follow index % 10")
  }

  func testTrainAndValidationKeysAreDisjoint() throws {
    let train = SyntheticShapes(split: .train, seed: 0)
    let validation = SyntheticShapes(split: .validation, seed: 0)
    let trainKeys = Set((0..<train.count).map(train.imageKey))
    XCTAssertEqual(trainKeys.count, train.count, "two training images share a key")
    for index in 0..<validation.count {
      XCTAssertFalse(trainKeys.contains(validation.imageKey(index)), "validation \(index) is in train")
    }
    XCTAssertNotEqual(try image(train, 5).pixels, try image(validation, 5).pixels)
  }

  func testShapesAreNeitherTinyNorOutOfFrame() {
    let side = SyntheticShapes.side
    var coverage = [Float](repeating: 0, count: side * side)
    for shape in 0..<10 {
      var smallest = Float.infinity, largest: Float = 0, worstInside: Float = 1
      for sample in 0..<100 {
        var rng = CounterRNG(seed: 11, UInt64(shape), UInt64(sample))
        coverage.withUnsafeMutableBufferPointer {
          SyntheticShapes.drawCoverage($0.baseAddress!, shape: shape, rng: &rng)
        }
        let area = coverage.reduce(0, +)
        // The centring rule keeps shapes within a pixel of the frame, so little of a shape
        // lies on the outermost ring of pixels.
        var border: Float = 0
        for y in 0..<side {
          for x in 0..<side where x == 0 || y == 0 || x == side - 1 || y == side - 1 {
            border += coverage[y * side + x]
          }
        }
        smallest = min(smallest, area)
        largest = max(largest, area)
        worstInside = min(worstInside, 1 - border / max(area, 1))
      }
      let name = SyntheticShapes.names[shape]
      XCTAssertGreaterThan(smallest, 20, "\(name): a sample covers only \(smallest) px")
      XCTAssertLessThan(largest, 0.6 * Float(side * side), "\(name): a sample covers \(largest) px")
      XCTAssertGreaterThan(worstInside, 0.8, "\(name): a sample lies mostly on the border")
    }
  }

  func testOutOfRangeIndexThrowsNamingTheSample() {
    let dataset = SyntheticShapes(split: .train, count: 10)
    var pixels = [Float](repeating: 0, count: dataset.pixelsPerImage)
    XCTAssertThrowsError(
      try pixels.withUnsafeMutableBufferPointer { try dataset.load(10, into: $0.baseAddress!) }
    ) { error in
      XCTAssertTrue("\(error)".contains("sample 10"), "\(error)")
    }
  }

  /// Writes class-by-row grids; set MIXER_SHAPES_GRID=/path/grid (no extension) to keep
  /// grid.ppm and grid.png.
  func testGridWritersWriteValidPPMAndPNG() throws {
    let dataset = SyntheticShapes(split: .train)
    let keep = ProcessInfo.processInfo.environment["MIXER_SHAPES_GRID"]
    let stem = keep ?? NSTemporaryDirectory() + "shapes_grid_\(getpid())"
    let perClass = keep == nil ? 4 : 12, scale = keep == nil ? 2 : 3
    try writeImageGrid(dataset: dataset, perClass: perClass, scale: scale, path: stem + ".ppm")
    try writeImageGrid(dataset: dataset, perClass: perClass, scale: scale, path: stem + ".png")
    defer {
      if keep == nil {
        try? FileManager.default.removeItem(atPath: stem + ".ppm")
        try? FileManager.default.removeItem(atPath: stem + ".png")
      }
    }
    let cell = 32 * scale + 2
    let width = perClass * cell + 2, height = 10 * cell + 2

    let ppm = try Data(contentsOf: URL(fileURLWithPath: stem + ".ppm"))
    let header = "P6\n\(width) \(height)\n255\n"
    XCTAssertEqual(String(decoding: ppm.prefix(header.utf8.count), as: UTF8.self), header)
    XCTAssertEqual(ppm.count, header.utf8.count + width * height * 3)

    let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: stem + ".png")))
    XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    XCTAssertEqual(String(decoding: png[12..<16], as: UTF8.self), "IHDR")
    let pngWidth = png[16..<20].reduce(0) { $0 << 8 | Int($1) }
    let pngHeight = png[20..<24].reduce(0) { $0 << 8 | Int($1) }
    XCTAssertEqual([pngWidth, pngHeight], [width, height])
    XCTAssertEqual(String(decoding: png.suffix(8).prefix(4), as: UTF8.self), "IEND")
    // The CRC of IEND (type only) is the well-known AE 42 60 82.
    XCTAssertEqual(Array(png.suffix(4)), [0xAE, 0x42, 0x60, 0x82])
    // the PNG holds exactly the PPM's pixels
    let decoded = try png.withUnsafeBytes { try decodeImage($0) }.image
    XCTAssertEqual(decoded.pixels, Array(ppm.suffix(width * height * 3)))

    let indices = try indicesByClass(dataset: dataset, perClass: 4)
    XCTAssertEqual(indices.map(dataset.label(of:)), (0..<10).flatMap { Array(repeating: $0, count: 4) })
  }
}
