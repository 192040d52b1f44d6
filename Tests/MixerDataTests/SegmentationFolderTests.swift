// Tests of label-mask PNG decoding and segmentation folders. The mask decoder: palette indices
// (not colours), gray at every bit depth, every filter type, 255 → ignore, colour masks refused,
// and hostile bytes (every truncation, every bit flip, corrupted streams with valid CRCs) throwing
// instead of crashing. The PNGs libpng cannot write (palettes, 1/2/4/16-bit gray, chosen filters)
// come from a small encoder in this file, itself checked against libpng's decoder. The folder:
// pairing by relative path, layouts and the hashed hold-out, class names, construction errors,
// exact whole-image validation resizing with nearest-neighbour masks, image/mask alignment under
// training crops and flips, and determinism in (seed, epoch, index).

import Foundation
import MixerTestSupport
import MixerNumerics
import XCTest

@testable import MixerData

// MARK: - A minimal PNG encoder (test data only; chunks and zlib from MixerTestSupport)

/// Rows of one sample per pixel at `bitDepth`: 16 bits big-endian, 1/2/4 bits packed from the
/// high bits of each byte, the last byte of a row zero-padded.
private func packedRows(_ samples: [Int], width: Int, height: Int, bitDepth: Int) -> [[UInt8]] {
  (0..<height).map { y in
    var row = [UInt8](repeating: 0, count: (width * bitDepth + 7) / 8)
    for x in 0..<width {
      let value = samples[y * width + x]
      switch bitDepth {
      case 16:
        row[2 * x] = UInt8(value >> 8)
        row[2 * x + 1] = UInt8(value & 0xFF)
      case 8:
        row[x] = UInt8(value)
      default:
        let bit = x * bitDepth
        row[bit / 8] |= UInt8(value << (8 - bitDepth - bit % 8))
      }
    }
    return row
  }
}

/// The spec's Paeth predictor, written out for the encoder.
private func paeth(_ a: Int, _ b: Int, _ c: Int) -> Int {
  let p = a + b - c
  let pa = abs(p - a)
  let pb = abs(p - b)
  let pc = abs(p - c)
  if pa <= pb && pa <= pc { return a }
  if pb <= pc { return b }
  return c
}

/// The image data before compression: each row preceded by its filter type (`filters`, cycled
/// over the rows) and filtered against the raw bytes to its left (`bytesPerPixel` back) and above.
private func filteredData(_ rows: [[UInt8]], filters: [UInt8], bytesPerPixel: Int) -> [UInt8] {
  var output: [UInt8] = []
  for (r, row) in rows.enumerated() {
    let filter = filters[r % filters.count]
    output.append(filter)
    let above = r > 0 ? rows[r - 1] : [UInt8](repeating: 0, count: row.count)
    for i in row.indices {
      let a = i >= bytesPerPixel ? Int(row[i - bytesPerPixel]) : 0
      let b = Int(above[i])
      let c = i >= bytesPerPixel ? Int(above[i - bytesPerPixel]) : 0
      let prediction = [0, a, b, (a + b) / 2, paeth(a, b, c)][Int(filter)]
      output.append(UInt8(truncatingIfNeeded: Int(row[i]) - prediction))
    }
  }
  return output
}

/// A gray (colour type 0) or palette (3) PNG of one sample per pixel, row-major.
private func handMadePNG(
  width: Int, height: Int, bitDepth: Int, colourType: UInt8 = 0, samples: [Int],
  palette: [UInt8]? = nil, filters: [UInt8] = [0], idatPieces: Int = 1
) -> [UInt8] {
  precondition(samples.count == width * height)
  let rows = packedRows(samples, width: width, height: height, bitDepth: bitDepth)
  let compressed = zlibCompress(
    filteredData(rows, filters: filters, bytesPerPixel: max(1, bitDepth / 8)))
  var png = pngSignature
  png += pngChunk(
    "IHDR",
    pngHeader(
      width: UInt32(width), height: UInt32(height), bitDepth: UInt8(bitDepth),
      colourType: colourType))
  if let palette { png += pngChunk("PLTE", palette) }
  let piece = (compressed.count + idatPieces - 1) / idatPieces
  for start in stride(from: 0, to: compressed.count, by: piece) {
    png += pngChunk("IDAT", Array(compressed[start..<min(start + piece, compressed.count)]))
  }
  return png + pngChunk("IEND", [])
}

/// A PNG of the given IHDR and zlib stream, with valid CRCs.
private func pngFile(header: [UInt8], imageData: [UInt8], extraChunks: [UInt8] = []) -> [UInt8] {
  pngSignature + pngChunk("IHDR", header) + extraChunks + pngChunk("IDAT", imageData)
    + pngChunk("IEND", [])
}

/// A palette of `count` distinct colours: entry k = (k, 255 − k, 7·k mod 256).
private func distinctPalette(_ count: Int) -> [UInt8] {
  var palette: [UInt8] = []
  for k in 0..<count {
    palette += [UInt8(k), UInt8(255 - k), UInt8(7 * k % 256)]
  }
  return palette
}

/// Deterministic pseudo-random samples in `0..<bound`.
private func sampleValues(_ count: Int, below bound: Int, seed: UInt64) -> [Int] {
  var rng = CounterRNG(seed: seed, 0x5345_474D, 0, 0)
  return (0..<count).map { _ in rng.below(bound) }
}

private func decodeMask(_ bytes: [UInt8]) throws -> (width: Int, height: Int, values: [Int32]) {
  try bytes.withUnsafeBytes { try decodeLabelPNG($0) }
}

