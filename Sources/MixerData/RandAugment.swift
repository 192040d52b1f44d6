// RandAugment (Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced
// search space", 2020) on 8-bit RGB images `[H, W, 3]`, overwritten in place, as big_vision runs it
// (`randaug(N, M)`: `distort_image_with_randaugment` of big_vision/pp/archive/autoaugment.py, a fork
// of tensorflow/tpu's EfficientNet autoaugment.py).
//
// N layers; each picks one of big_vision's 16 operations uniformly and always applies it at
// magnitude M (M = 10 is the paper's maximum, the Mixer recipe uses 15; level = M / 10):
//   autocontrast, equalize, invert; rotate ±30°·level; posterize to ⌊4·level⌋ bits (TensorFlow
//   clamps the shift to 0–7, so 0 bits keeps 1); solarize at threshold ⌊256·level⌋ taken modulo 256
//   (TensorFlow converts it to uint8: at M = 15 the threshold is 128, at M = 10 every pixel is
//   inverted); color, contrast, brightness, sharpness blend with factor 0.1 + 1.8·level; shear x/y
//   ±0.3·level; translate x/y ±100·level px; cutout, a grey square of half-side ⌊40·level⌋ px
//   centred at a uniform pixel; solarize-add +⌊110·level⌋ below 128.
// Geometric ops sample the nearest pixel (coordinates in Float, rounded half away from zero) and
// fill with grey 128; blends compute in Float and truncate to bytes, grey levels are TensorFlow's
// `rgb_to_grayscale` (truncated), the contrast op blends with the mean grey level truncated to a
// byte (big_vision's current code; tensorflow/tpu and older big_vision divide the pixel count by 256
// instead). Tests/MixerDataTests/AugmentReferenceTests checks every op against TensorFlow's output.
//
// One difference: translate and cutout are in pixels of a 224 px image (100 and 40 at M = 10),
// scaled by min(W, H) / 224 for other sizes (big_vision uses them as they are at any size).

import Foundation
import MixerNumerics

/// RandAugment(N, M) on 8-bit RGB images.
public struct RandAugment: Equatable, Sendable, Codable {
  /// Operations per image (N).
  public var layers: Int
  /// Strength of every operation (M, on the 0–10 scale; may exceed 10).
  public var magnitude: Double

  public init(layers: Int, magnitude: Double) {
    precondition(layers >= 0 && magnitude >= 0, "RandAugment needs N ≥ 0 and M ≥ 0")
    self.layers = layers
    self.magnitude = magnitude
  }

  /// Parses `N,M` (e.g. `2,15`).
  public init(parsing text: String) throws {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    guard parts.count == 2, let layers = Int(parts[0]), let magnitude = Double(parts[1]),
      layers >= 0, magnitude >= 0
    else {
      throw DataError.invalidConfiguration(
        "RandAugment '\(text)' is not N,M with N ≥ 0 layers and magnitude M ≥ 0 (the paper's recipe: 2,15)"
      )
    }
    self.init(layers: layers, magnitude: magnitude)
  }

  /// The operations, in big_vision's order (the order `rng.below(16)` picks them).
  public enum Operation: Int, CaseIterable, Sendable {
    case autoContrast, equalize, invert, rotate, posterize, solarize, color, contrast
    case brightness, sharpness, shearX, shearY, translateX, translateY, cutout, solarizeAdd
  }

  /// big_vision's translate and cutout constants (pixels at M = 10) for a 224 px image.
  public static let translatePixels = 100.0
  public static let cutoutPixels = 40.0

  /// Applies N random operations to `image` (`[height, width, 3]`), drawing from `rng`: per layer
  /// the operation, the sign of a geometric one, and for cutout its centre (row, then column).
  /// `scratch` holds at least `width·height·3` bytes.
  public func apply(
    image: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
    scratch: UnsafeMutablePointer<UInt8>,
    rng: inout CounterRNG
  ) {
    let scale = Double(min(width, height)) / 224
    for _ in 0..<layers {
      let (operation, negate, centre) = RandAugment.drawLayer(width: width, height: height, rng: &rng)
      RandAugment.apply(
        operation, magnitude: magnitude, negate: negate, image: image, width: width,
        height: height, scratch: scratch, translatePixels: RandAugment.translatePixels * scale,
        cutoutPixels: RandAugment.cutoutPixels * scale, cutoutCentre: centre)
    }
  }

