// Our augmentation and evaluation preprocessing against big_vision's, as TensorFlow computes them:
// the fixtures in Tests/Fixtures/augment were written by tools/make_augment_reference.py (TensorFlow
// 2.20, big_vision's own RandAugment code), so these tests need no TensorFlow. docs/data.md
// ("Compared with big_vision") lists each op with its result here.
//
// Statistical checks compare 10,000 of our draws with 10,000 of TensorFlow's by the two-sample
// Kolmogorov–Smirnov distance, bounded by 0.03 (the critical value at α = 0.001 is
// 1.95·√(2/10,000) = 0.028), or with the exact distribution by the one-sample one, bounded by its
// critical value 1.95/√10,000 = 0.0195.

import Foundation
import MixerNumerics
import MixerTestSupport
import XCTest

@testable import MixerData

final class AugmentReferenceTests: XCTestCase {
  let folder = fixturesDirectory.appendingPathComponent("augment")

  /// reference.json.
  func reference() throws -> [String: Any] {
    let data = try Data(contentsOf: folder.appendingPathComponent("reference.json"))
    return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  }

  func section(_ name: String) throws -> [String: Any] {
    try XCTUnwrap(try reference()[name] as? [String: Any], "reference.json has no \(name)")
  }

  func png(_ name: String) throws -> RGBImage {
    let bytes = try readFileBytes(folder.appendingPathComponent(name).path)
    return try bytes.withUnsafeBytes { try decodeImage($0).image }
  }

  // MARK: - Inception crop

  /// The Kolmogorov–Smirnov distance between our draws `values` and TensorFlow's, given as how many
  /// of its `draws` are at most each of `edges`: the largest gap between the two empirical CDFs at
  /// those points (crop sizes are whole pixels, so both distributions are discrete; comparing CDFs
  /// at fixed points is exact for both).
  func ksDistance(_ values: [Double], edges: [Double], counts: [Int], draws: Int) -> Double {
    let sorted = values.sorted()
    var distance = 0.0
    var below = 0
    for (edge, count) in zip(edges, counts) {
      while below < sorted.count && sorted[below] <= edge { below += 1 }
      distance = max(
        distance, abs(Double(below) / Double(sorted.count) - Double(count) / Double(draws)))
    }
    return distance
  }

  /// The area fraction and aspect ratio of 10,000 training crops (big_vision's defaults) of a
  /// `width × height` image, sample `index` of epoch 0.
  func ourCrops(width: Int, height: Int, count: Int, preprocessing: ImagePreprocessing) -> (
    areas: [Double], aspects: [Double], whole: Int
  ) {
    var areas: [Double] = []
    var aspects: [Double] = []
    var whole = 0
    var outside: [CropBox] = []
    for index in 0..<count {
      let (box, _) = preprocessing.crop(
        sourceWidth: width, sourceHeight: height, epoch: 0, index: index)
      // TensorFlow draws the offset in 0..<(W − w): a crop narrower than the image never touches
      // its right edge (likewise the bottom)
      let (right, bottom) = (box.x + box.width, box.y + box.height)
      if box.x < 0 || box.y < 0 || right > Double(width) || bottom > Double(height)
        || (box.width < Double(width) && right == Double(width))
        || (box.height < Double(height) && bottom == Double(height))
      {
        outside.append(box)
      }
      areas.append(box.width * box.height / Double(width * height))
      aspects.append(box.width / box.height)
      if box.width == Double(width) && box.height == Double(height) { whole += 1 }
    }
    XCTAssertEqual(outside, [], "\(width)x\(height): crops outside the image or touching its far edge")
    return (areas, aspects, whole)
  }