/// libpng's reading of the same bytes (colours for palettes, gray levels repeated in RGB).
private func libpngPixels(_ bytes: [UInt8]) throws -> [UInt8] {
  try bytes.withUnsafeBytes { try decodePNG($0) }.pixels
}

/// Asserts that decoding `bytes` throws an `ImageDecodeError` whose message contains `fragment`.
private func assertMaskRejected(
  _ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line
) {
  do {
    let decoded = try decodeMask(bytes)
    XCTFail(
      "decoded a \(decoded.width)x\(decoded.height) mask, expected '\(fragment)'", file: file,
      line: line)
  } catch let error as ImageDecodeError {
    XCTAssertTrue(
      error.reason.contains(fragment), "'\(error.reason)' does not mention '\(fragment)'",
      file: file, line: line)
  } catch {
    XCTFail("not an ImageDecodeError: \(error)", file: file, line: line)
  }
}

// MARK: - Folder helpers

/// Writes an 8-bit gray mask through libpng.
private func writeMaskPNG(
  _ folder: URL, _ relative: String, values: [UInt8], width: Int, height: Int
) throws {
  try writePNGFile(folder, relative, pixels: values, width: width, height: height, channels: 1)
}

/// Sample `index` of `epoch`: (pixels `[H, W, 3]`, mask `[H, W]`), from buffers prefilled with
/// values the load must overwrite.
private func loadPair(_ data: SegmentationFolder, _ index: Int, epoch: Int = 0) throws -> (
  pixels: [Float], mask: [Int32]
) {
  var pixels = [Float](repeating: .nan, count: data.pixelsPerImage)
  var mask = [Int32](repeating: -7, count: data.pixelsPerMask)
  try pixels.withUnsafeMutableBufferPointer { p in
    try mask.withUnsafeMutableBufferPointer { m in
      try data.load(index, epoch: epoch, into: p.baseAddress!, mask: m.baseAddress!)
    }
  }
  return (pixels, mask)
}

private func segmentationOptions(classes: Int? = 4) -> DataOptions {
  var options = DataOptions()
  options.declaredClasses = classes
  return options
}

final class SegmentationFolderTests: XCTestCase {
  // MARK: Label PNG decoding

  /// Check of the test encoder itself: libpng reads its palette and gray files as intended, with
  /// every filter type and sub-byte packing, so the tests below test the decoder, not the encoder.
  func testHandMadePNGsReadCorrectlyByLibpng() throws {
    let (w, h) = (13, 7)
    for depth in [1, 2, 4, 8] {
      let indices = sampleValues(w * h, below: 1 << depth, seed: UInt64(depth))
      let palette = distinctPalette(1 << depth)
      let png = handMadePNG(
        width: w, height: h, bitDepth: depth, colourType: 3, samples: indices, palette: palette,
        filters: [0, 1, 2, 3, 4])
      let colours = indices.flatMap { Array(palette[3 * $0..<3 * $0 + 3]) }
      XCTAssertEqual(try libpngPixels(png), colours, "palette, \(depth) bits")

      let gray = sampleValues(w * h, below: 1 << depth, seed: UInt64(10 + depth))
      let grayPNG = handMadePNG(
        width: w, height: h, bitDepth: depth, samples: gray, filters: [4, 3, 2, 1, 0])
      let levels = gray.map { UInt8($0 * 255 / ((1 << depth) - 1)) }
      XCTAssertEqual(try libpngPixels(grayPNG), grayToRGB(levels), "gray, \(depth) bits")
    }
  }

  func testPaletteMasksDecodeToIndicesNotColours() throws {
    let (w, h) = (13, 5)
    for depth in [1, 2, 4, 8] {
      let palette = distinctPalette(1 << depth)
      // Up to 254 at 8 bits; 255 is tested as "ignore" below.
      var indices = sampleValues(w * h, below: min(1 << depth, 255), seed: UInt64(depth))
      indices[0] = (1 << depth) - 1
      let png = handMadePNG(
        width: w, height: h, bitDepth: depth, colourType: 3, samples: indices, palette: palette,
        filters: [1, 4, 0, 2, 3])
      let decoded = try decodeMask(png)
      XCTAssertEqual(decoded.width, w)
      XCTAssertEqual(decoded.height, h)
      let expected = indices.map { $0 == 255 ? SegmentationMask.ignore : Int32($0) }
      XCTAssertEqual(decoded.values, expected, "palette, \(depth) bits")
    }
    // Pascal VOC: a 256-colour palette, index 255 the "void" boundary; an index past a short
    // palette still names its class; the data may span several IDAT chunks.
    let voc = [0, 1, 15, 255, 20, 255, 0, 3]
    let png = handMadePNG(
      width: 4, height: 2, bitDepth: 8, colourType: 3, samples: voc, palette: distinctPalette(4),
      idatPieces: 3)
    XCTAssertEqual(try decodeMask(png).values, [0, 1, 15, -1, 20, -1, 0, 3])
  }

