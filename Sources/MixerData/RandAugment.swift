// RandAugment (Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced
// search space", 2020) on 8-bit RGB images `[H, W, 3]`, overwritten in place.
//
// N layers; each picks one of 14 operations uniformly (torchvision's set: identity, autocontrast,
// equalize, rotate, solarize, color, posterize, contrast, brightness, sharpness, shear x/y,
// translate x/y) and always applies it at magnitude M. Magnitudes follow the TensorFlow code that
// big_vision uses (`autoaugment.py`, M = 10 is the paper's maximum, the Mixer recipe uses 15):
//   rotate 30°·M/10, shear 0.3·M/10, translate 0.45·side·M/10 (100 px at 224, timm's relative
//   form), each with a random sign; color/contrast/brightness/sharpness blend with factor
//   0.1 + 1.8·M/10; posterize keeps ⌊4·M/10⌋ bits; solarize inverts pixels ≥ ⌊256·M/10⌋.
// Geometric ops sample with nearest neighbour and fill with grey 128, as the TensorFlow code does.
// Deviations from it, all to PIL's behaviour: contrast blends with the mean gray level (TensorFlow
// uses pixel count / 256, a known bug), blends round instead of truncating, posterize keeps at least
// one bit (TensorFlow blanks the image below M = 2.5).

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

  /// The operations, in the order `rng.below(14)` picks them.
  public enum Operation: Int, CaseIterable, Sendable {
    case identity, autoContrast, equalize, rotate, solarize, color, posterize, contrast
    case brightness, sharpness, shearX, shearY, translateX, translateY
  }

  /// Applies N random operations to `image` (`[height, width, 3]`), drawing from `rng`.
  /// `scratch` holds at least `width·height·3` bytes.
  public func apply(
    image: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
    scratch: UnsafeMutablePointer<UInt8>,
    rng: inout CounterRNG
  ) {
    for _ in 0..<layers {
      let operation = Operation(rawValue: rng.below(Operation.allCases.count))!
      let negate = rng.next() & 1 == 1
      RandAugment.apply(
        operation, magnitude: magnitude, negate: negate, image: image, width: width,
        height: height, scratch: scratch)
    }
  }

  /// Applies one operation at magnitude `magnitude` (geometric ones mirrored when `negate`).
  public static func apply(
    _ operation: Operation, magnitude: Double, negate: Bool, image: UnsafeMutablePointer<UInt8>,
    width: Int, height: Int, scratch: UnsafeMutablePointer<UInt8>
  ) {
    let level = magnitude / 10
    let sign = negate ? -1.0 : 1.0
    let factor = Float(0.1 + 1.8 * level)
    let n = width * height
    switch operation {
    case .identity:
      break
    case .autoContrast:
      autoContrast(image, count: n)
    case .equalize:
      equalize(image, count: n)
    case .rotate:
      let angle = sign * 30 * level * Double.pi / 180
      let (c, s) = (cos(angle), sin(angle))
      let cx = Double(width - 1) / 2
      let cy = Double(height - 1) / 2
      // input = R(angle)·(output − centre) + centre
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy))
    case .shearX:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, sign * 0.3 * level, 0, 0, 1, 0))
    case .shearY:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, 0, sign * 0.3 * level, 1, 0))
    case .translateX:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, sign * 0.45 * level * Double(width), 0, 1, 0))
    case .translateY:
      affine(
        image, width: width, height: height, scratch: scratch,
        matrix: (1, 0, 0, 0, 1, sign * 0.45 * level * Double(height)))
    case .solarize:
      let threshold = Int(256 * level)
      for i in 0..<3 * n where Int(image[i]) >= threshold { image[i] = 255 - image[i] }
    case .posterize:
      let bits = min(8, max(1, Int(4 * level)))
      let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
      for i in 0..<3 * n { image[i] &= mask }
    case .color:
      for p in 0..<n {
        let gray = Float(grayLevel(image + 3 * p))
        for c in 0..<3 { image[3 * p + c] = blend(gray, Float(image[3 * p + c]), factor) }
      }
    case .contrast:
      var sum = 0
      for p in 0..<n { sum += Int(grayLevel(image + 3 * p)) }
      let mean = Float(sum) / Float(n)
      for i in 0..<3 * n { image[i] = blend(mean, Float(image[i]), factor) }
    case .brightness:
      for i in 0..<3 * n { image[i] = blend(0, Float(image[i]), factor) }
    case .sharpness:
      sharpness(image, width: width, height: height, factor: factor, scratch: scratch)
    }
  }
}

