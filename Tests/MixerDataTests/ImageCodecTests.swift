// Tests of JPEG/PNG decoding: PNGs exactly (RGB, gray, gray+alpha, RGBA), JPEGs (RGB, gray, CMYK)
// within tolerance, format detection from the bytes, DCT-scaled decoding, and clear errors for
// corrupt, truncated and unsupported files.

import XCTest

@testable import MixerData

final class ImageCodecTests: XCTestCase {
  func decode(_ bytes: [UInt8], minimumScale: ((Int, Int) -> Double)? = nil) throws -> RGBImage {
    try bytes.withUnsafeBytes { try decodeImage($0, minimumScale: minimumScale).image }
  }

  func testPNGDecodesExactlyForEveryChannelLayout() throws {
    let (w, h) = (13, 7)
    let rgb = patternPixels(width: w, height: h, seed: 1)
    XCTAssertEqual(
      try decode(try encodePNG(pixels: rgb, width: w, height: h, channels: 3)).pixels, rgb)

    let gray = patternPixels(width: w, height: h, seed: 2, channels: 1)
    XCTAssertEqual(
      try decode(try encodePNG(pixels: gray, width: w, height: h, channels: 1)).pixels,
      grayToRGB(gray))

    // Alpha is dropped, whatever its value (PIL's convert("RGB")).
    let rgba = patternPixels(width: w, height: h, seed: 3, channels: 4)
    XCTAssertEqual(
      try decode(try encodePNG(pixels: rgba, width: w, height: h, channels: 4)).pixels,
      dropAlpha(rgba))

    let grayAlpha = patternPixels(width: w, height: h, seed: 4, channels: 2)
    let decoded = try decode(try encodePNG(pixels: grayAlpha, width: w, height: h, channels: 2))
    XCTAssertEqual(decoded.width, w)
    XCTAssertEqual(decoded.height, h)
    XCTAssertEqual(decoded.pixels, grayToRGB(grayAlpha, channels: 2))
  }

  func testJPEGDecodesWithinTolerance() throws {
    // A smooth image survives quality-95 JPEG within a few levels.
    let (w, h) = (48, 32)
    var rgb = [UInt8](repeating: 0, count: w * h * 3)
    for y in 0..<h {
      for x in 0..<w {
        rgb[(y * w + x) * 3] = UInt8(40 + 3 * x)
        rgb[(y * w + x) * 3 + 1] = UInt8(200 - 4 * y)
        rgb[(y * w + x) * 3 + 2] = 90
      }
    }
    let image = try decode(try encodeJPEG(pixels: rgb, width: w, height: h, quality: 95))
    XCTAssertEqual(image.width, w)
    XCTAssertEqual(image.height, h)
    let worst = zip(image.pixels, rgb).map { abs(Int($0) - Int($1)) }.max()!
    XCTAssertLessThanOrEqual(worst, 8, "max difference \(worst) levels")

    let gray = (0..<w * h).map { UInt8(60 + ($0 % w) * 2) }
    let grayImage = try decode(
      try encodeJPEG(pixels: gray, width: w, height: h, channels: 1, quality: 95))
    for p in 0..<w * h {
      XCTAssertEqual(grayImage.pixels[3 * p], grayImage.pixels[3 * p + 1])
      XCTAssertEqual(grayImage.pixels[3 * p], grayImage.pixels[3 * p + 2])
      XCTAssertLessThanOrEqual(abs(Int(grayImage.pixels[3 * p]) - Int(gray[p])), 6)
    }
  }

  func testCMYKJPEGBecomesRGB() throws {
    // Adobe CMYK JPEGs store inverted ink values: R = C·K/255 (and so on).
    let (w, h) = (16, 8)
    var cmyk = [UInt8](repeating: 0, count: w * h * 4)
    for p in 0..<w * h {
      cmyk[4 * p] = 200
      cmyk[4 * p + 1] = UInt8(40 + p % 16 * 8)
      cmyk[4 * p + 2] = 90
      cmyk[4 * p + 3] = 180
    }
    let image = try decode(
      try encodeJPEG(pixels: cmyk, width: w, height: h, channels: 4, quality: 98))
    XCTAssertEqual(image.width, w)
    for p in 0..<w * h {
      for c in 0..<3 {
        let expected = Int(cmyk[4 * p + c]) * Int(cmyk[4 * p + 3]) / 255
        XCTAssertLessThanOrEqual(
          abs(Int(image.pixels[3 * p + c]) - expected), 4, "pixel \(p) channel \(c)")
      }
    }
  }

  func testFormatComesFromTheBytesAndScaledJPEGDecoding() throws {
    let png = try encodePNG(
      pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4, height: 4, channels: 3)
    let jpeg = try encodeJPEG(
      pixels: patternPixels(width: 64, height: 40, seed: 0), width: 64, height: 40)
    XCTAssertEqual(png.withUnsafeBytes { ImageFormat.detect($0) }, .png)
    XCTAssertEqual(jpeg.withUnsafeBytes { ImageFormat.detect($0) }, .jpeg)
    // Scaling: ask for at least 0.3 of the size → 1/2 (the smallest of 1/2, 1/4, 1/8 that is ≥ 0.3).
    let (image, fullWidth, fullHeight) = try jpeg.withUnsafeBytes {
      try decodeImage($0, minimumScale: { _, _ in 0.3 })
    }
    XCTAssertEqual(fullWidth, 64)
    XCTAssertEqual(fullHeight, 40)
    XCTAssertEqual(image.width, 32)
    XCTAssertEqual(image.height, 20)
    XCTAssertEqual(try decode(jpeg, minimumScale: { _, _ in 0.2 }).width, 16)
    XCTAssertEqual(try decode(jpeg, minimumScale: { _, _ in 1.5 }).width, 64, "never scales up")
  }

  func testBadFilesThrowClearErrors() throws {
    let jpeg = try encodeJPEG(
      pixels: patternPixels(width: 64, height: 64, seed: 1), width: 64, height: 64)
    let png = try encodePNG(
      pixels: patternPixels(width: 64, height: 64, seed: 1), width: 64, height: 64, channels: 3)
    let cases: [([UInt8], String)] = [
      ([], "empty"),
      (Array("GIF89a....".utf8), "not a JPEG or PNG"),
      (Array(jpeg.prefix(jpeg.count / 2)), "truncated JPEG"),
      (Array(jpeg.prefix(40)), "JPEG"),
      (Array(png.prefix(png.count - 30)), "PNG"),
      (Array(png.prefix(20)), "PNG"),
    ]
    for (bytes, fragment) in cases {
      XCTAssertThrowsError(try decode(bytes)) { error in
        XCTAssertTrue("\(error)".contains(fragment), "'\(error)' does not mention '\(fragment)'")
      }
    }
    var corrupt = jpeg
    for i in stride(from: 200, to: corrupt.count - 2, by: 3) { corrupt[i] = 0xFF }
    XCTAssertThrowsError(try decode(corrupt))
  }
}