  func testInceptionCropDistributionMatchesTensorFlow() throws {
    let crop = try section("crop")
    XCTAssertEqual(crop["area_range"] as? [Double], [0.05, 1])
    XCTAssertEqual(crop["aspect_ratio_range"] as? [Double], [0.75, 1.33])
    let options = DataOptions()
    XCTAssertEqual(options.cropMinArea, 0.05)
    XCTAssertEqual(options.cropMaxArea, 1)
    XCTAssertEqual(options.cropMinRatio, 0.75, "big_vision's ratio_min")
    XCTAssertEqual(options.cropMaxRatio, 1.33, "big_vision's ratio_max (not 4/3)")
    let draws = try XCTUnwrap(crop["draws"] as? Int)
    let areaEdges = try XCTUnwrap(crop["area_edges"] as? [Double])
    let aspectEdges = try XCTUnwrap(crop["aspect_edges"] as? [Double])
    for size in try XCTUnwrap(crop["sizes"] as? [[String: Any]]) {
      let width = try XCTUnwrap(size["width"] as? Int)
      let height = try XCTUnwrap(size["height"] as? Int)
      let preprocessing = options.preprocessing(
        kind: .folder, split: .train, height: 224, width: 224, seed: 28)
      let ours = ourCrops(width: width, height: height, count: draws, preprocessing: preprocessing)
      let areaDistance = ksDistance(
        ours.areas, edges: areaEdges,
        counts: try XCTUnwrap(size["area_counts"] as? [Int]), draws: draws)
      let aspectDistance = ksDistance(
        ours.aspects, edges: aspectEdges,
        counts: try XCTUnwrap(size["aspect_counts"] as? [Int]), draws: draws)
      XCTAssertEqual(size["far_edge_touches"] as? Int, 0, "TF's narrower crops never touch the far edge")
      let tfWhole = try XCTUnwrap(size["whole_image_fraction"] as? Double)
      let ourWhole = Double(ours.whole) / Double(draws)
      let mean = { (values: [Double]) in values.reduce(0, +) / Double(values.count) }
      print(
        String(
          format:
            "crop %dx%d: KS area %.4f, aspect %.4f; mean area %.4f (TF %.4f), mean aspect %.4f (TF %.4f), whole image %.4f (TF %.4f)",
          width, height, areaDistance, aspectDistance, mean(ours.areas),
          try XCTUnwrap(size["area_mean"] as? Double), mean(ours.aspects),
          try XCTUnwrap(size["aspect_mean"] as? Double), ourWhole, tfWhole))
      XCTAssertLessThanOrEqual(areaDistance, 0.03, "\(width)x\(height): crop areas differ from TF's")
      XCTAssertLessThanOrEqual(
        aspectDistance, 0.03, "\(width)x\(height): crop aspect ratios differ from TF's")
      XCTAssertEqual(ourWhole, tfWhole, accuracy: 0.003, "\(width)x\(height): whole-image fallbacks")
    }
  }

  func testBilinearCropResizeMatchesTensorFlow() throws {
    let resize = try section("resize")
    let source = try png(try XCTUnwrap(resize["source"] as? String))
    for item in try XCTUnwrap(resize["cases"] as? [[String: Any]]) {
      let box = try XCTUnwrap(item["box"] as? [Int])  // y, x, height, width
      let size = try XCTUnwrap(item["size"] as? [Int])  // height, width
      let file = try XCTUnwrap(item["file"] as? String)
      let expected = try Data(contentsOf: folder.appendingPathComponent(file)).withUnsafeBytes {
        Array($0.bindMemory(to: Float.self))
      }
      let (height, width) = (size[0], size[1])
      XCTAssertEqual(expected.count, height * width * 3)
      var ours = [Float](repeating: 0, count: height * width * 3)
      var mirrored = ours
      let crop = CropBox(
        x: Double(box[1]), y: Double(box[0]), width: Double(box[3]), height: Double(box[2]))
      source.pixels.withUnsafeBufferPointer { pixels in
        resampleBilinear(
          &ours, source: pixels.baseAddress!, width: source.width, height: source.height, box: crop,
          flip: false, outputWidth: width, outputHeight: height)
        resampleBilinear(
          &mirrored, source: pixels.baseAddress!, width: source.width, height: source.height,
          box: crop, flip: true, outputWidth: width, outputHeight: height)
      }
      // tf.image.resize(bilinear, antialias=False) in Float: equal up to rounding
      assertClose(ours, expected, relative: 0, absolute: 1e-3, "resize of \(box)")
      // flip_lr after the resize is the same as our flip during it
      for y in 0..<height {
        for x in 0..<width {
          for c in 0..<3 {
            XCTAssertEqual(
              mirrored[(y * width + x) * 3 + c], ours[(y * width + width - 1 - x) * 3 + c])
          }
        }
      }
    }
  }

  // MARK: - RandAugment

  /// Our name of each of big_vision's ops.
  static let bigVisionNames: [RandAugment.Operation: String] = [
    .autoContrast: "AutoContrast", .equalize: "Equalize", .invert: "Invert", .rotate: "Rotate",
    .posterize: "Posterize", .solarize: "Solarize", .color: "Color", .contrast: "Contrast",
    .brightness: "Brightness", .sharpness: "Sharpness", .shearX: "ShearX", .shearY: "ShearY",
    .translateX: "TranslateX", .translateY: "TranslateY", .cutout: "Cutout",
    .solarizeAdd: "SolarizeAdd",
  ]

