// Tests of preprocessing: inception-crop statistics, crop geometry recovered from a gradient image,
// flips, the eval centre crop, identity at the source size, normalisation, and RandAugment ops.

import MixerNumerics
import MixerTestSupport
import XCTest

@testable import MixerData

final class PreprocessTests: XCTestCase {
  func testInceptionCropsStayInRange() {
    // The distribution itself is compared with TensorFlow's in AugmentReferenceTests.
    var areas: [Double] = []
    for n in 0..<2000 {
      var rng = CounterRNG(seed: 5, UInt64(n))
      let (w, h) = n % 2 == 0 ? (500, 375) : (64, 200)
      let box = inceptionCrop(
        sourceWidth: w, sourceHeight: h, minArea: 0.05, aspect: 0.75...1.33, rng: &rng)
      XCTAssertGreaterThanOrEqual(box.x, 0)
      XCTAssertGreaterThanOrEqual(box.y, 0)
      XCTAssertLessThanOrEqual(box.x + box.width, Double(w))
      XCTAssertLessThanOrEqual(box.y + box.height, Double(h))
      XCTAssertEqual(box.x, box.x.rounded())
      XCTAssertEqual(box.width, box.width.rounded())
      let area = box.width * box.height / Double(w * h)
      let aspect = box.width / box.height
      // Whole pixels: the area is kept in range, the width is round(h·r).
      XCTAssertGreaterThanOrEqual(area, 0.05)
      XCTAssertLessThanOrEqual(area, 1.0)
      XCTAssertGreaterThanOrEqual(aspect, 0.75 - 0.5 / box.height)
      XCTAssertLessThanOrEqual(aspect, 1.33 + 0.5 / box.height)
      areas.append(area)
    }
    XCTAssertLessThan(areas.min()!, 0.1)
    XCTAssertGreaterThan(areas.max()!, 0.9)
    // A 1×100 image has no crop of an allowed aspect and area: the whole image, as TensorFlow.
    var rng = CounterRNG(seed: 5)
    XCTAssertEqual(
      inceptionCrop(sourceWidth: 1, sourceHeight: 100, minArea: 0.05, aspect: 0.75...1.33, rng: &rng),
      CropBox(x: 0, y: 0, width: 1, height: 100))
  }

  /// Loads a 200×150 gradient PNG (R = x, G = y) through an image folder in train mode and recovers
  /// the crop box from the output's pixel values.
  func testCropGeometryRecoveredFromGradient() throws {
    let root = try makeTemporaryDirectory(self, "gradient")
    for split in ["train", "val"] {
      try writePNGFile(
        root, "\(split)/a/gradient.png", pixels: gradientPixels(width: 200, height: 150),
        width: 200, height: 150)
    }
    let (H, W) = (24, 32)
    let dataset = try ImageFolder(
      root: root.path, split: .train, imageHeight: H, imageWidth: W, seed: 9)
    var flips = 0
    var boxes: Set<String> = []
    for epoch in 0..<12 {
      let (_, pixels) = try loadSample(dataset, 0, epoch: epoch)
      let values = toBytes(pixels)
      let (box, flip) = dataset.preprocessing.crop(
        sourceWidth: 200, sourceHeight: 150, epoch: epoch, index: 0)
      boxes.insert(box.description)
      if flip { flips += 1 }
      // R along the middle row: linear in the column, slope box.width / W (negative when flipped).
      let row = H / 2
      let red = { (j: Int) in Double(values[(row * W + j) * 3]) }
      let green = { (i: Int) in Double(values[(i * W + W / 2) * 3 + 1]) }
      let (j1, j2) = (W / 4, 3 * W / 4)
      let (i1, i2) = (H / 4, 3 * H / 4)
      let slopeX = (red(j2) - red(j1)) / Double(j2 - j1)
      let slopeY = (green(i2) - green(i1)) / Double(i2 - i1)
      XCTAssertEqual(slopeX < 0, flip, "flip shows as a decreasing gradient")
      let width = abs(slopeX) * Double(W)
      let height = slopeY * Double(H)
      let left =
        flip
        ? red(W - 1 - j1) + 0.5 - (Double(j1) + 0.5) * abs(slopeX)
        : red(j1) + 0.5 - (Double(j1) + 0.5) * slopeX
      let top = green(i1) + 0.5 - (Double(i1) + 0.5) * slopeY
      XCTAssertEqual(width, box.width, accuracy: 0.01, "epoch \(epoch)")
      XCTAssertEqual(height, box.height, accuracy: 0.01, "epoch \(epoch)")
      XCTAssertEqual(left, box.x, accuracy: 0.01, "epoch \(epoch)")
      XCTAssertEqual(top, box.y, accuracy: 0.01, "epoch \(epoch)")
      let area = width * height / (200 * 150)
      XCTAssertTrue(area > 0.045 && area <= 1.0001, "area \(area)")
      XCTAssertTrue(width / height > 0.7 && width / height < 1.4, "aspect \(width / height)")
      XCTAssertEqual(values[(row * W + 3) * 3 + 2], 77, accuracy: 1e-3, "blue stays constant")
    }
    XCTAssertGreaterThan(boxes.count, 8, "crops differ between epochs")
    XCTAssertTrue(flips > 0 && flips < 12, "\(flips) flips in 12 epochs")
  }

