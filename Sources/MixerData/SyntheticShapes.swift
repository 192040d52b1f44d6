// The embedded default dataset: procedurally generated 32×32 RGB images of ten shape and pattern
// classes, with no files. Every image is a pure function of (seed, split, index): its shape
// parameters, colours and noise come from `CounterRNG(seed:, imageTag | split, index)`, and its
// label from a seeded permutation of 0..<10 per block of ten consecutive indices, keyed by
// (seed, labelTag | split, index / 10), so every block of ten holds each class exactly once.
// The training and validation splits use different keys, so they are disjoint by construction.
//
// An image is a plain background colour, one foreground shape drawn with a one-pixel
// anti-aliased edge (coverage = clamp(0.5 − signed distance, 0, 1)), and Gaussian pixel noise
// (σ of 2–8 on the 0–255 scale, per channel, drawn from a 4096-entry quantile table). Foreground
// and background colours are uniform in RGB, at least 120 (of 441) apart; the label depends on the
// shape only. Shapes span 11–26 px and stay within about a pixel of the frame.

import Foundation
import MixerNumerics

/// Procedural 32×32 images of ten shapes and patterns; a pure function of (seed, split, index).
public struct SyntheticShapes: Dataset {
  /// Which keyed stream a sample comes from; splits never share an image.
  public enum Split: UInt64, Sendable, CaseIterable {
    case train = 0
    case validation = 1
  }

  /// The class names, in label order.
  public static let names = [
    "disc", "square", "triangle", "ring", "plus",
    "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "dot grid",
  ]
  /// Image side in pixels.
  public static let side = 32
  /// Default sample counts per split.
  public static func defaultCount(_ split: Split) -> Int {
    split == .train ? 50_000 : 5_000
  }

  public let split: Split
  public let count: Int
  public let seed: UInt64

  public var numClasses: Int { SyntheticShapes.names.count }
  public var classNames: [String] { SyntheticShapes.names }
  public var height: Int { SyntheticShapes.side }
  public var width: Int { SyntheticShapes.side }

  /// `count` defaults to 50,000 for `.train` and 5,000 for `.validation`.
  public init(split: Split = .train, count: Int? = nil, seed: UInt64 = 0) {
    self.split = split
    self.count = count ?? SyntheticShapes.defaultCount(split)
    self.seed = seed
    precondition(self.count >= 0, "SyntheticShapes count must be non-negative")
  }

  /// Key tags (the first `CounterRNG` integer), or'ed with the split.
  static let imageTag: UInt64 = 0x5348_4150_0000_0000  // "SHAP"
  static let labelTag: UInt64 = 0x4C41_4245_0000_0000  // "LABE"

  /// The 64-bit key that determines image `index` (its shape, colours and noise).
  public func imageKey(_ index: Int) -> UInt64 {
    CounterRNG(seed: seed, SyntheticShapes.imageTag | split.rawValue, UInt64(index)).key
  }