  func testRandAugmentOpsMatchTensorFlow() throws {
    let randaug = try section("randaugment")
    let ops = try XCTUnwrap(randaug["ops"] as? [String])
    XCTAssertEqual(
      RandAugment.Operation.allCases.map { Self.bigVisionNames[$0]! }, ops,
      "our ops in big_vision's order")
    XCTAssertEqual(randaug["translate_const"] as? Double, RandAugment.translatePixels)
    XCTAssertEqual(randaug["cutout_const"] as? Double, RandAugment.cutoutPixels)
    let input = try png(try XCTUnwrap(randaug["input"] as? String))
    let outputs = try png(try XCTUnwrap(randaug["outputs"] as? String))
    let (width, height) = (input.width, input.height)
    var worst: [String: Int] = [:]
    for item in try XCTUnwrap(randaug["cases"] as? [[String: Any]]) {
      let operation = try XCTUnwrap(RandAugment.Operation(rawValue: try XCTUnwrap(item["op"] as? Int)))
      let magnitude = try XCTUnwrap(item["magnitude"] as? Double)
      let sign = try XCTUnwrap(item["sign"] as? Int)
      let row = try XCTUnwrap(item["row"] as? Int)
      let centre = (item["cutout_centre"] as? [Int]) ?? [0, 0]
      var image = input.pixels
      var scratch = image
      image.withUnsafeMutableBufferPointer { pixels in
        scratch.withUnsafeMutableBufferPointer { scratch in
          RandAugment.apply(
            operation, magnitude: magnitude, negate: sign < 0, image: pixels.baseAddress!,
            width: width, height: height, scratch: scratch.baseAddress!,
            cutoutCentre: (centre[0], centre[1]))
        }
      }
      let expected = Array(outputs.pixels[row * width * 3..<(row + height) * width * 3])
      var differing = 0
      var largest = 0
      for k in 0..<image.count where image[k] != expected[k] {
        differing += 1
        largest = max(largest, abs(Int(image[k]) - Int(expected[k])))
      }
      let name = "\(ops[operation.rawValue]) M=\(Int(magnitude))\(sign < 0 ? " negated" : "")"
      worst[name] = differing
      XCTAssertEqual(
        differing, 0,
        "\(name): \(differing) of \(image.count) bytes differ from big_vision's (largest by \(largest))")
    }
    print("RandAugment ops compared with big_vision's TF output: \(worst.count) cases, bytes differing: \(worst.values.reduce(0, +))")
  }

  func testRandAugmentOpSelectionIsUniformAsBigVision() {
    // big_vision: tf.random_uniform([], maxval=16) picks the op, every op is applied, and geometric
    // ones are negated when floor(u + 0.5) is 0 (probability 1/2).
    var counts = [Int](repeating: 0, count: RandAugment.Operation.allCases.count)
    var negated = 0
    var centres: [Int] = [0, 0]
    let draws = 10_000
    var rng = CounterRNG(seed: 28, 4)
    for _ in 0..<draws {
      let (operation, negate, centre) = RandAugment.drawLayer(width: 48, height: 40, rng: &rng)
      counts[operation.rawValue] += 1
      if negate { negated += 1 }
      if operation == .cutout {
        XCTAssertTrue((0..<40).contains(centre.0) && (0..<48).contains(centre.1))
        centres[0] += centre.0
        centres[1] += centre.1
      }
    }
    let expected = Double(draws) / 16
    let chiSquare = counts.map { pow(Double($0) - expected, 2) / expected }.reduce(0, +)
    print(String(format: "RandAugment op choice: χ² = %.1f over 15 degrees of freedom; negated %.4f", chiSquare, Double(negated) / Double(draws)))
    XCTAssertLessThan(chiSquare, 37.7, "χ²(15) at α = 0.001")
    XCTAssertEqual(Double(negated) / Double(draws), 0.5, accuracy: 0.02)
    let cutouts = Double(counts[RandAugment.Operation.cutout.rawValue])
    XCTAssertEqual(Double(centres[0]) / cutouts, 19.5, accuracy: 1.5, "mean cutout row")
    XCTAssertEqual(Double(centres[1]) / cutouts, 23.5, accuracy: 1.5, "mean cutout column")
  }

  // MARK: - Mixup

  /// P(max(B, 1 − B) ≤ y) for B ~ Beta(α, α), y in [1/2, 1], for α with a closed-form CDF.
  func mixupWeightCDF(alpha: Double, _ y: Double) -> Double {
    let cdf: (Double) -> Double
    switch alpha {
    case 0.5: cdf = { 2 / Double.pi * asin($0.squareRoot()) }  // arcsine
    case 1: cdf = { $0 }
    case 2: cdf = { 3 * $0 * $0 - 2 * $0 * $0 * $0 }
    default: fatalError("no closed form for α = \(alpha)")
    }
    return 2 * cdf(y) - 1  // symmetric: P(B ≤ y) − P(B < 1 − y)
  }