  func testGrayMasksOfEveryBitDepth() throws {
    let (w, h) = (11, 4)
    for depth in [1, 2, 4, 8, 16] {
      var samples = sampleValues(w * h, below: 1 << depth, seed: UInt64(20 + depth))
      samples[3] = (1 << depth) - 1  // 1, 3, 15 are classes; 255 and 65535 are ignore
      samples[4] = 0
      if depth == 16 { samples[5] = 300 }
      let png = handMadePNG(width: w, height: h, bitDepth: depth, samples: samples, filters: [0])
      let decoded = try decodeMask(png)
      XCTAssertEqual(decoded.width, w)
      XCTAssertEqual(decoded.height, h)
      let ignored = depth == 8 ? 255 : depth == 16 ? 65535 : -1
      let expected = samples.map { $0 == ignored ? SegmentationMask.ignore : Int32($0) }
      XCTAssertEqual(decoded.values, expected, "gray, \(depth) bits")
      XCTAssertEqual(decoded.values[3], depth >= 8 ? -1 : Int32((1 << depth) - 1))
    }
  }

  func testEveryFilterTypeIsUndone() throws {
    // Each filter type on the first row (zeros above) and on later rows, at one byte per pixel,
    // two bytes per pixel (16 bits: Sub and Paeth look 2 bytes back) and packed 2-bit pixels;
    // enough rows that Paeth meets ties between its predictors.
    let (w, h) = (33, 25)
    for depth in [2, 8, 16] {
      let samples = sampleValues(w * h, below: depth == 16 ? 65535 : (1 << depth) - 1, seed: 7)
      for first in UInt8(0)...4 {
        let filters = (0..<UInt8(h)).map { (first + $0) % 5 }
        let png = handMadePNG(
          width: w, height: h, bitDepth: depth, samples: samples, filters: filters)
        XCTAssertEqual(
          try decodeMask(png).values, samples.map { Int32($0) },
          "\(depth) bits, filters \(filters)")
      }
    }
  }

  func testLibpngWrittenGrayMaskAndIgnoreValue() throws {
    // libpng chooses its own filters on a larger image.
    let (w, h) = (64, 40)
    var values = patternPixels(width: w, height: h, seed: 3, channels: 1).map { $0 % 21 }
    for p in stride(from: 5, to: values.count, by: 17) { values[p] = 255 }
    let png = try encodePNG(pixels: values, width: w, height: h, channels: 1)
    let decoded = try decodeMask(png)
    XCTAssertEqual(decoded.width, w)
    XCTAssertEqual(decoded.height, h)
    XCTAssertEqual(decoded.values, values.map { $0 == 255 ? SegmentationMask.ignore : Int32($0) })
    XCTAssertEqual(decoded.values[5], SegmentationMask.ignore)
  }

  func testColourMasksAreRefused() throws {
    let (w, h) = (4, 3)
    let rgb = try encodePNG(
      pixels: patternPixels(width: w, height: h, seed: 1), width: w, height: h, channels: 3)
    assertMaskRejected(rgb, "masks must hold class indices: a grayscale or palette PNG, not RGB")
    let rgba = try encodePNG(
      pixels: patternPixels(width: w, height: h, seed: 1, channels: 4), width: w, height: h,
      channels: 4)
    assertMaskRejected(rgba, "a grayscale or palette PNG, not RGBA")
    let grayAlpha = try encodePNG(
      pixels: patternPixels(width: w, height: h, seed: 1, channels: 2), width: w, height: h,
      channels: 2)
    assertMaskRejected(grayAlpha, "a grayscale or palette PNG, not gray+alpha")
  }

  func testInterlacedBadHeadersAndImpossibleSizesAreRefused() throws {
    let valid = handMadePNG(width: 3, height: 2, bitDepth: 8, samples: [0, 1, 2, 3, 4, 5])
    XCTAssertEqual(try decodeMask(valid).values, [0, 1, 2, 3, 4, 5])
    let stream = zlibCompress([0, 0, 1, 2, 0, 3, 4, 5])

    let interlaced = pngFile(
      header: pngHeader(width: 3, height: 2, bitDepth: 8, colourType: 0, interlace: 1),
      imageData: stream)
    assertMaskRejected(interlaced, "interlaced")
    var badSignature = valid
    badSignature[1] = UInt8(ascii: "J")
    assertMaskRejected(badSignature, "bad signature")
    assertMaskRejected([], "empty file")
    assertMaskRejected(try encodeJPEG(pixels: [1, 2, 3], width: 1, height: 1), "bad signature")

    for (width, height) in [(0, 2), (3, 0), (40_000, 2), (3, 40_000), (0x7FFF_FFFF, 0x7FFF_FFFF),
      (0xFFFF_FFFF, 0xFFFF_FFFF)] as [(UInt32, UInt32)]
    {
      let png = pngFile(
        header: pngHeader(width: width, height: height, bitDepth: 16, colourType: 0),
        imageData: stream)
      assertMaskRejected(png, "unsupported size \(width)x\(height)")
    }
    for (depth, colour) in [(3, 0), (16, 3), (8, 1), (8, 5), (8, 7)] as [(UInt8, UInt8)] {
      let png = pngFile(
        header: pngHeader(width: 3, height: 2, bitDepth: depth, colourType: colour),
        imageData: stream)
      assertMaskRejected(png, "corrupt PNG")
    }
    var badMethod = pngHeader(width: 3, height: 2, bitDepth: 8, colourType: 0)
    badMethod[10] = 1
    assertMaskRejected(pngFile(header: badMethod, imageData: stream), "compression method")

    let header = pngHeader(width: 3, height: 2, bitDepth: 8, colourType: 0)
    let noPalette = pngFile(
      header: pngHeader(width: 3, height: 2, bitDepth: 8, colourType: 3), imageData: stream)
    assertMaskRejected(noPalette, "without a PLTE")
    let criticalChunk = pngFile(
      header: header, imageData: stream, extraChunks: pngChunk("ABCD", [1]))
    assertMaskRejected(criticalChunk, "unknown critical chunk ABCD")
    // An ancillary chunk is skipped; one between IDATs breaks their run.
    let ancillary = pngFile(header: header, imageData: stream, extraChunks: pngChunk("tEXt", [65]))
    XCTAssertEqual(try decodeMask(ancillary).values, [0, 1, 2, 3, 4, 5])
    let split =
      pngSignature + pngChunk("IHDR", header) + pngChunk("IDAT", Array(stream.prefix(4)))
      + pngChunk("tEXt", [65]) + pngChunk("IDAT", Array(stream.dropFirst(4))) + pngChunk("IEND", [])
    assertMaskRejected(split, "not consecutive")
    let idatFirst =
      pngSignature + pngChunk("IDAT", stream) + pngChunk("IHDR", header) + pngChunk("IEND", [])
    assertMaskRejected(idatFirst, "not IHDR")
    let twoHeaders = pngFile(
      header: header, imageData: stream, extraChunks: pngChunk("IHDR", header))
    assertMaskRejected(twoHeaders, "second IHDR")
    let noImageData = pngSignature + pngChunk("IHDR", header) + pngChunk("IEND", [])
    assertMaskRejected(noImageData, "no IDAT")
  }

