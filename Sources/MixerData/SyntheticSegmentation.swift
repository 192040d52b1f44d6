// The embedded segmentation dataset: procedurally generated 32×32 scenes of one to three shapes
// over a shaded background, with the class of every pixel. Like `SyntheticShapes`, every sample is
// a pure function of (seed, split, index): nothing to download, the splits disjoint by key.
//
// A scene is a background colour with a linear gradient (up to ±24 of 255 across the image), then
// one to three shapes drawn in order, each a disc, square, triangle, ring or plus with a random
// size (half-extent 4.5–9 px), position (the centre within the frame), rotation (triangle and plus)
// and colour (at least 100 of 441 RGB units from the background), composited with a one-pixel
// anti-aliased edge, then Gaussian pixel noise (σ 2–8 of 255). The mask holds the class of the
// topmost shape covering at least half of the pixel, else background: later shapes occlude
// earlier ones in the image and in the mask alike. Telling a ring from a disc, or a square from a
// plus, takes the shape's whole outline, not the pixel's colour: the classes are what the token
// mixing must learn.

import Foundation
import MixerNumerics

/// Procedural 32×32 segmentation scenes; a pure function of (seed, split, index).
public struct SyntheticSegmentation: SegmentationDataset {
  /// Class names in label order; 0 is the background.
  public static let names = ["background", "disc", "square", "triangle", "ring", "plus"]
  public static let side = SyntheticShapes.side

  public let split: SyntheticShapes.Split
  public let count: Int
  public let seed: UInt64

  public var numClasses: Int { SyntheticSegmentation.names.count }
  public var classNames: [String] { SyntheticSegmentation.names }
  public var height: Int { SyntheticSegmentation.side }
  public var width: Int { SyntheticSegmentation.side }

  /// `count` defaults to 50,000 for `.train` and 5,000 for `.validation`.
  public init(split: SyntheticShapes.Split = .train, count: Int? = nil, seed: UInt64 = 0) {
    self.split = split
    self.count = count ?? SyntheticShapes.defaultCount(split)
    self.seed = seed
    precondition(self.count >= 0, "SyntheticSegmentation count must be non-negative")
  }

  static let sceneTag: UInt64 = 0x5345_474D_0000_0000  // "SEGM"

  /// Writes scene `index` (the same for every epoch: the set is large enough not to need
  /// augmentation) and its mask.
  public func load(
    _ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>,
    mask: UnsafeMutablePointer<Int32>
  ) throws {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(
        index: index, step: nil, reason: "index out of range 0..<\(count) of SyntheticSegmentation")
    }
    var rng = CounterRNG(seed: seed, SyntheticSegmentation.sceneTag | split.rawValue, UInt64(index))
    SyntheticSegmentation.render(rng: &rng, pixels: pixels, mask: mask)
  }

  /// Draws one scene (`[32, 32, 3]` in [-1, 1]) and its mask (`[32, 32]`) from `rng`.
  static func render(
    rng: inout CounterRNG, pixels: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Int32>
  ) {
    let side = SyntheticSegmentation.side, n = side * side
    // background: a colour plus a linear gradient, in normalised units
    let background = SyntheticShapes.randomColour(&rng)
    let angle = rng.uniform(0, 2 * Float.pi)
    let slope = rng.uniform(0, 48 / 127.5) / Float(side)
    let (gx, gy) = (cos(angle) * slope, sin(angle) * slope)
    var colour = [SIMD3<Float>](repeating: .zero, count: n)
    for y in 0..<side {
      for x in 0..<side {
        let shade = gx * (Float(x) - Float(side) / 2) + gy * (Float(y) - Float(side) / 2)
        colour[y * side + x] = background + SIMD3(repeating: shade)
      }
    }
    mask.update(repeating: 0, count: n)

    let shapes = 1 + rng.below(3)
    withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { buffer in
      let coverage = buffer.baseAddress!
      for _ in 0..<shapes {
        let label = 1 + rng.below(names.count - 1)
        drawCoverage(coverage, label: label, rng: &rng)
        var fill = SyntheticShapes.randomColour(&rng)
        var attempts = 1
        while SyntheticShapes.squaredDistance(fill, background) < minimumContrast && attempts < 8 {
          fill = SyntheticShapes.randomColour(&rng)
          attempts += 1
        }
        if SyntheticShapes.squaredDistance(fill, background) < minimumContrast {
          fill = SyntheticShapes.distantColour(from: background)
        }
        for i in 0..<n where coverage[i] > 0 {
          colour[i] += (fill - colour[i]) * coverage[i]
          if coverage[i] >= 0.5 { mask[i] = Int32(label) }
        }
      }
    }

    let sigma = rng.uniform(2, 8) / 127.5
    gaussianQuantiles.withUnsafeBufferPointer { table in
      var bits: UInt64 = 0
      var left = 0
      for i in 0..<n {
        for channel in 0..<3 {
          if left == 0 {
            bits = rng.next()
            left = 5
          }
          let z = table[Int(bits & 4095)]
          bits >>= 12
          left -= 1
          pixels[3 * i + channel] = min(max(colour[i][channel] + sigma * z, -1), 1)
        }
      }
    }
  }

  /// Squared RGB distance below which a shape's colour is redrawn: (100 / 127.5)².
  static let minimumContrast: Float = (100.0 / 127.5) * (100.0 / 127.5)

  /// Writes the coverage `[32, 32]` of one shape of class `label` (1…5) at a random place.
  static func drawCoverage(_ coverage: UnsafeMutablePointer<Float>, label: Int, rng: inout CounterRNG) {
    let extent = rng.uniform(4.5, 9)
    let side = Float(SyntheticSegmentation.side)
    let cx = rng.uniform(1, side - 1), cy = rng.uniform(1, side - 1)
    let rotation = rng.uniform(-Float.pi, Float.pi)
    let (c, s) = (cos(rotation), sin(rotation))
    switch label {
    case 1:  // disc
      SyntheticShapes.fill(coverage) { x, y in length(x - cx, y - cy) - extent }
    case 2:  // axis-aligned square
      let a = extent * 0.85
      SyntheticShapes.fill(coverage) { x, y in boxDistance(x - cx, y - cy, a) }
    case 3:  // triangle of circumradius R, rotated
      let inradius = extent * 1.15 / 2
      SyntheticShapes.fill(coverage) { x, y in
        var d: Float = -.infinity
        for k in 0..<3 {
          let a = rotation + Float(k) * 2 * Float.pi / 3
          d = max(d, (x - cx) * cos(a) + (y - cy) * sin(a))
        }
        return d - inradius
      }
    case 4:  // ring: thickness 2–3 px, hole at least 2.5 px in radius
      let t = rng.uniform(2, min(3, extent - 2.5))
      SyntheticShapes.fill(coverage) { x, y in abs(length(x - cx, y - cy) - (extent - t / 2)) - t / 2 }
    default:  // plus, rotated: arms of half-length R and half-width 0.3·R
      let halfWidth = max(1.5, 0.3 * extent)
      SyntheticShapes.fill(coverage) { x, y in
        let u = abs((x - cx) * c + (y - cy) * s), v = abs(-(x - cx) * s + (y - cy) * c)
        return min(max(u - extent, v - halfWidth), max(u - halfWidth, v - extent))
      }
    }
  }
}