  func testMixupMatchesBigVisionGetMixup() throws {
    // big_vision's get_mixup: a ~ Beta(p, p) once per batch, a = max(a, 1 − a), every image and label
    // mixed with jnp.roll(x, shift=1, axis=0), i.e. position g with position g − 1 (mod B).
    let mixup = try section("mixup")
    let roll = try XCTUnwrap(mixup["roll_index"] as? [Int])
    for g in 0..<roll.count {
      XCTAssertEqual(Mixup.partner(of: g, globalBatch: roll.count), roll[g], "position \(g)")
    }
    let draws = 10_000
    for alpha in [0.5, 1, 2] {
      let weights = Mixup(alpha: alpha, seed: 28)
      let values = (0..<draws).map { Double(weights.weight(step: $0)) }.sorted()
      XCTAssertTrue(values.allSatisfy { $0 >= 0.5 && $0 <= 1 })
      var distance = 0.0
      for (k, value) in values.enumerated() {
        let cdf = mixupWeightCDF(alpha: alpha, value)
        distance = max(distance, abs(Double(k + 1) / Double(draws) - cdf), abs(Double(k) / Double(draws) - cdf))
      }
      let mean = values.reduce(0, +) / Double(draws)
      let median = values[draws / 2]
      print(String(format: "mixup α = %g: KS %.4f, mean %.4f, median %.4f", alpha, distance, mean, median))
      XCTAssertLessThan(distance, 0.0195, "α = \(alpha): one-sample KS at α = 0.001")
      if alpha == 0.5 {
        XCTAssertEqual(mean, 0.5 + 1 / Double.pi, accuracy: 0.006, "E max(B, 1 − B) = 1/2 + 1/π")
        XCTAssertEqual(median, pow(sin(3 * Double.pi / 8), 2), accuracy: 0.01, "G(y) = 1/2 at sin²(3π/8)")
      }
    }
  }

  // MARK: - Evaluation

  func testEvalCropOfJPEGsMatchesBigVision() throws {
    let eval = try section("eval")
    XCTAssertEqual(eval["resize_small"] as? Int, 256)
    XCTAssertEqual(eval["central_crop"] as? Int, 224)
    let root = try makeTemporaryDirectory(self, "evaljpeg")
    for item in try XCTUnwrap(eval["cases"] as? [[String: Any]]) {
      let jpeg = try XCTUnwrap(item["jpeg"] as? String)
      let bytes = try readFileBytes(folder.appendingPathComponent(jpeg).path)
      for split in ["train", "val"] { _ = try writeFile(root, "\(split)/a/\(jpeg)", bytes) }
      // the loader's evaluation path, as `eval` and validation during training use it
      let dataset = try ImageFolder(root: root.path, split: .validation, imageHeight: 224, imageWidth: 224, seed: 0)
      let index = try XCTUnwrap((0..<dataset.count).first { dataset.path(of: $0).hasSuffix(jpeg) })
      let ours = toBytes(try loadSample(dataset, index).1)
      let (width, height) = try bytes.withUnsafeBytes { try checkImageHeader($0) }
      let resized = dataset.preprocessing.evalResize(sourceWidth: width, sourceHeight: height)
      XCTAssertEqual([resized.height, resized.width], item["resized"] as? [Int], "\(jpeg): resize_small size")
      XCTAssertEqual([resized.y, resized.x], item["offset"] as? [Int], "\(jpeg): central_crop offset")
      for (key, limits) in [
        // the same JPEG decoder (libjpeg-turbo's accurate IDCT): equal after truncation
        ("precise_decode", (largest: 1.0, mean: 0.55, differing: 0.001)),
        // TensorFlow's default (fast) IDCT: a few levels apart
        ("default_decode", (largest: 6.0, mean: 1.5, differing: 0.75)),
      ] {
        let expected = try png(try XCTUnwrap(item[key] as? String)).pixels.map(Float.init)
        XCTAssertEqual(expected.count, ours.count)
        var largest: Float = 0
        var total: Float = 0
        var differing = 0
        for k in 0..<ours.count {
          // big_vision truncates the resized pixels to uint8; we keep them in Float
          let difference = abs(ours[k] - expected[k])
          largest = max(largest, difference)
          total += difference
          if ours[k].rounded(.down) != expected[k] { differing += 1 }
        }
        let mean = total / Float(ours.count)
        let fraction = Double(differing) / Double(ours.count)
        print(
          String(
            format: "eval %@ vs TF %@: largest %.3f, mean %.3f levels; %.4f of bytes differ after truncation",
            jpeg, key, largest, mean, fraction))
        XCTAssertLessThanOrEqual(Double(largest), limits.largest + 1e-3, "\(jpeg) vs \(key)")
        XCTAssertLessThanOrEqual(Double(mean), limits.mean, "\(jpeg) vs \(key)")
        XCTAssertLessThanOrEqual(fraction, limits.differing, "\(jpeg) vs \(key)")
      }
      try FileManager.default.removeItem(at: root.appendingPathComponent("train"))
      try FileManager.default.removeItem(at: root.appendingPathComponent("val"))
    }
  }
}