  func testEvalCentreCropAndIdentity() throws {
    // Folder default, big_vision's resize_small(256)|central_crop(224): a 500×375 image is resized
    // to 341×256 (round(500·256/375) = 341) and cropped at ((341 − 224) / 2, (256 − 224) / 2) =
    // (58, 16), i.e. the source box at 58·500/341, 16·375/256 of 224·500/341 × 224·375/256.
    var eval = ImagePreprocessing(mode: .eval, outputHeight: 224, outputWidth: 224, seed: 0)
    let resized = eval.evalResize(sourceWidth: 500, sourceHeight: 375)
    XCTAssertEqual(resized.width, 341)
    XCTAssertEqual(resized.height, 256)
    XCTAssertEqual(resized.x, 58)
    XCTAssertEqual(resized.y, 16)
    let box = eval.centreCrop(sourceWidth: 500, sourceHeight: 375)
    XCTAssertEqual(box.width, 224 * 500 / 341, accuracy: 1e-9)
    XCTAssertEqual(box.height, 224 * 375 / 256, accuracy: 1e-9)
    XCTAssertEqual(box.x, 58 * 500 / 341, accuracy: 1e-9)
    XCTAssertEqual(box.y, 16 * 375 / 256, accuracy: 1e-9)
    // 32 px output: resize to round(32·256/224) = 37, crop 32 → 32/37 of the short side.
    eval.outputHeight = 32
    eval.outputWidth = 32
    XCTAssertEqual(
      eval.centreCrop(sourceWidth: 64, sourceHeight: 64).width, 64 * 32 / 37, accuracy: 1e-9)
    // At the source size the image is copied exactly, whatever the fraction.
    XCTAssertEqual(
      eval.centreCrop(sourceWidth: 32, sourceHeight: 32), CropBox(x: 0, y: 0, width: 32, height: 32)
    )
    let image = RGBImage(
      width: 32, height: 32, pixels: patternPixels(width: 32, height: 32, seed: 3))
    var out = [Float](repeating: 0, count: 32 * 32 * 3)
    out.withUnsafeMutableBufferPointer {
      eval.process(image: image, epoch: 0, index: 0, into: $0.baseAddress!)
    }
    XCTAssertEqual(out, normalized(image.pixels))
    // Non-square output: the largest box of the output's aspect (2:1) in a 100×100 image.
    let wide = ImagePreprocessing(mode: .eval, outputHeight: 16, outputWidth: 32, seed: 0)
    var wideCopy = wide
    wideCopy.evalCropFraction = 1
    XCTAssertEqual(
      wideCopy.centreCrop(sourceWidth: 100, sourceHeight: 100),
      CropBox(x: 0, y: 25, width: 100, height: 50))
  }

