// Preprocessing: a decoded RGB image of any size becomes one model input of a fixed size.
//
// Train (the paper's recipe, as timm's RandomResizedCrop): an inception crop (area 5–100% of the
// image, aspect ratio log-uniform in [3/4, 4/3], both settable as timm's --scale and --ratio; 10 attempts, then the largest centred crop of an
// allowed aspect), resized to the output size, flipped left-right with probability 1/2, then
// optionally RandAugment. Evaluation: the "resize the shorter side to 256, centre-crop 224" of the
// official code, done as one centred crop of `S / round(S / f)` of the shorter side (f = 224/256,
// S the output side) resized to S. CIFAR and MNIST use f = 1 (the whole image, resized), and an
// image that already has the output size is copied unchanged.
//
// Resampling is bilinear with half-pixel centres (TensorFlow's `resize` without antialiasing, the
// official pipeline), reading only pixels inside the crop. Pixels are normalised per channel as
// `(x − 255·mean) / (255·std)`; the default mean = std = 0.5 is exactly the official
// `(x − 127.5) / 127.5`.
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
  /// Aspect ratios (width / height) of train crops, sampled log-uniformly.
  public var cropAspect: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)
  /// Flip left-right with probability 1/2 (train).
  public var flip = true
  /// Eval: the fraction of the shorter side kept by the centre crop (224/256 officially; 1 keeps
  /// the whole image).
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

  /// The eval crop: the largest centred box of the output's aspect ratio, shrunk by
  /// `S / round(S / f)` (S the shorter output side, f = evalCropFraction); the whole image when it
  /// already has the output's size (a folder of 32 px PNGs for a 32 px model is not cropped).
  public func centreCrop(sourceWidth: Int, sourceHeight: Int) -> CropBox {
    if sourceWidth == outputWidth && sourceHeight == outputHeight {
      return CropBox(x: 0, y: 0, width: Double(sourceWidth), height: Double(sourceHeight))
    }
    let side = Double(min(outputWidth, outputHeight))
    let fraction = evalCropFraction >= 1 ? 1 : side / (side / evalCropFraction).rounded()
    let aspect = Double(outputWidth) / Double(outputHeight)
    var width = min(Double(sourceWidth), Double(sourceHeight) * aspect)
    var height = width / aspect
    width *= fraction
    height *= fraction
    return CropBox(
      x: (Double(sourceWidth) - width) / 2, y: (Double(sourceHeight) - height) / 2,
      width: width, height: height)
  }

  /// How far a JPEG may be DCT-scaled down before decoding for this crop: the crop must keep at
  /// least the output's pixels along both axes.
  func minimumDecodeScale(box: CropBox) -> Double {
    max(Double(outputWidth) / box.width, Double(outputHeight) / box.height, 0)
  }

  /// Writes sample `index` of `epoch`, decoded as `image`, into `pixels` `[H, W, 3]` (normalised).
  /// `box` is the crop in `image`'s coordinates (from `crop(...)`, scaled if the image was
  /// decoded at a reduced size).
  public func process(
    image: RGBImage, box: CropBox, flip: Bool, epoch: Int, index: Int,
    into pixels: UnsafeMutablePointer<Float>
  ) {
    let count = outputWidth * outputHeight * 3
    image.pixels.withUnsafeBufferPointer { source in
      resampleBilinear(
        pixels, source: source.baseAddress!, width: image.width, height: image.height, box: box,
        flip: flip, outputWidth: outputWidth, outputHeight: outputHeight)
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

/// The inception crop (timm's RandomResizedCrop): up to 10 tries of an area uniform in
/// [minArea, maxArea]·(W·H) and an aspect ratio log-uniform in `aspect`, rounded to whole pixels and kept
/// when it fits, at a uniform position; otherwise the largest centred crop with an aspect in range.
public func inceptionCrop(
  sourceWidth: Int, sourceHeight: Int, minArea: Double, maxArea: Double = 1,
  aspect: ClosedRange<Double>, rng: inout CounterRNG
) -> CropBox {
  let area = Double(sourceWidth * sourceHeight)
  let logLow = log(aspect.lowerBound)
  let logHigh = log(aspect.upperBound)
  for _ in 0..<10 {
    let targetArea = area * (minArea + (maxArea - minArea) * rng.uniformDouble())
    let ratio = exp(logLow + (logHigh - logLow) * rng.uniformDouble())
    let width = Int((targetArea * ratio).squareRoot().rounded())
    let height = Int((targetArea / ratio).squareRoot().rounded())
    if width > 0 && width <= sourceWidth && height > 0 && height <= sourceHeight {
      let y = rng.below(sourceHeight - height + 1)
      let x = rng.below(sourceWidth - width + 1)
      return CropBox(x: Double(x), y: Double(y), width: Double(width), height: Double(height))
    }
  }
  let ratio = Double(sourceWidth) / Double(sourceHeight)
  var width = sourceWidth
  var height = sourceHeight
  if ratio < aspect.lowerBound {
    height = min(sourceHeight, Int((Double(width) / aspect.lowerBound).rounded()))
  } else if ratio > aspect.upperBound {
    width = min(sourceWidth, Int((Double(height) * aspect.upperBound).rounded()))
  }
  return CropBox(
    x: Double((sourceWidth - width) / 2), y: Double((sourceHeight - height) / 2),
    width: Double(width), height: Double(height))
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
