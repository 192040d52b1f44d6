// Preprocessing: a decoded RGB image of any size becomes one model input of a fixed size, as
// big_vision's Mixer recipe does it (docs/data.md, "Compared with big_vision", lists each op, what
// differs and the test that shows it).
//
// Train: an inception crop drawn as TensorFlow's `sample_distorted_bounding_box` draws it for
// big_vision's `decode_jpeg_and_inception_crop` (area 5–100% of the image, aspect ratio uniform in
// [0.75, 1.33], both settable as --crop-scale and --crop-ratio; see `inceptionCrop`), resized to the
// output size, flipped left-right with probability 1/2, then optionally RandAugment. Evaluation:
// big_vision's `resize_small(256)|central_crop(224)`, an area resize of the whole image to a shorter
// side of round(S / f) (S the shorter output side, f = 224/256) and a centred S×S crop of it at
// whole-pixel offsets (`evalResize`), computed only where the crop keeps it. CIFAR and MNIST use
// f = 1 (the whole image, resized), and an image that already has the output size is copied unchanged.
//
// Training crops resample bilinearly with half-pixel centres (TensorFlow's `resize` without
// antialiasing, big_vision's choice), reading only pixels inside the crop. The resized pixels stay
// Float (big_vision truncates them to uint8; RandAugment, which works on bytes, truncates as it
// does). Pixels are normalised per channel as `(x − 255·mean) / (255·std)`; the default
// mean = std = 0.5 is exactly the official `(x − 127.5) / 127.5`.
//
// All randomness is counter-based: the crop and flip of sample `index` in `epoch` come from
// `CounterRNG(seed:, cropTag, epoch, index)` and its RandAugment ops from
// `CounterRNG(seed:, randAugmentTag, epoch, index)`, so any rank, thread or resumed run produces
// the same pixels for the same (seed, epoch, index), and the crop is known before decoding.

import Foundation
import MixerNumerics

/// A rectangle in source pixel coordinates (may be fractional).
public struct CropBox: Equatable, Sendable, CustomStringConvertible {
  public var x: Double
  public var y: Double
  public var width: Double
  public var height: Double

  public init(x: Double, y: Double, width: Double, height: Double) {
    self.x = x
    self.y = y
    self.width = width
    self.height = height
  }

  public var description: String { "(\(x), \(y)) \(width)x\(height)" }

  /// The same region in an image scaled by (sx, sy).
  func scaled(_ sx: Double, _ sy: Double) -> CropBox {
    CropBox(x: x * sx, y: y * sy, width: width * sx, height: height * sy)
  }
}

/// Per-channel normalisation from 0–255 to model inputs: `(x − 255·mean) / (255·std)`.
public struct Normalization: Equatable, Sendable, Codable {
  /// Channel means on the 0–1 scale.
  public var mean: [Double]
  /// Channel standard deviations on the 0–1 scale.
  public var std: [Double]