  /// The label of sample `index`, without rendering it.
  public func label(of index: Int) -> Int {
    var rng = CounterRNG(seed: seed, SyntheticShapes.labelTag | split.rawValue, UInt64(index / 10))
    var permutation = Array(0..<10)
    for i in stride(from: 9, to: 0, by: -1) {
      permutation.swapAt(i, rng.below(i + 1))
    }
    return permutation[index % 10]
  }

  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(
        index: index, step: nil, reason: "index out of range 0..<\(count) of SyntheticShapes")
    }
    let label = label(of: index)
    var rng = CounterRNG(seed: seed, SyntheticShapes.imageTag | split.rawValue, UInt64(index))
    SyntheticShapes.render(shape: label, rng: &rng, pixels: pixels)
    return label
  }

  /// Draws one image of class `shape` (`[32, 32, 3]`, values in [-1, 1]) from `rng`.
  static func render(shape: Int, rng: inout CounterRNG, pixels: UnsafeMutablePointer<Float>) {
    let n = side * side
    withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { buffer in
      let coverage = buffer.baseAddress!  // [32, 32] foreground coverage in [0, 1]
      drawCoverage(coverage, shape: shape, rng: &rng)

      // Colours in normalised units: (x − 127.5) / 127.5, at least 120/127.5 apart.
      var foreground = randomColour(&rng)
      var background = randomColour(&rng)
      var attempts = 1
      while squaredDistance(foreground, background) < minimumContrast && attempts < 8 {
        foreground = randomColour(&rng)
        background = randomColour(&rng)
        attempts += 1
      }
      if squaredDistance(foreground, background) < minimumContrast {
        background = distantColour(from: foreground)
      }
      let difference = foreground - background
      let sigma = rng.uniform(2, 8) / 127.5

      gaussianQuantiles.withUnsafeBufferPointer { table in
        var bits: UInt64 = 0
        var left = 0
        for i in 0..<n {
          let m = coverage[i]
          let colour = background + difference * m
          for channel in 0..<3 {
            if left == 0 {
              bits = rng.next()
              left = 5
            }
            let z = table[Int(bits & 4095)]
            bits >>= 12
            left -= 1
            let value = colour[channel] + sigma * z
            pixels[3 * i + channel] = min(max(value, -1), 1)
          }
        }
      }
    }
  }

  /// Squared RGB distance below which colours are redrawn: (120 / 127.5)².
  static let minimumContrast: Float = (120.0 / 127.5) * (120.0 / 127.5)

  @inline(__always)
  static func randomColour(_ rng: inout CounterRNG) -> SIMD3<Float> {
    SIMD3(rng.uniform() * 2 - 1, rng.uniform() * 2 - 1, rng.uniform() * 2 - 1)
  }

  /// A colour 1 (of 2) away from `colour` in every channel, towards the middle of the range: the
  /// fallback when random draws keep landing too close.
  @inline(__always)
  static func distantColour(from colour: SIMD3<Float>) -> SIMD3<Float> {
    SIMD3(
      colour.x > 0 ? colour.x - 1 : colour.x + 1,
      colour.y > 0 ? colour.y - 1 : colour.y + 1,
      colour.z > 0 ? colour.z - 1 : colour.z + 1)
  }

  @inline(__always)
  static func squaredDistance(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> Float {
    let d = a - b
    return (d * d).sum()
  }

  /// Writes the foreground coverage of class `shape` (`[32, 32]`) with random placement.
  static func drawCoverage(_ coverage: UnsafeMutablePointer<Float>, shape: Int, rng: inout CounterRNG) {
    switch shape {
    case 0:  // disc
      let r = rng.uniform(6, 11)
      let (cx, cy) = rng.centre(halfExtent: r)
      fill(coverage) { x, y in length(x - cx, y - cy) - r }
    case 1:  // square, axis-aligned
      let a = rng.uniform(5.5, 10)
      let (cx, cy) = rng.centre(halfExtent: a)
      fill(coverage) { x, y in boxDistance(x - cx, y - cy, a) }
    case 2:  // triangle pointing roughly up, rotated by up to ±29°, circumradius R
      let radius = rng.uniform(8, 13)
      let rotation = rng.uniform(-0.5, 0.5)
      let (cx, cy) = rng.centre(halfExtent: radius)
      // Outward normal of the edge opposite vertex k points away from that vertex.
      func normal(_ k: Int) -> (Float, Float) {
        let angle = -Float.pi / 2 + rotation + Float(k) * 2 * Float.pi / 3
        return (-cos(angle), -sin(angle))
      }
      let (n0, n1, n2) = (normal(0), normal(1), normal(2))
      let inradius = radius / 2
      fill(coverage) { x, y in
        let dx = x - cx, dy = y - cy
        let d0 = dx * n0.0 + dy * n0.1
        let d1 = dx * n1.0 + dy * n1.1
        let d2 = dx * n2.0 + dy * n2.1
        return max(d0, max(d1, d2)) - inradius
      }
    case 3:  // ring: outer radius r, thickness t, hole radius at least 4
      let r = rng.uniform(7, 12.5)
      let t = rng.uniform(2, min(3.5, r - 4))
      let middle = r - t / 2
      let (cx, cy) = rng.centre(halfExtent: r)
      fill(coverage) { x, y in abs(length(x - cx, y - cy) - middle) - t / 2 }
    case 4:  // plus: arms of half-length L and half-width w
      let arm = rng.uniform(7, 12)
      let halfWidth = rng.uniform(1.5, 0.28 * arm)
      let (cx, cy) = rng.centre(halfExtent: arm)
      fill(coverage) { x, y in
        let dx = abs(x - cx), dy = abs(y - cy)
        let horizontal = max(dx - arm, dy - halfWidth)
        let vertical = max(dx - halfWidth, dy - arm)
        return min(horizontal, vertical)
      }
    case 5, 6:  // horizontal / vertical stripes in a square patch, a stripe on the leading edge
      let a = rng.uniform(8, 13)
      let period = rng.uniform(4, 6.5)
      let (cx, cy) = rng.centre(halfExtent: a)
      let horizontal = shape == 5
      fill(coverage) { x, y in
        let v = horizontal ? y - (cy - a) : x - (cx - a)
        return max(stripeDistance(v, period), boxDistance(x - cx, y - cy, a))
      }
    case 7:  // diagonal stripes at ±45° in a square patch
      let a = rng.uniform(8, 13)
      let period = rng.uniform(4.5, 6.5)
      let direction: Float = rng.next() & 1 == 0 ? 1 : -1
      let phase = rng.uniform(0, period)
      let (cx, cy) = rng.centre(halfExtent: a)
      fill(coverage) { x, y in
        let v = ((x - cx) + direction * (y - cy)) * 0.707_106_77 + phase
        return max(stripeDistance(v, period), boxDistance(x - cx, y - cy, a))
      }
    case 8:  // checkerboard of square cells, a foreground cell in the top-left corner
      let a = rng.uniform(8, 13)
      let cell = rng.uniform(4, 5.5)
      let (cx, cy) = rng.centre(halfExtent: a)
      fill(coverage) { x, y in
        let sx = stripeDistance(x - (cx - a), 2 * cell)
        let sy = stripeDistance(y - (cy - a), 2 * cell)
        let edge = min(abs(sx), abs(sy))
        let checker = (sx < 0) == (sy < 0) ? -edge : edge
        return max(checker, boxDistance(x - cx, y - cy, a))
      }
    default:  // dot grid: round dots on a square lattice
      let a = rng.uniform(8, 13)
      let period = rng.uniform(5, 7)
      let r = period * rng.uniform(0.22, 0.3)
      let (cx, cy) = rng.centre(halfExtent: a)
      fill(coverage) { x, y in
        let u = x - (cx - a), v = y - (cy - a)
        let dx = u - period * ((u / period).rounded(.down) + 0.5)
        let dy = v - period * ((v / period).rounded(.down) + 0.5)
        return max(length(dx, dy) - r, boxDistance(x - cx, y - cy, a))
      }
    }
  }

  /// coverage[y, x] = clamp(0.5 − distance(x + 0.5, y + 0.5), 0, 1) for a signed distance
  /// (negative inside) in pixels.
  @inline(__always)
  static func fill(_ coverage: UnsafeMutablePointer<Float>, _ distance: (Float, Float) -> Float) {
    for y in 0..<side {
      let py = Float(y) + 0.5
      for x in 0..<side {
        let d = distance(Float(x) + 0.5, py)
        coverage[y * side + x] = min(max(0.5 - d, 0), 1)
      }
    }
  }
}