/// ITU-R 601 luma as PIL's `convert("L")` and `tf.image.rgb_to_grayscale`: 0.299 R + 0.587 G + 0.114 B.
@inline(__always)
private func grayLevel(_ p: UnsafePointer<UInt8>) -> UInt8 {
  let r: Float = 0.2989 * Float(p[0])
  let g: Float = 0.587 * Float(p[1])
  let b: Float = 0.114 * Float(p[2])
  let luma: Float = (r + g + b).rounded()
  return UInt8(luma.clamped(to: 0...255))
}

/// `degenerate + factor·(image − degenerate)`, rounded and clipped to 0–255.
@inline(__always)
private func blend(_ degenerate: Float, _ value: Float, _ factor: Float) -> UInt8 {
  UInt8((degenerate + factor * (value - degenerate)).rounded().clamped(to: 0...255))
}

/// Stretches each channel to the full 0–255 range (no change for a constant channel).
private func autoContrast(_ image: UnsafeMutablePointer<UInt8>, count n: Int) {
  for c in 0..<3 {
    var low: UInt8 = 255
    var high: UInt8 = 0
    for p in 0..<n {
      low = min(low, image[3 * p + c])
      high = max(high, image[3 * p + c])
    }
    guard high > low else { continue }
    let scale = 255 / Float(high - low)
    for p in 0..<n {
      let value = (Float(image[3 * p + c]) - Float(low)) * scale
      image[3 * p + c] = UInt8(value.rounded().clamped(to: 0...255))
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

/// Output pixel (x, y) takes input pixel round(a·x + b·y + c, d·x + e·y + f), or grey 128 outside.
private func affine(
  _ image: UnsafeMutablePointer<UInt8>, width: Int, height: Int,
  scratch: UnsafeMutablePointer<UInt8>,
  matrix m: (Double, Double, Double, Double, Double, Double)
) {
  scratch.update(from: image, count: width * height * 3)
  for y in 0..<height {
    for x in 0..<width {
      let sx = Int((m.0 * Double(x) + m.1 * Double(y) + m.2).rounded())
      let sy = Int((m.3 * Double(x) + m.4 * Double(y) + m.5).rounded())
      let target = image + 3 * (y * width + x)
      if sx >= 0 && sx < width && sy >= 0 && sy < height {
        let source = scratch + 3 * (sy * width + sx)
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

/// Blends with a smoothed copy (kernel [[1,1,1],[1,5,1],[1,1,1]]/13; border pixels unchanged).
private func sharpness(
  _ image: UnsafeMutablePointer<UInt8>, width: Int, height: Int, factor: Float,
  scratch: UnsafeMutablePointer<UInt8>
) {
  guard width >= 3 && height >= 3 else { return }
  scratch.update(from: image, count: width * height * 3)
  for y in 1..<height - 1 {
    for x in 1..<width - 1 {
      for c in 0..<3 {
        var sum = 4 * Int(scratch[3 * (y * width + x) + c])
        for dy in -1...1 {
          for dx in -1...1 { sum += Int(scratch[3 * ((y + dy) * width + x + dx) + c]) }
        }
        let smooth = (Float(sum) / 13).rounded()
        image[3 * (y * width + x) + c] = blend(
          smooth, Float(scratch[3 * (y * width + x) + c]), factor)
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