  /// One layer's random choices: the operation (uniform over the 16), whether a geometric one is
  /// mirrored (probability 1/2), and for cutout its centre (row, column), uniform over the pixels.
  public static func drawLayer(width: Int, height: Int, rng: inout CounterRNG) -> (
    operation: Operation, negate: Bool, cutoutCentre: (Int, Int)
  ) {
    let operation = Operation(rawValue: rng.below(Operation.allCases.count))!
    let negate = rng.next() & 1 == 1
    let centre = operation == .cutout ? (rng.below(height), rng.below(width)) : (0, 0)
    return (operation, negate, centre)
  }

  /// Applies one operation at magnitude `magnitude` (geometric ones mirrored when `negate`), with
  /// translations of `translatePixels`·M/10 px and cutout squares of half-side
  /// ⌊cutoutPixels·M/10⌋ px centred at `cutoutCentre` (row, column).
  public static func apply(
    _ operation: Operation, magnitude: Double, negate: Bool, image: UnsafeMutablePointer<UInt8>,
    width: Int, height: Int, scratch: UnsafeMutablePointer<UInt8>,
    translatePixels: Double = RandAugment.translatePixels,
    cutoutPixels: Double = RandAugment.cutoutPixels, cutoutCentre: (Int, Int) = (0, 0)
  ) {
    let level = magnitude / 10
    let sign = negate ? -1.0 : 1.0
    let factor = 0.1 + 1.8 * level
    let n = width * height
    switch operation {
    case .autoContrast:
      autoContrast(image, count: n)
    case .equalize:
      equalize(image, count: n)
    case .invert:
      for i in 0..<3 * n { image[i] = 255 - image[i] }
    case .rotate:
      // big_vision's angle in Float radians, tfa.image.rotate's transform about the centre
      let angle = Float(sign * 30 * level) * Float(Double.pi / 180)
      let (c, s) = (cos(angle), sin(angle))
      let (w1, h1) = (Float(width - 1), Float(height - 1))
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (c, -s, (w1 - (c * w1 - s * h1)) / 2, s, c, (h1 - (s * w1 + c * h1)) / 2))
    case .shearX:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, Float(sign * 0.3 * level), 0, 0, 1, 0))
    case .shearY:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, 0, Float(sign * 0.3 * level), 1, 0))
    case .translateX:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, Float(sign * translatePixels * level), 0, 1, 0))
    case .translateY:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, 0, 0, 1, Float(sign * translatePixels * level)))
    case .cutout:
      let half = Int(level * cutoutPixels)
      let (cy, cx) = cutoutCentre
      for y in max(0, cy - half)..<min(height, cy + half) {
        for x in max(0, cx - half)..<min(width, cx + half) {
          (image + 3 * (y * width + x)).update(repeating: 128, count: 3)
        }
      }
    case .solarize:
      let threshold = UInt8(truncatingIfNeeded: Int(256 * level))
      for i in 0..<3 * n where image[i] >= threshold { image[i] = 255 - image[i] }
    case .solarizeAdd:
      let addition = Int(110 * level)
      for i in 0..<3 * n where image[i] < 128 { image[i] = UInt8(min(255, Int(image[i]) + addition)) }
    case .posterize:
      let shift = UInt8(min(7, max(0, 8 - Int(4 * level))))
      for i in 0..<3 * n { image[i] = (image[i] >> shift) << shift }
    case .color:
      for p in 0..<n {
        let gray = grayLevel(image + 3 * p)
        for c in 0..<3 { image[3 * p + c] = blend(gray, image[3 * p + c], factor) }
      }
    case .contrast:
      var sum = 0
      for p in 0..<n { sum += Int(grayLevel(image + 3 * p)) }
      let mean = UInt8(min(Float(sum) / Float(n), 255))
      for i in 0..<3 * n { image[i] = blend(mean, image[i], factor) }
    case .brightness:
      for i in 0..<3 * n { image[i] = blend(0, image[i], factor) }
    case .sharpness:
      sharpness(image, width: width, height: height, factor: factor, scratch: scratch)
    }
  }
}

/// TensorFlow's `rgb_to_grayscale` of a uint8 pixel: the channels scaled by 1/255, weighted
/// 0.2989, 0.587, 0.114 and summed in Float, times 255.5, truncated.
@inline(__always)
private func grayLevel(_ p: UnsafePointer<UInt8>) -> UInt8 {
  let unit = Float(1.0 / 255.0)
  let r: Float = (Float(p[0]) * unit) * 0.2989
  let g: Float = (Float(p[1]) * unit) * 0.587
  let b: Float = (Float(p[2]) * unit) * 0.114
  let luma: Float = (r + g + b) * 255.5
  return UInt8(luma.clamped(to: 0...255))
}