  func testTruncatedAndCorruptMasksThrow() throws {
    let (w, h) = (7, 5)
    let samples = sampleValues(w * h, below: 21, seed: 9)
    let valid = handMadePNG(
      width: w, height: h, bitDepth: 8, colourType: 3, samples: samples,
      palette: distinctPalette(256), filters: [0, 1, 2, 3, 4])
    XCTAssertEqual(try decodeMask(valid).values, samples.map { Int32($0) })

    // Every truncation, and every single-bit flip (the signature, a length, a type, data or a
    // CRC: the chunk CRCs catch what the structure does not).
    for length in 0..<valid.count {
      XCTAssertThrowsError(try decodeMask(Array(valid.prefix(length))), "first \(length) bytes")
    }
    for position in valid.indices {
      for bit in 0..<8 {
        var flipped = valid
        flipped[position] ^= UInt8(1 << bit)
        XCTAssertThrowsError(try decodeMask(flipped), "byte \(position) bit \(bit) flipped")
      }
    }
    assertMaskRejected(Array(valid.dropLast(12)), "truncated PNG: no IEND")
    var badCRC = valid
    badCRC[badCRC.count - 1] ^= 1
    assertMaskRejected(badCRC, "CRC mismatch in the IEND chunk")

    // Valid chunks around bad image data.
    let header = pngHeader(width: UInt32(w), height: UInt32(h), bitDepth: 8, colourType: 0)
    let rows = packedRows(samples, width: w, height: h, bitDepth: 8)
    let data = filteredData(rows, filters: [0], bytesPerPixel: 1)
    let stream = zlibCompress(data)
    XCTAssertEqual(
      try decodeMask(pngFile(header: header, imageData: stream)).values, samples.map { Int32($0) })
    assertMaskRejected(
      pngFile(header: header, imageData: Array(stream.dropLast(6))),
      "truncated PNG: the image data")
    assertMaskRejected(
      pngFile(header: header, imageData: zlibCompress(Array(data.dropLast(1)))),
      "ends after \(data.count - 1) of \(data.count) bytes")
    assertMaskRejected(
      pngFile(header: header, imageData: zlibCompress(data + [0])), "holds more than")
    var badFilter = data
    badFilter[3 * (w + 1)] = 5
    assertMaskRejected(
      pngFile(header: header, imageData: zlibCompress(badFilter)), "unknown filter type 5 in row 3")
    var badChecksum = stream
    badChecksum[badChecksum.count - 1] ^= 0xFF  // the Adler-32 of the zlib stream
    assertMaskRejected(pngFile(header: header, imageData: badChecksum), "corrupt PNG image data")
    assertMaskRejected(
      pngFile(header: header, imageData: [0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF]),
      "corrupt PNG image data")

    // Random damage to the zlib stream behind valid CRCs: decoded or refused, never a crash or
    // a mask of the wrong size.
    var rng = CounterRNG(seed: 1, 0x4655_5A5A, 0, 0)
    var refused = 0
    for _ in 0..<400 {
      var damaged = stream
      for _ in 0...rng.below(3) {
        damaged[rng.below(damaged.count)] = UInt8(rng.below(256))
      }
      if rng.below(4) == 0 { damaged = Array(damaged.prefix(rng.below(damaged.count))) }
      do {
        let decoded = try decodeMask(pngFile(header: header, imageData: damaged))
        XCTAssertEqual(decoded.values.count, w * h)
      } catch {
        XCTAssertTrue(error is ImageDecodeError, "\(error)")
        refused += 1
      }
    }
    XCTAssertGreaterThan(refused, 300)
  }

  // MARK: Segmentation folders