  public init(mean: [Double], std: [Double]) {
    precondition(mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 })
    self.mean = mean
    self.std = std
  }

  /// The official `(x − 127.5) / 127.5`, to [-1, 1].
  public static let minusOneToOne = Normalization(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
  /// torchvision's ImageNet statistics.
  public static let imagenet = Normalization(
    mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

  /// Parses `minus-one-one` (default), `imagenet`, or `R,G,B/R,G,B` (means / stds on 0–1).
  public init(parsing text: String) throws {
    switch text.lowercased() {
    case "minus-one-one", "-1,1", "official", "":
      self = .minusOneToOne
    case "imagenet":
      self = .imagenet
    default:
      let parts = text.split(separator: "/").map {
        $0.split(separator: ",").compactMap { Double($0) }
      }
      guard parts.count == 2, parts[0].count == 3, parts[1].count == 3,
        parts[1].allSatisfy({ $0 > 0 })
      else {
        throw DataError.invalidConfiguration(
          "normalisation '\(text)' is not minus-one-one, imagenet or MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B "
            + "(0–1 scale, e.g. 0.485,0.456,0.406/0.229,0.224,0.225)")
      }
      self.init(mean: parts[0], std: parts[1])
    }
  }

  /// Offsets (255·mean) and divisors (255·std) per channel, as Float.
  var channelOffsets: SIMD3<Float> {
    SIMD3(Float(255 * mean[0]), Float(255 * mean[1]), Float(255 * mean[2]))
  }
  var channelDivisors: SIMD3<Float> {
    SIMD3(Float(255 * std[0]), Float(255 * std[1]), Float(255 * std[2]))
  }
}

/// How one split turns decoded images into model inputs.
public struct ImagePreprocessing: Equatable, Sendable {
  /// Train: random crop, flip, RandAugment; eval: deterministic centre crop.
  public enum Mode: String, Sendable, Codable { case train, eval }

  public var mode: Mode
  /// Output size (the model's).
  public var outputHeight: Int
  public var outputWidth: Int
  /// Seed of all augmentation randomness.
  public var seed: UInt64
  /// Smallest crop area as a fraction of the image (train).
  public var cropMinArea: Double = 0.05
  /// Largest crop area as a fraction of the image (train).
  public var cropMaxArea: Double = 1
  /// Aspect ratios (width / height) of train crops, sampled uniformly (big_vision's 0.75–1.33).
  public var cropAspect: ClosedRange<Double> = 0.75...1.33
  /// Flip left-right with probability 1/2 (train).
  public var flip = true
  /// Eval: the fraction of the shorter side kept by the centre crop (224/256 officially; 1 keeps
  /// the whole image). Below 1, evaluation resizes by area as big_vision's `resize_small`; at 1
  /// (CIFAR, MNIST, segmentation) it resamples bilinearly as training does.
  public var evalCropFraction: Double = 224.0 / 256.0
  /// RandAugment after crop and flip (train), nil for none.
  public var randAugment: RandAugment?
  public var normalization: Normalization = .minusOneToOne

  public init(mode: Mode, outputHeight: Int, outputWidth: Int, seed: UInt64) {
    precondition(outputHeight > 0 && outputWidth > 0)
    self.mode = mode
    self.outputHeight = outputHeight
    self.outputWidth = outputWidth
    self.seed = seed
  }

  static let cropTag: UInt64 = 0x4352_4F50  // "CROP"
  static let randAugmentTag: UInt64 = 0x5241_4E44  // "RAND"

  /// The crop of an image of `sourceWidth × sourceHeight` for sample `index` in `epoch`, and
  /// whether it is flipped: a pure function of (seed, epoch, index) and the source size.
  public func crop(sourceWidth: Int, sourceHeight: Int, epoch: Int, index: Int) -> (
    box: CropBox, flip: Bool
  ) {
    switch mode {
    case .eval:
      return (centreCrop(sourceWidth: sourceWidth, sourceHeight: sourceHeight), false)
    case .train:
      var rng = CounterRNG(seed: seed, ImagePreprocessing.cropTag, UInt64(epoch), UInt64(index))
      let box = inceptionCrop(
        sourceWidth: sourceWidth, sourceHeight: sourceHeight, minArea: cropMinArea,
        maxArea: cropMaxArea, aspect: cropAspect, rng: &rng)
      let flipped = flip && rng.next() & 1 == 1
      return (box, flipped)
    }
  }

  /// The eval resize of a `sourceWidth × sourceHeight` image, as big_vision's
  /// `resize_small(T)|central_crop(H, W)`: the image resized to `width × height` (its shorter side
  /// T = round(S / f), S the shorter output side, f = evalCropFraction; the factor T / shorter side
  /// and the rounded sizes computed in Float as TensorFlow does), of which the output keeps the
  /// window at (x, y) = ((width − W) / 2, (height − H) / 2), rounded down. A non-square output that
  /// would not fit grows the factor until it does (big_vision has none).
  public func evalResize(sourceWidth: Int, sourceHeight: Int) -> (
    width: Int, height: Int, x: Int, y: Int
  ) {
    let side = min(outputWidth, outputHeight)
    let shorter = evalCropFraction >= 1 ? side : Int((Double(side) / evalCropFraction).rounded())
    var factor = Float(shorter) / Float(min(sourceWidth, sourceHeight))
    factor = max(
      factor, Float(outputWidth) / Float(sourceWidth), Float(outputHeight) / Float(sourceHeight))
    let width = max(outputWidth, Int((Float(sourceWidth) * factor).rounded(.toNearestOrEven)))
    let height = max(outputHeight, Int((Float(sourceHeight) * factor).rounded(.toNearestOrEven)))
    return (width, height, (width - outputWidth) / 2, (height - outputHeight) / 2)
  }

  /// The eval crop in source pixels: the window `evalResize` keeps, mapped back to the image; the
  /// whole image when it already has the output's size (a folder of 32 px PNGs for a 32 px model is
  /// not resized; big_vision would resize it to T and crop).
  public func centreCrop(sourceWidth: Int, sourceHeight: Int) -> CropBox {
    if sourceWidth == outputWidth && sourceHeight == outputHeight {
      return CropBox(x: 0, y: 0, width: Double(sourceWidth), height: Double(sourceHeight))
    }
    let resized = evalResize(sourceWidth: sourceWidth, sourceHeight: sourceHeight)
    let sx = Double(sourceWidth) / Double(resized.width)
    let sy = Double(sourceHeight) / Double(resized.height)
    return CropBox(
      x: Double(resized.x) * sx, y: Double(resized.y) * sy, width: Double(outputWidth) * sx,
      height: Double(outputHeight) * sy)
  }

  /// How far a JPEG may be DCT-scaled down before decoding for this crop: the crop must keep at
  /// least the output's pixels along both axes. An area-resized evaluation decodes at full size, as
  /// big_vision does.
  func minimumDecodeScale(box: CropBox) -> Double {
    if resizesByArea { return 1 }
    return max(Double(outputWidth) / box.width, Double(outputHeight) / box.height, 0)
  }

  /// Whether this is an evaluation that resizes by area (big_vision's `resize_small`): eval mode with
  /// a centre crop of less than the whole image.
  var resizesByArea: Bool { mode == .eval && evalCropFraction < 1 }

  /// Writes sample `index` of `epoch`, decoded as `image`, into `pixels` `[H, W, 3]` (normalised).
  /// `box` is the crop in `image`'s coordinates (from `crop(...)`, scaled if the image was
  /// decoded at a reduced size).
  public func process(
    image: RGBImage, box: CropBox, flip: Bool, epoch: Int, index: Int,
    into pixels: UnsafeMutablePointer<Float>
  ) {
    let count = outputWidth * outputHeight * 3
    image.pixels.withUnsafeBufferPointer { source in
      if resizesByArea {
        resampleArea(
          pixels, source: source.baseAddress!, width: image.width, height: image.height, box: box,
          outputWidth: outputWidth, outputHeight: outputHeight)
      } else {
        resampleBilinear(
          pixels, source: source.baseAddress!, width: image.width, height: image.height, box: box,
          flip: flip, outputWidth: outputWidth, outputHeight: outputHeight)
      }
    }
    if mode == .train, let randAugment, randAugment.layers > 0 {
      withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * count) { scratch in
        let bytes = scratch.baseAddress!
        // truncated, as big_vision's cast of the resized crop to uint8
        for k in 0..<count { bytes[k] = UInt8(min(max(pixels[k], 0), 255)) }
        var rng = CounterRNG(
          seed: seed, ImagePreprocessing.randAugmentTag, UInt64(epoch), UInt64(index))
        randAugment.apply(
          image: bytes, width: outputWidth, height: outputHeight, scratch: bytes + count, rng: &rng)
        for k in 0..<count { pixels[k] = Float(bytes[k]) }
      }
    }
    normalize(pixels, count: count)
  }

  /// `(x − 255·mean[c]) / (255·std[c])` in place over `[count / 3, 3]` values.
  func normalize(_ pixels: UnsafeMutablePointer<Float>, count: Int) {
    let offsets = normalization.channelOffsets
    let divisors = normalization.channelDivisors
    if offsets.x == offsets.y && offsets.y == offsets.z && divisors.x == divisors.y
      && divisors.y == divisors.z
    {
      let (offset, divisor) = (offsets.x, divisors.x)
      for k in 0..<count { pixels[k] = (pixels[k] - offset) / divisor }
    } else {
      for k in stride(from: 0, to: count, by: 3) {
        pixels[k] = (pixels[k] - offsets.x) / divisors.x
        pixels[k + 1] = (pixels[k + 1] - offsets.y) / divisors.y
        pixels[k + 2] = (pixels[k + 2] - offsets.z) / divisors.z
      }
    }
  }

  /// What training with this preprocessing does to an image, for the start-up line: e.g.
  /// "random crop (area 5-100%, ratio 0.75-1.33), flip, RandAugment 2,15", or "none".
  public var augmentationSummary: String {
    guard mode == .train else { return "none" }
    func percent(_ x: Double) -> String { String(format: "%g", (x * 100 * 1000).rounded() / 1000) }
    func ratio(_ x: Double) -> String { String(format: "%.3g", x) }
    var parts = [
      "random crop (area \(percent(cropMinArea))-\(percent(cropMaxArea))%, ratio "
        + "\(ratio(cropAspect.lowerBound))-\(ratio(cropAspect.upperBound)))"
    ]
    if flip { parts.append("flip") }
    if let randAugment, randAugment.layers > 0 {
      parts.append("RandAugment \(randAugment.layers),\(randAugment.magnitude)")
    }
    return parts.joined(separator: ", ")
  }

  /// Crops, flips, augments and normalises a decoded image for sample `index` of `epoch`.
  public func process(
    image: RGBImage, epoch: Int, index: Int, into pixels: UnsafeMutablePointer<Float>
  ) {
    let (box, flip) = crop(
      sourceWidth: image.width, sourceHeight: image.height, epoch: epoch, index: index)
    process(image: image, box: box, flip: flip, epoch: epoch, index: index, into: pixels)
  }
}