/// big_vision's `blend(degenerate, image, factor)`: `degenerate + factor·(image − degenerate)` in
/// Float, truncated to a byte (clipped to 0–255 first when extrapolating); factor 0 and 1 return
/// `degenerate` and `value` as they are.
@inline(__always)
private func blend(_ degenerate: UInt8, _ value: UInt8, _ factor: Double) -> UInt8 {
  if factor == 0 { return degenerate }
  if factor == 1 { return value }
  let base = Float(degenerate)
  let mixed: Float = base + Float(factor) * (Float(value) - base)
  return UInt8(mixed.clamped(to: 0...255))
}

/// Stretches each channel to the full 0–255 range (no change for a constant channel), in Float as
/// big_vision: x·(255 / (hi − lo)) − lo·(255 / (hi − lo)), clipped, truncated.
private func autoContrast(_ image: UnsafeMutablePointer<UInt8>, count n: Int) {
  for c in 0..<3 {
    var low: UInt8 = 255
    var high: UInt8 = 0
    for p in 0..<n {
      low = min(low, image[3 * p + c])
      high = max(high, image[3 * p + c])
    }
    guard high > low else { continue }
    let scale: Float = 255 / (Float(high) - Float(low))
    let offset: Float = -Float(low) * scale
    for p in 0..<n {
      let value: Float = Float(image[3 * p + c]) * scale + offset
      image[3 * p + c] = UInt8(value.clamped(to: 0...255))
    }
  }
}

/// Histogram equalisation per channel, PIL's (and TensorFlow's) lookup table.
private func equalize(_ image: UnsafeMutablePointer<UInt8>, count n: Int) {
  for c in 0..<3 {
    var histogram = [Int](repeating: 0, count: 256)
    for p in 0..<n { histogram[Int(image[3 * p + c])] += 1 }
    let lastNonZero = histogram.last(where: { $0 > 0 }) ?? 0
    let step = (n - lastNonZero) / 255
    guard step > 0 else { continue }
    var table = [UInt8](repeating: 0, count: 256)
    var cumulative = step / 2
    for value in 0..<256 {
      table[value] = UInt8(min(255, cumulative / step))
      cumulative += histogram[value]
    }
    for p in 0..<n { image[3 * p + c] = table[Int(image[3 * p + c])] }
  }
}

/// Output pixel (x, y) takes input pixel round(a·x + b·y + c, d·x + e·y + f), computed in Float as
/// TensorFlow's `ImageProjectiveTransformV3` (nearest, constant fill), or grey 128 outside.
private func affine(
  _ image: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
  scratch: UnsafeMutablePointer<UInt8>,
  matrix m: (Float, Float, Float, Float, Float, Float)
) {
  scratch.update(from: image, count: width * height * 3)
  for y in 0..<height {
    for x in 0..<width {
      let (fx, fy) = (Float(x), Float(y))
      let sourceX: Float = m.0 * fx + m.1 * fy + m.2
      let sourceY: Float = m.3 * fx + m.4 * fy + m.5
      let target = image + 3 * (y * width + x)
      let (sx, sy) = (sourceX.rounded(), sourceY.rounded())
      if sx >= 0 && sx < Float(width) && sy >= 0 && sy < Float(height) {
        let source = scratch + 3 * (Int(sy) * width + Int(sx))
        target[0] = source[0]
        target[1] = source[1]
        target[2] = source[2]
      } else {
        target[0] = 128
        target[1] = 128
        target[2] = 128
      }
    }
  }
}

/// Blends with a smoothed copy (kernel [[1,1,1],[1,5,1],[1,1,1]]/13 in Float, summed row by row
/// as TensorFlow's depthwise convolution, truncated to bytes; border pixels unchanged).
private func sharpness(
  _ image: UnsafeMutablePointer<UInt8>, width: Int, height: Int, factor: Double,
  scratch: UnsafeMutablePointer<UInt8>
) {
  guard width >= 3 && height >= 3 else { return }
  scratch.update(from: image, count: width * height * 3)
  let side = Float(1) / Float(13)
  let centre = Float(5) / Float(13)
  for y in 1..<height - 1 {
    for x in 1..<width - 1 {
      for c in 0..<3 {
        var sum: Float = 0
        for dy in -1...1 {
          for dx in -1...1 {
            let value = Float(scratch[3 * ((y + dy) * width + x + dx) + c])
            let term: Float = value * (dy == 0 && dx == 0 ? centre : side)
            sum = sum + term
          }
        }
        let smooth = UInt8(sum.clamped(to: 0...255))
        image[3 * (y * width + x) + c] = blend(smooth, scratch[3 * (y * width + x) + c], factor)
      }
    }
  }
}

extension Comparable {
  @inline(__always)
  func clamped(to range: ClosedRange<Self>) -> Self {
    min(max(self, range.lowerBound), range.upperBound)
  }
}