  func testPairsImagesWithMasksByRelativePath() throws {
    let root = try makeTemporaryDirectory(self, "seg-pairs")
    let (w, h) = (6, 4)
    // Byte order of paths below images/: "d.png" < "d/e.png" ('.' < '/'), though a directory
    // walk meets "d/" first.
    let files = ["sub/c.png", "d/e.png", "b.png", "a.jpg", "d.png"]
    for (n, file) in files.enumerated() {
      let pixels = patternPixels(width: w, height: h, seed: n)
      if file.hasSuffix(".jpg") {
        try writeJPEGFile(root, "train/images/" + file, pixels: pixels, width: w, height: h)
      } else {
        try writePNGFile(root, "train/images/" + file, pixels: pixels, width: w, height: h)
      }
      let stem = (file as NSString).deletingPathExtension
      try writeMaskPNG(
        root, "train/masks/\(stem).png", values: [UInt8](repeating: UInt8(n), count: w * h),
        width: w, height: h)
    }
    // Ignored: a mask without an image, hidden files, other extensions.
    try writeMaskPNG(root, "train/masks/orphan.png", values: [1], width: 1, height: 1)
    try writeFile(root, "train/images/.hidden.png", [1, 2, 3])
    try writeFile(root, "train/images/notes.txt", Array("not an image".utf8))
    try writePNGFile(root, "val/images/v.png", pixels: [9, 9, 9], width: 1, height: 1)
    try writeMaskPNG(root, "val/masks/v.png", values: [2], width: 1, height: 1)

    var exact = segmentationOptions(classes: 5)
    exact.augment = false  // the whole image at its own size: the file's pixels
    let train = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: h, imageWidth: w, seed: 0, options: exact)
    XCTAssertEqual(train.count, 5)
    XCTAssertEqual(train.directory, root.appendingPathComponent("train").path)
    let order = ["a.jpg", "b.png", "d.png", "d/e.png", "sub/c.png"]
    XCTAssertEqual(
      (0..<train.count).map { train.path(of: $0) },
      order.map { train.directory + "/images/" + $0 })
    XCTAssertEqual(
      (0..<train.count).map { train.maskPath(of: $0) },
      ["a.png", "b.png", "d.png", "d/e.png", "sub/c.png"].map { train.directory + "/masks/" + $0 })
    // Each mask is filled with the writing order of its image: the loaded mask names the file.
    for (index, file) in order.enumerated() {
      let (pixels, mask) = try loadPair(train, index)
      let n = files.firstIndex(of: file)!
      XCTAssertEqual(mask, [Int32](repeating: Int32(n), count: w * h), file)
      if file.hasSuffix(".png") {
        XCTAssertEqual(pixels, normalized(patternPixels(width: w, height: h, seed: n)), file)
      }
    }
    let val = try SegmentationFolder(
      root: root.path, split: .validation, imageHeight: 2, imageWidth: 2, seed: 0,
      options: segmentationOptions(classes: 5))
    XCTAssertEqual(val.count, 1)
    XCTAssertEqual(try loadPair(val, 0).mask, [2, 2, 2, 2])
    // The classification entry point writes the image alone.
    XCTAssertEqual(try loadSample(val, 0).1, normalized([UInt8](repeating: 9, count: 12)))
  }

  func testConstructionErrorsNameWhatToFix() throws {
    let root = try makeTemporaryDirectory(self, "seg-errors")
    assertDataError(["\(root.path)/missing", "does not exist"]) {
      try SegmentationFolder(
        root: root.path + "/missing", split: .train, imageHeight: 4, imageWidth: 4, seed: 0,
        options: segmentationOptions())
    }
    assertDataError(["no images folder", "ROOT/images"]) {
      try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0,
        options: segmentationOptions())
    }
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("images"), withIntermediateDirectories: true)
    assertDataError(["no masks folder", "\(root.path)/masks"]) {
      try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0,
        options: segmentationOptions())
    }
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("masks"), withIntermediateDirectories: true)
    assertDataError(["\(root.path)/images holds no .jpg, .jpeg or .png images"]) {
      try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0,
        options: segmentationOptions())
    }
    try writePNGFile(root, "images/a.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "masks/a.png", values: [0], width: 1, height: 1)
    try writePNGFile(root, "images/sub/x.jpg", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "masks/x.png", values: [0], width: 1, height: 1)  // wrong folder
    for split in DataSplit.allCases {
      assertDataError([
        "image \(root.path)/images/sub/x.jpg has no mask", "expected \(root.path)/masks/sub/x.png",
      ]) {
        try SegmentationFolder(
          root: root.path, split: split, imageHeight: 4, imageWidth: 4, seed: 0,
          options: segmentationOptions())
      }
    }
    try writeMaskPNG(root, "masks/sub/x.png", values: [0], width: 1, height: 1)
    // Two images and half held out: the split without one of them is empty for some split seed.
    var options = segmentationOptions()
    options.valFraction = 0.5
    options.splitSeed = (0..<64).first { seed in
      let held = ["a.png", "sub/x.jpg"].map { ImageFolder.splitHash($0, seed: seed) < 0.5 }
      return held[0] == held[1]
    }!
    let emptySplit: DataSplit =
      ImageFolder.splitHash("a.png", seed: options.splitSeed) < 0.5 ? .train : .validation
    assertDataError(["the \(emptySplit.rawValue) split of \(root.path) is empty"]) {
      try SegmentationFolder(
        root: root.path, split: emptySplit, imageHeight: 4, imageWidth: 4, seed: 0,
        options: options)
    }
    let other: DataSplit = emptySplit == .train ? .validation : .train
    XCTAssertEqual(
      try SegmentationFolder(
        root: root.path, split: other, imageHeight: 4, imageWidth: 4, seed: 0, options: options
      ).count, 2)
  }

  func testClassNamesFromFileOrOptions() throws {
    let root = try makeTemporaryDirectory(self, "seg-classes")
    try writePNGFile(root, "train/images/a.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "train/masks/a.png", values: [0], width: 1, height: 1)
    try writePNGFile(root, "val/images/b.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "val/masks/b.png", values: [0], width: 1, height: 1)
    func make(_ classes: Int?) throws -> SegmentationFolder {
      try SegmentationFolder(
        root: root.path, split: .validation, imageHeight: 1, imageWidth: 1, seed: 0,
        options: segmentationOptions(classes: classes))
    }
    assertDataError(["has no classes.txt", "add ROOT/classes.txt", "--classes K"]) { try make(nil) }
    let numbered = try make(3)
    XCTAssertEqual(numbered.classNames, ["class 0", "class 1", "class 2"])
    XCTAssertEqual(numbered.numClasses, 3)
    assertDataError(["--classes 0 must be positive"]) { try make(0) }

    try writeFile(root, "classes.txt", Array("background\r\n\naeroplane\n  bicycle \n\n".utf8))
    let named = try make(nil)
    XCTAssertEqual(named.classNames, ["background", "aeroplane", "bicycle"])
    XCTAssertEqual(named.numClasses, 3)
    XCTAssertEqual(try make(3).classNames, named.classNames)
    assertDataError(["classes.txt names 3 classes but --classes is 5"]) { try make(5) }
    try writeFile(root, "classes.txt", Array("\n \n".utf8))
    assertDataError(["classes.txt names no classes"]) { try make(nil) }
  }

  func testTrainValTreesAndHashedHoldOut() throws {
    let root = try makeTemporaryDirectory(self, "seg-split")
    let names = (0..<48).map { "g\($0 % 3)/img\($0).png" }
    for name in names {
      try writePNGFile(root, "images/" + name, pixels: [1, 2, 3], width: 1, height: 1)
      try writeMaskPNG(root, "masks/" + name, values: [0], width: 1, height: 1)
    }
    func relativePaths(_ data: SegmentationFolder) -> [String] {
      (0..<data.count).map { String(data.path(of: $0).dropFirst(data.directory.count + 8)) }
    }
    func expected(_ fraction: Double, seed: UInt64, heldOut: Bool) -> [String] {
      names.filter { (ImageFolder.splitHash($0, seed: seed) < fraction) == heldOut }
        .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
    // One tree: 0.1 held out by the hash of the path below images/.
    for (fraction, seed) in [(nil, 0), (0.3, 5)] as [(Double?, UInt64)] {
      var options = segmentationOptions()
      options.valFraction = fraction
      options.splitSeed = seed
      let train = try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 1, imageWidth: 1, seed: 0, options: options)
      let val = try SegmentationFolder(
        root: root.path, split: .validation, imageHeight: 1, imageWidth: 1, seed: 0,
        options: options)
      XCTAssertEqual(relativePaths(train), expected(fraction ?? 0.1, seed: seed, heldOut: false))
      XCTAssertEqual(relativePaths(val), expected(fraction ?? 0.1, seed: seed, heldOut: true))
      XCTAssertFalse(val.count == 0 || train.count == 0)
      XCTAssertEqual(train.count + val.count, names.count)
    }

    // train/ and validation/ trees: validation reads its tree unless valFraction is given.
    let trees = try makeTemporaryDirectory(self, "seg-trees")
    for name in names {
      try writePNGFile(trees, "train/images/" + name, pixels: [1, 2, 3], width: 1, height: 1)
      try writeMaskPNG(trees, "train/masks/" + name, values: [0], width: 1, height: 1)
    }
    try writePNGFile(trees, "validation/images/only.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(trees, "validation/masks/only.png", values: [0], width: 1, height: 1)
    let train = try SegmentationFolder(
      root: trees.path, split: .train, imageHeight: 1, imageWidth: 1, seed: 0,
      options: segmentationOptions())
    XCTAssertEqual(train.count, names.count)
    let val = try SegmentationFolder(
      root: trees.path, split: .validation, imageHeight: 1, imageWidth: 1, seed: 0,
      options: segmentationOptions())
    XCTAssertEqual(val.directory, trees.appendingPathComponent("validation").path)
    XCTAssertEqual(relativePaths(val), ["only.png"])
    var minival = segmentationOptions()
    minival.valFraction = 0.25
    let carved = try SegmentationFolder(
      root: trees.path, split: .validation, imageHeight: 1, imageWidth: 1, seed: 0,
      options: minival)
    XCTAssertEqual(carved.directory, trees.appendingPathComponent("train").path)
    XCTAssertEqual(relativePaths(carved), expected(0.25, seed: 0, heldOut: true))
  }

  func testValidationResizesTheWholeImageAndSamplesTheMaskNearest() throws {
    let root = try makeTemporaryDirectory(self, "seg-resize")
    // 8×8 → 4×4: output pixel j reads source point 2j + 1, inside pixel 2j + 1 for the mask and
    // halfway between pixels 2j and 2j + 1 for the bilinear image.
    let image = patternPixels(width: 8, height: 8, seed: 2)
    var mask = (0..<64).map { UInt8($0) }  // class = 8·y + x
    mask[5 * 8 + 3] = 255
    // 10×7 → 4×3 (height 3, width 4): columns 1.25, 3.75, 6.25, 8.75; rows 1.17, 3.5, 5.83.
    let tall = (0..<70).map { UInt8($0) }  // class = 10·y + x
    for tree in ["train", "val"] {
      try writePNGFile(root, "\(tree)/images/a.png", pixels: image, width: 8, height: 8)
      try writeMaskPNG(root, "\(tree)/masks/a.png", values: mask, width: 8, height: 8)
      try writePNGFile(
        root, "\(tree)/images/b.png", pixels: patternPixels(width: 10, height: 7, seed: 3),
        width: 10, height: 7)
      try writeMaskPNG(root, "\(tree)/masks/b.png", values: tall, width: 10, height: 7)
    }
    var options = segmentationOptions(classes: 70)
    let val = try SegmentationFolder(
      root: root.path, split: .validation, imageHeight: 4, imageWidth: 4, seed: 0,
      options: options)
    // Training without augmentation is preprocessed the same way.
    options.augment = false
    let plainTrain = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    let expectedMask: [Int32] = [
      9, 11, 13, 15,
      25, 27, 29, 31,
      41, -1, 45, 47,
      57, 59, 61, 63,
    ]
    var expectedPixels = [Float](repeating: 0, count: 48)
    for i in 0..<4 {
      for j in 0..<4 {
        for c in 0..<3 {
          let block = [(0, 0), (0, 1), (1, 0), (1, 1)].map { (dy, dx) in
            Float(image[((2 * i + dy) * 8 + 2 * j + dx) * 3 + c])
          }
          expectedPixels[(i * 4 + j) * 3 + c] = block.reduce(0, +) / 4
        }
      }
    }
    for data in [val, plainTrain] {
      let (pixels, maskOut) = try loadPair(data, 0, epoch: 3)
      XCTAssertEqual(maskOut, expectedMask, "\(data.split)")
      let (difference, at) = maxDifference(toBytes(pixels), expectedPixels)
      XCTAssertLessThan(difference, 1e-3, "\(data.split): pixel \(at)")
    }
    let wide = try SegmentationFolder(
      root: root.path, split: .validation, imageHeight: 3, imageWidth: 4, seed: 0,
      options: options)
    XCTAssertEqual(try loadPair(wide, 1).mask, [11, 13, 16, 18, 31, 33, 36, 38, 51, 53, 56, 58])
  }

  /// Left of a boundary the image is red and the mask class 1, right of it blue and class 2:
  /// under every crop and flip, each output pixel's colour must match its class.
  func testTrainingCropsAndFlipsKeepImageAndMaskAligned() throws {
    let root = try makeTemporaryDirectory(self, "seg-align")
    let (w, h) = (40, 24)
    for (name, boundary) in [("a.png", 15), ("b.png", 31)] {
      var pixels = [UInt8](repeating: 0, count: w * h * 3)
      var mask = [UInt8](repeating: 0, count: w * h)
      for y in 0..<h {
        for x in 0..<w {
          pixels[(y * w + x) * 3 + (x < boundary ? 0 : 2)] = 200
          mask[y * w + x] = x < boundary ? 1 : 2
        }
      }
      try writePNGFile(root, "train/images/" + name, pixels: pixels, width: w, height: h)
      try writeMaskPNG(root, "train/masks/" + name, values: mask, width: w, height: h)
    }
    try writePNGFile(root, "val/images/v.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "val/masks/v.png", values: [0], width: 1, height: 1)
    var options = segmentationOptions(classes: 3)
    options.cropMinArea = 0.2
    let train = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: 16, imageWidth: 16, seed: 11, options: options)
    var flips = 0
    var bothClasses = 0
    for epoch in 0..<16 {
      for index in 0..<train.count {
        let (pixels, mask) = try loadPair(train, index, epoch: epoch)
        let bytes = toBytes(pixels)
        for p in 0..<mask.count {
          let (red, blue) = (bytes[3 * p], bytes[3 * p + 2])
          XCTAssertTrue(
            mask[p] == 1 ? red >= blue : mask[p] == 2 && blue >= red,
            "epoch \(epoch) index \(index) pixel \(p): class \(mask[p]), red \(red), blue \(blue)")
        }
        if Set(mask).count == 2 { bothClasses += 1 }
        if train.region(width: w, height: h, epoch: epoch, index: index).flip { flips += 1 }
      }
    }
    // The checks saw flipped and unflipped crops, and crops across the boundary.
    XCTAssertGreaterThan(flips, 4)
    XCTAssertLessThan(flips, 28)
    XCTAssertGreaterThan(bothClasses, 4)
  }

  func testTrainingLoadsAreAPureFunctionOfSeedEpochAndIndex() throws {
    let root = try makeTemporaryDirectory(self, "seg-determinism")
    let (w, h) = (30, 20)
    let mask = (0..<w * h).map { UInt8(($0 % w) / 3 + 10 * (($0 / w) / 4)) }  // 10×5 blocks
    for name in ["a.png", "b.png"] {
      try writePNGFile(
        root, "images/" + name, pixels: patternPixels(width: w, height: h, seed: 4), width: w,
        height: h)
      try writeMaskPNG(root, "masks/" + name, values: mask, width: w, height: h)
    }
    var options = segmentationOptions(classes: 50)
    options.valFraction = 0.01
    func make() throws -> SegmentationFolder {
      try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 21, options: options)
    }
    let (first, second) = (try make(), try make())
    XCTAssertEqual(first.count, 2)
    var differentEpochs = 0
    for epoch in 0..<6 {
      let (pixels, maskOut) = try loadPair(first, 1, epoch: epoch)
      let (again, maskAgain) = try loadPair(second, 1, epoch: epoch)
      XCTAssertEqual(pixels.map(\.bitPattern), again.map(\.bitPattern), "epoch \(epoch)")
      XCTAssertEqual(maskOut, maskAgain, "epoch \(epoch)")
      // The mask is the nearest source pixel of each output pixel's sample point.
      let (box, flip) = first.region(width: w, height: h, epoch: epoch, index: 1)
      var reference = [Int32](repeating: 0, count: 64)
      for i in 0..<8 {
        for j in 0..<8 {
          let column = flip ? 7 - j : j
          let x = Int((box.x + (Double(column) + 0.5) * box.width / 8).rounded(.down))
          let y = Int((box.y + (Double(i) + 0.5) * box.height / 8).rounded(.down))
          reference[i * 8 + j] = Int32(mask[y * w + x])
        }
      }
      XCTAssertEqual(maskOut, reference, "epoch \(epoch), box \(box), flip \(flip)")
      let (next, _) = try loadPair(first, 1, epoch: epoch + 1)
      if next != pixels { differentEpochs += 1 }
      // The other image is another sample: its crops are its own.
      let (other, _) = try loadPair(first, 0, epoch: epoch)
      XCTAssertNotEqual(other, pixels, "epoch \(epoch): samples 0 and 1 share a crop")
    }
    XCTAssertEqual(differentEpochs, 6)
  }

  func testImageAndMaskSizeMismatchNamesBothFiles() throws {
    let root = try makeTemporaryDirectory(self, "seg-mismatch")
    try writePNGFile(
      root, "images/a.png", pixels: patternPixels(width: 8, height: 6, seed: 0), width: 8,
      height: 6)
    try writeMaskPNG(
      root, "masks/a.png", values: [UInt8](repeating: 1, count: 40), width: 8, height: 5)
    var options = segmentationOptions()
    options.valFraction = 0.01
    let data = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    assertDataError([
      "failed to load sample 0", "image \(root.path)/images/a.png is 8x6",
      "its mask \(root.path)/masks/a.png is 8x5",
    ]) { try loadPair(data, 0) }

    // A mask that does not decode names the mask file and why.
    try writePNGFile(
      root, "masks/a.png", pixels: patternPixels(width: 8, height: 6, seed: 0), width: 8, height: 6)
    assertDataError(["\(root.path)/masks/a.png", "not RGB"]) { try loadPair(data, 0) }
  }

  /// A mask whose header declares another size than its image is refused before it is inflated:
  /// here a 32768×32768 1-bit header over data that could not even be inflated (a decompression
  /// bomb would look the same from the header, and would have allocated 4 GiB of labels).
  func testMaskSizeIsCheckedBeforeInflating() throws {
    let bomb = pngFile(
      header: pngHeader(width: 32768, height: 32768, bitDepth: 1, colourType: 0),
      imageData: [0x78, 0x9C, 0xFF, 0xFF])
    let size = try bomb.withUnsafeBytes { try labelPNGSize($0) }
    XCTAssertEqual(size.width, 32768)
    XCTAssertEqual(size.height, 32768)
    XCTAssertThrowsError(try decodeMask(bomb), "its image data is not a zlib stream")

    let root = try makeTemporaryDirectory(self, "seg-bomb")
    try writePNGFile(root, "images/a.png", pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4, height: 4)
    try writeFile(root, "masks/a.png", bomb)
    var options = segmentationOptions()
    options.valFraction = 0.01
    let data = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    assertDataError(["image \(root.path)/images/a.png is 4x4", "its mask \(root.path)/masks/a.png is 32768x32768"]) {
      try loadPair(data, 0)
    }
  }

  func testRandAugmentIsRefused() throws {
    let root = try makeTemporaryDirectory(self, "seg-randaugment")
    try writePNGFile(root, "images/a.png", pixels: [1, 2, 3], width: 1, height: 1)
    try writeMaskPNG(root, "masks/a.png", values: [0], width: 1, height: 1)
    var options = segmentationOptions()
    options.randAugment = RandAugment(layers: 2, magnitude: 10)
    assertDataError([
      "RandAugment is not supported for segmentation data",
      "would move the image but not the mask",
    ]) {
      try SegmentationFolder(
        root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    }
  }

  func testBatchFillCarriesMasksAndChecksClasses() throws {
    let root = try makeTemporaryDirectory(self, "seg-batch")
    let files = [
      ("train", "a", [0, 1, 255, 3]), ("train", "b", [2, 2, 1, 0]), ("val", "c", [0, 9, 0, 0]),
    ] as [(String, String, [UInt8])]
    for (n, (tree, name, mask)) in files.enumerated() {
      try writePNGFile(
        root, "\(tree)/images/\(name).png", pixels: patternPixels(width: 2, height: 2, seed: n),
        width: 2, height: 2)
      try writeMaskPNG(root, "\(tree)/masks/\(name).png", values: mask, width: 2, height: 2)
    }
    var options = segmentationOptions(classes: 4)
    options.augment = false
    let train = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: 2, imageWidth: 2, seed: 0, options: options)
    var batch = Batch()
    try batch.fill(segmentation: train, indices: [1, 0], epoch: 0)
    XCTAssertEqual(batch.masks, [2, 2, 1, 0, 0, 1, -1, 3])
    XCTAssertEqual(
      batch.pixels,
      normalized(
        patternPixels(width: 2, height: 2, seed: 1) + patternPixels(width: 2, height: 2, seed: 0)))
    // The dataset passes class 9 through unchecked; the batch names the sample.
    let val = try SegmentationFolder(
      root: root.path, split: .validation, imageHeight: 2, imageWidth: 2, seed: 0, options: options)
    XCTAssertEqual(try loadPair(val, 0).mask, [0, 9, 0, 0])
    assertDataError(["failed to load sample 0", "class 9, outside 0..<4"]) {
      try batch.fill(segmentation: val, indices: [0], epoch: 0)
    }
  }
}