/// The inception crop as TensorFlow's `sample_distorted_bounding_box` draws it for big_vision's
/// `decode_jpeg_and_inception_crop` (no object boxes, `min_object_covered` 0): up to 100 attempts,
/// each an aspect ratio r uniform in `aspect` and a height uniform over the whole pixel heights whose
/// crop of width round(h·r) can have an area in [minArea, maxArea]·(W·H); the first that fits is
/// placed at an offset uniform in 0..<(W − w) and 0..<(H − h) (as TensorFlow's, it never touches the
/// right or bottom edge unless it spans the image); after 100 misses, the whole image. Sizes are
/// computed in Float with round-half-even, as the op does, so the boxes follow its distribution (the
/// random numbers are ours: `CounterRNG`).
public func inceptionCrop(
  sourceWidth: Int, sourceHeight: Int, minArea: Double, maxArea: Double = 1,
  aspect: ClosedRange<Double>, rng: inout CounterRNG
) -> CropBox {
  let low = Float(aspect.lowerBound)
  let high = Float(aspect.upperBound)
  for _ in 0..<100 {
    let ratio = rng.uniform() * (high - low) + low
    if let box = randomCrop(
      width: sourceWidth, height: sourceHeight, minArea: Float(minArea), maxArea: Float(maxArea),
      ratio: ratio, rng: &rng)
    {
      return box
    }
  }
  return CropBox(x: 0, y: 0, width: Double(sourceWidth), height: Double(sourceHeight))
}