  func testNormalisation() throws {
    let image = RGBImage(width: 1, height: 1, pixels: [0, 128, 255])
    var p = ImagePreprocessing(mode: .eval, outputHeight: 1, outputWidth: 1, seed: 0)
    p.evalCropFraction = 1
    var out = [Float](repeating: 0, count: 3)
    out.withUnsafeMutableBufferPointer {
      p.process(image: image, epoch: 0, index: 0, into: $0.baseAddress!)
    }
    XCTAssertEqual(out, [-1, (128 - 127.5) / 127.5, 1])
    p.normalization = try Normalization(parsing: "imagenet")
    out.withUnsafeMutableBufferPointer {
      p.process(image: image, epoch: 0, index: 0, into: $0.baseAddress!)
    }
    let expected: [Double] = [
      (0 - 0.485) / 0.229, (128.0 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225,
    ]
    for c in 0..<3 { XCTAssertEqual(Double(out[c]), expected[c], accuracy: 1e-5) }
    XCTAssertEqual(
      try Normalization(parsing: "0.5,0.5,0.5/0.25,0.5,1"),
      Normalization(mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1]))
    XCTAssertThrowsError(try Normalization(parsing: "0.5,0.5/1,1,1"))
    XCTAssertThrowsError(try Normalization(parsing: "0,0,0/1,0,1"))
  }

  /// Properties of single ops; every op is compared with big_vision's TensorFlow output in
  /// AugmentReferenceTests.
  func testRandAugmentOperations() throws {
    let (w, h) = (8, 6)
    let base = patternPixels(width: w, height: h, seed: 1)
    func run(
      _ op: RandAugment.Operation, _ magnitude: Double, negate: Bool = false,
      _ input: [UInt8]? = nil, size: (Int, Int)? = nil, centre: (Int, Int) = (0, 0)
    ) -> [UInt8] {
      var image = input ?? base
      let (width, height) = size ?? (w, h)
      var scratch = [UInt8](repeating: 0, count: image.count)
      image.withUnsafeMutableBufferPointer { i in
        scratch.withUnsafeMutableBufferPointer { s in
          RandAugment.apply(
            op, magnitude: magnitude, negate: negate, image: i.baseAddress!, width: width,
            height: height, scratch: s.baseAddress!, translatePixels: 0.45 * Double(width),
            cutoutPixels: 10, cutoutCentre: centre)
        }
      }
      return image
    }
    XCTAssertEqual(run(.rotate, 0), base, "a 0° rotation is the identity")
    XCTAssertEqual(run(.brightness, 5), base, "factor 0.1 + 1.8·0.5 = 1 changes nothing")
    XCTAssertEqual(run(.invert, 15), base.map { 255 - $0 })
    XCTAssertEqual(run(.solarize, 5), base.map { $0 >= 128 ? 255 - $0 : $0 })
    XCTAssertEqual(run(.solarize, 15), base.map { $0 >= 128 ? 255 - $0 : $0 }, "⌊384⌋ mod 256")
    XCTAssertEqual(run(.solarize, 10), base.map { 255 - $0 }, "threshold 256 mod 256 = 0")
    XCTAssertEqual(run(.posterize, 5), base.map { $0 & 0xC0 }, "⌊4·0.5⌋ = 2 bits")
    XCTAssertEqual(run(.posterize, 1), base.map { $0 & 0x80 }, "0 bits: TensorFlow clamps the shift to 7")
    XCTAssertEqual(run(.solarizeAdd, 10), base.map { $0 < 128 ? UInt8(min(255, Int($0) + 110)) : $0 })
    // Translate by 0.45·8·(10/10) = 3.6 px: output column x reads round(x + 3.6), grey beyond.
    let shifted = run(.translateX, 10)
    for y in 0..<h {
      for x in 0..<w {
        let source = Int((Float(x) + 3.6).rounded())
        let expected =
          source < w ? Array(base[(y * w + source) * 3..<(y * w + source + 1) * 3]) : [128, 128, 128]
        XCTAssertEqual(Array(shifted[(y * w + x) * 3..<(y * w + x + 1) * 3]), expected)
      }
    }
    // Cutout: half-side ⌊10·0.5⌋ = 5 around (row 2, column 3): rows 0..<6 (clipped), columns 0..<8.
    XCTAssertEqual(run(.cutout, 5, centre: (2, 3)), [UInt8](repeating: 128, count: w * h * 3))
    // half-side ⌊10·0.1⌋ = 1 at (5, 7): rows 4..<6, columns 6..<8, the bottom-right 2×2 pixels
    let corner = run(.cutout, 1, centre: (5, 7))
    for y in 0..<h {
      for x in 0..<w {
        let pixel = Array(corner[(y * w + x) * 3..<(y * w + x + 1) * 3])
        let inside = y >= 4 && x >= 6
        XCTAssertEqual(pixel, inside ? [128, 128, 128] : Array(base[(y * w + x) * 3..<(y * w + x + 1) * 3]))
      }
    }
    // Brightness 0.1 + 1.8·0 = 0.1 darkens to a tenth, truncated.
    XCTAssertEqual(run(.brightness, 0), base.map { UInt8(Float($0) * Float(0.1)) })
    // Autocontrast stretches a 100–150 channel to 0–255.
    let dull = (0..<w * h * 3).map { UInt8(100 + ($0 / 3) % 51) }
    let stretched = run(.autoContrast, 0, dull)
    XCTAssertEqual(stretched.min(), 0)
    XCTAssertEqual(stretched.max(), 255)
    // Equalize spreads a two-level image (half 10, half 20) to 0 and 255, as PIL does; with fewer
    // than 255 pixels in the lower level the step is 0 and the image stays as it is.
    let twoLevels = (0..<32 * 32 * 3).map { UInt8($0 < 32 * 32 * 3 / 2 ? 10 : 20) }
    XCTAssertEqual(Set(run(.equalize, 0, twoLevels, size: (32, 32))), [0, 255])
    let small = (0..<w * h * 3).map { UInt8($0 < w * h * 3 / 2 ? 10 : 20) }
    XCTAssertEqual(run(.equalize, 0, small), small)
    // Color at factor 0.1 moves every pixel toward gray.
    XCTAssertLessThan(spread(run(.color, 0)), spread(base))
    var rng = CounterRNG(seed: 1)
    let noise = (0..<w * h * 3).map { _ in UInt8(rng.below(256)) }
    XCTAssertNotEqual(run(.sharpness, 15, noise), noise)
    XCTAssertEqual(
      run(.sharpness, 15, noise)[0..<3 * w], noise[0..<3 * w], "the border row is kept")
    XCTAssertNotEqual(run(.shearX, 10, negate: true), base)
    XCTAssertNotEqual(run(.shearY, 10), base)
    XCTAssertNotEqual(run(.contrast, 0), base)
    XCTAssertEqual(try RandAugment(parsing: "2,15"), RandAugment(layers: 2, magnitude: 15))
    XCTAssertThrowsError(try RandAugment(parsing: "2"))
  }