/// Euclidean length of (x, y).
@inline(__always)
func length(_ x: Float, _ y: Float) -> Float { (x * x + y * y).squareRoot() }

/// Distance-like value of an axis-aligned square of half-side a centred at the origin (exact
/// inside and along the sides; enough for a one-pixel edge).
@inline(__always)
func boxDistance(_ x: Float, _ y: Float, _ a: Float) -> Float {
  max(abs(x), abs(y)) - a
}

/// Signed distance to stripes of the given period, foreground on [0, period/2) of each period.
@inline(__always)
private func stripeDistance(_ v: Float, _ period: Float) -> Float {
  let t = v / period
  let fraction = t - t.rounded(.down)
  return (abs(fraction - 0.25) - 0.25) * period
}

/// Φ⁻¹((i + 0.5) / 4096) for i in 0..<4096: a 12-bit draw indexes one standard normal value.
let gaussianQuantiles: [Float] = (0..<4096).map { i in
  let p = (Double(i) + 0.5) / 4096
  var low = -10.0, high = 10.0
  for _ in 0..<60 {
    let middle = (low + high) / 2
    if 0.5 * (1 + erf(middle / 2.0.squareRoot())) < p { low = middle } else { high = middle }
  }
  return Float((low + high) / 2)
}

extension CounterRNG {
  /// A uniform Float in [low, high).
  @inline(__always)
  mutating func uniform(_ low: Float, _ high: Float) -> Float {
    low + (high - low) * uniform()
  }

  /// A centre for a shape of the given half extent that keeps it within a pixel of the frame.
  @inline(__always)
  mutating func centre(halfExtent h: Float) -> (Float, Float) {
    let side = Float(SyntheticShapes.side)
    let low = min(h - 1, side / 2), high = max(side - h + 1, side / 2)
    return (uniform(low, high), uniform(low, high))
  }
}