/// One attempt of `inceptionCrop` at aspect ratio `ratio`, or nil when no whole-pixel crop of that
/// ratio has an allowed area (TensorFlow's `GenerateRandomCrop`).
private func randomCrop(
  width: Int, height: Int, minArea: Float, maxArea: Float, ratio: Float, rng: inout CounterRNG
) -> CropBox? {
  func nearest(_ x: Float) -> Int { Int(x.rounded(.toNearestOrEven)) }  // lrintf
  let smallest = minArea * Float(width) * Float(height)
  let largest = maxArea * Float(width) * Float(height)
  var h = nearest((smallest / ratio).squareRoot())
  var maxH = nearest((largest / ratio).squareRoot())
  if nearest(Float(maxH) * ratio) > width {
    // the tallest crop whose rounded width still fits
    maxH = Int((Double(width) + 0.5 - Double(Float(1e-7))) / Double(ratio))
    if nearest(Float(maxH) * ratio) > width { maxH -= 1 }
  }
  maxH = min(maxH, height)
  h = min(h, maxH)
  if h < maxH { h += rng.below(maxH - h + 1) }
  var w = nearest(Float(h) * ratio)
  var area = Float(w * h)
  if area < smallest {
    h += 1
    w = nearest(Float(h) * ratio)
    area = Float(w * h)
  }
  if area > largest {
    h -= 1
    w = nearest(Float(h) * ratio)
    area = Float(w * h)
  }
  guard area >= smallest && area <= largest && w <= width && h <= height && w > 0 && h > 0 else {
    return nil
  }
  let y = h < height ? rng.below(height - h) : 0
  let x = w < width ? rng.below(width - w) : 0
  return CropBox(x: Double(x), y: Double(y), width: Double(w), height: Double(h))
}