  /// Mean over pixels of max − min channel.
  private func spread(_ pixels: [UInt8]) -> Double {
    var total = 0.0
    for p in stride(from: 0, to: pixels.count, by: 3) {
      let channels = pixels[p..<p + 3]
      total += Double(channels.max()! - channels.min()!)
    }
    return total
  }

  func testAugmentationIsAPureFunctionOfSeedEpochIndex() throws {
    let root = try makeTemporaryDirectory(self, "pure")
    for n in 0..<3 {
      for split in ["train", "val"] {
        try writePNGFile(
          root, "\(split)/c\(n)/x.png", pixels: patternPixels(width: 40, height: 30, seed: n),
          width: 40, height: 30)
      }
    }
    var options = DataOptions()
    options.randAugment = RandAugment(layers: 2, magnitude: 9)
    let a = try ImageFolder(
      root: root.path, split: .train, imageHeight: 16, imageWidth: 16, seed: 4, options: options)
    let b = try ImageFolder(
      root: root.path, split: .train, imageHeight: 16, imageWidth: 16, seed: 4, options: options)
    let c = try ImageFolder(
      root: root.path, split: .train, imageHeight: 16, imageWidth: 16, seed: 5, options: options)
    for index in 0..<a.count {
      XCTAssertEqual(try loadSample(a, index, epoch: 3).1, try loadSample(b, index, epoch: 3).1)
      XCTAssertNotEqual(try loadSample(a, index, epoch: 3).1, try loadSample(a, index, epoch: 4).1)
      XCTAssertNotEqual(try loadSample(a, index, epoch: 3).1, try loadSample(c, index, epoch: 3).1)
      XCTAssertEqual(
        try loadSample(a, index).1, try loadSample(a, index, epoch: 0).1, "plain load is epoch 0")
    }
    // Without augmentation there is no randomness: every epoch and seed gives the same pixels.
    var plain = options
    plain.augment = false
    let v1 = try ImageFolder(
      root: root.path, split: .train, imageHeight: 16, imageWidth: 16, seed: 4, options: plain)
    XCTAssertEqual(try loadSample(v1, 1, epoch: 0).1, try loadSample(v1, 1, epoch: 7).1)
  }
}