/// Bilinear resampling of `box` of an RGB8 image into `output` `[outputHeight, outputWidth, 3]`
/// (values 0–255, overwritten), with half-pixel centres: output pixel (i, j) reads source point
/// `(box.x + (j + ½)·box.width / W − ½, box.y + (i + ½)·box.height / H − ½)`, clamped to the pixels
/// the box covers. `flip` mirrors the output left-right.
func resampleBilinear(
  _ output: UnsafeMutablePointer<Float>, source: UnsafePointer<UInt8>, width: Int, height: Int,
  box: CropBox, flip: Bool, outputWidth: Int, outputHeight: Int
) {
  let columns = taps(start: box.x, length: box.width, count: outputWidth, sourceSize: width)
  let rows = taps(start: box.y, length: box.height, count: outputHeight, sourceSize: height)
  // Per output column: byte offsets of the left and right source pixels and the right weight.
  var left = [Int](repeating: 0, count: outputWidth)
  var right = left
  var weight = [Float](repeating: 0, count: outputWidth)
  for j in 0..<outputWidth {
    let (x0, x1, fx) = columns[flip ? outputWidth - 1 - j : j]
    left[j] = 3 * x0
    right[j] = 3 * x1
    weight[j] = Float(fx)
  }
  left.withUnsafeBufferPointer { left in
    right.withUnsafeBufferPointer { right in
      weight.withUnsafeBufferPointer { weight in
        for i in 0..<outputHeight {
          let (y0, y1, fy) = rows[i]
          let top = source + y0 * width * 3
          let bottom = source + y1 * width * 3
          let wy = Float(fy)
          let row = output + i * outputWidth * 3
          for j in 0..<outputWidth {
            let (a, b, wx) = (left[j], right[j], weight[j])
            for c in 0..<3 {
              let t0 = Float(top[a + c])
              let t1 = Float(top[b + c])
              let b0 = Float(bottom[a + c])
              let b1 = Float(bottom[b + c])
              let upper = t0 + (t1 - t0) * wx
              let lower = b0 + (b1 - b0) * wx
              row[3 * j + c] = upper + (lower - upper) * wy
            }
          }
        }
      }
    }
  }
}

/// Source indices (low, high) and the weight of `high` for each of `count` output positions.
private func taps(start: Double, length: Double, count: Int, sourceSize: Int) -> [(
  Int, Int, Double
)] {
  let low = max(0, Int(start.rounded(.down)))
  let high = min(sourceSize - 1, max(low, Int((start + length).rounded(.up)) - 1))
  let step = length / Double(count)
  return (0..<count).map { j in
    let position = min(max(start + (Double(j) + 0.5) * step - 0.5, Double(low)), Double(high))
    let below = Int(position.rounded(.down))
    let above = min(below + 1, high)
    return (below, above, position - Double(below))
  }
}

/// Area resampling (TensorFlow's `resize(method: "area")`) of `box` of an RGB8 image into `output`
/// `[outputHeight, outputWidth, 3]` (values 0–255, overwritten): output pixel (i, j) is the mean of
/// the source over its cell of sx × sy source pixels (sx = box.width / W, sy = box.height / H), each
/// source pixel weighted by the length it covers along each axis, indices clamped to the image.
/// Computed in Float in the order of TensorFlow's `ResizeAreaOp` (cells at (index)·scale, the
/// index counted from the resized image's origin when `box` starts on a cell boundary, as the eval
/// crop does), so it equals big_vision's `resize_small` followed by `central_crop` to rounding.
func resampleArea(
  _ output: UnsafeMutablePointer<Float>, source: UnsafePointer<UInt8>, width: Int, height: Int,
  box: CropBox, outputWidth: Int, outputHeight: Int
) {
  let columns = areaCells(start: box.x, length: box.width, count: outputWidth)
  let rows = areaCells(start: box.y, length: box.height, count: outputHeight)
  let scale = Float(1.0 / Double(columns.step * rows.step))
  let bound = { (k: Int, size: Int) in min(max(k, 0), size - 1) }
  for i in 0..<outputHeight {
    let cellY = rows.cells[i]
    let row = output + i * outputWidth * 3
    for j in 0..<outputWidth {
      let cellX = columns.cells[j]
      var sum = SIMD3<Float>(repeating: 0)
      for y in cellY.start..<cellY.end {
        let line = source + bound(y, height) * width * 3
        let pixel = { (x: Int) -> SIMD3<Float> in
          let p = line + 3 * bound(x, width)
          return SIMD3(Float(p[0]), Float(p[1]), Float(p[2]))
        }
        var sumY = pixel(cellX.start) * cellX.startScale
        if cellX.start + 1 != cellX.end {
          for x in cellX.start + 1..<cellX.end - 1 { sumY += pixel(x) }
          sumY += pixel(cellX.end - 1) * cellX.endScale
        }
        sum += sumY * cellY.scale(of: y, step: rows.step)
      }
      sum *= scale
      row[3 * j] = sum.x
      row[3 * j + 1] = sum.y
      row[3 * j + 2] = sum.z
    }
  }
}

/// One output cell of an area resize: source pixels `start..<end`, the cell `[low, high)`.
private struct AreaCell {
  var low: Float
  var high: Float
  var start: Int
  var end: Int
  var startScale: Float
  var endScale: Float

  init(low: Float, high: Float, step: Float) {
    self.low = low
    self.high = high
    start = Int(low.rounded(.down))
    end = Int(high.rounded(.up))
    startScale = 0
    endScale = 0
    startScale = scale(of: start, step: step)
    endScale = scale(of: end - 1, step: step)
  }

  /// The length of source pixel `k` inside the cell, as TensorFlow computes it.
  func scale(of k: Int, step: Float) -> Float {
    if Float(k) < low { return Float(k + 1) > high ? step : Float(k + 1) - low }
    return Float(k + 1) > high ? high - Float(k) : 1
  }
}

/// The cells of `count` outputs of `length / count` source pixels each from `start`: cell j is
/// `[(o + j)·step, (o + j + 1)·step)` in Float, o = start / step.
private func areaCells(start: Double, length: Double, count: Int) -> (cells: [AreaCell], step: Float) {
  let exact = length / Double(count)
  let step = Float(exact)
  let origin = start / exact
  let cells = (0..<count).map { j in
    AreaCell(
      low: Float(origin + Double(j)) * step, high: Float(origin + Double(j + 1)) * step, step: step)
  }
  return (cells, step)
}
