// Calibration: the range of every product's input over a set of images, run through the fp32
// plan. Two ways to turn it into a u8 quantization (MixerKernels/InferenceKernels.swift):
//   minmax      [min, max] of everything seen: one outlier stretches the scale for every value
//   percentile  [P_(100−p), P_p] of the values seen (default p = 99.99): the outliers saturate,
//               the bulk keeps its resolution (Zhao, Dong & Keutzer 2022 on Mixer's token-mixing
//               inputs, whose range is dominated by a few huge values)
// Values are kept as a strided sample (at most `sampleCap` per layer) for the percentiles; the
// minimum and maximum are exact. Either way the grid avoids one on which many sampled inputs sit
// exactly on a rounding boundary (`ActivationQuantization(low:high:avoidingTiesIn:)`: 8-bit pixels
// in [−1, 1] would otherwise all be halves, and quantize by the last bit of their fp32 value).

import MixerKernels
import MixerModel

/// How activation ranges become quantization ranges.
public enum CalibrationMethod: String, CaseIterable, Codable, Sendable {
  case percentile
  case minMax = "minmax"
}

/// What calibration saw at each product's input.
public final class ActivationStatistics {
  public let layers: [ProductLayer]
  public private(set) var minimum: [Float]
  public private(set) var maximum: [Float]
  var samples: [[Float]]
  let strides: [Int]
  public let images: Int

  init(layers: [ProductLayer], images: Int, sampleCap: Int) {
    self.layers = layers
    self.images = images
    minimum = layers.map { _ in .infinity }
    maximum = layers.map { _ in -.infinity }
    samples = layers.map { _ in [] }
    strides = layers.map { max(1, images * $0.rowsPerImage * $0.inputs / sampleCap) }
  }

  func observe(_ layer: Int, _ x: UnsafePointer<Float>, _ count: Int) {
    // 16 lanes of running minimum and maximum (the scalar loop is a chain of dependent min/max)
    var lo16 = SIMD16<Float>(repeating: minimum[layer]), hi16 = SIMD16<Float>(repeating: maximum[layer])
    var i = 0
    while i + 16 <= count {
      let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
      lo16.replace(with: v, where: v .< lo16)
      hi16.replace(with: v, where: hi16 .< v)
      i += 16
    }
    var lo = minimum[layer], hi = maximum[layer]
    for lane in 0..<16 {
      lo = min(lo, lo16[lane])
      hi = max(hi, hi16[lane])
    }
    while i < count {
      lo = min(lo, x[i])
      hi = max(hi, x[i])
      i += 1
    }
    (minimum[layer], maximum[layer]) = (lo, hi)
    // an odd offset so the sample does not alias with the row length
    for i in stride(from: (layer * 7) % strides[layer], to: count, by: strides[layer]) { samples[layer].append(x[i]) }
  }

  /// The calibrated quantization of every layer's input.
  public func quantization(_ method: CalibrationMethod, percentile: Double = 99.99) -> [String: ActivationQuantization] {
    var result: [String: ActivationQuantization] = [:]
    for (i, layer) in layers.enumerated() {
      switch method {
      case .minMax:
        result[layer.name] = ActivationQuantization(low: minimum[i], high: maximum[i], avoidingTiesIn: samples[i])
      case .percentile:
        guard !samples[i].isEmpty else { continue }
        let count = samples[i].count
        func rank(_ q: Double) -> Int { min(count - 1, max(0, Int((q * Double(count - 1)).rounded()))) }
        let bounds = orderStatistics(samples[i], ranks: [rank(1 - percentile / 100), rank(percentile / 100)])
        result[layer.name] = ActivationQuantization(low: bounds[0], high: bounds[1], avoidingTiesIn: samples[i])
      }
    }
    return result
  }
}

/// The values of `values.sorted()` at `ranks`, found by selection (quickselect, Hoare partitions
/// around a median of three) instead of a sort of the whole sample: the same values, in a few
/// passes over it instead of log₂(count).
func orderStatistics(_ values: [Float], ranks: [Int]) -> [Float] {
  var work = values
  return work.withUnsafeMutableBufferPointer { p in
    ranks.map { k in
      precondition(k >= 0 && k < p.count, "orderStatistics: rank \(k) of \(p.count) values")
      var lo = 0, hi = p.count - 1
      while lo < hi {
        let a = p[lo], b = p[lo + (hi - lo) / 2], c = p[hi]
        let pivot = max(min(a, b), min(max(a, b), c))
        var i = lo, j = hi
        while i <= j {
          while p[i] < pivot { i += 1 }
          while pivot < p[j] { j -= 1 }
          if i <= j {
            p.swapAt(i, j)
            i += 1
            j -= 1
          }
        }
        // now p[lo...j] ≤ pivot ≤ p[i...hi], and everything between equals the pivot
        if k <= j {
          hi = j
        } else if k >= i {
          lo = i
        } else {
          break
        }
      }
      return p[k]
    }
  }
}

/// Runs `count` images (`[count, H, W, 3]`) through the fp32 plan in batches and records every
/// product's input.
public func collectActivationStatistics(
  model: MixerModel, images: UnsafePointer<Float>, count: Int, batch: Int = 32, sampleCap: Int = 1 << 20
) throws -> ActivationStatistics {
  let plan = try InferencePlan(model: model, precision: .fp32)
  let statistics = ActivationStatistics(layers: plan.layers, images: count, sampleCap: sampleCap)
  plan.observer = statistics.observe
  let perImage = model.config.imageHeight * model.config.imageWidth * 3
  for start in stride(from: 0, to: count, by: batch) {
    plan.forward(images: images + start * perImage, batch: min(batch, count - start))
  }
  return statistics
}

/// Calibrated input quantization of every layer from `count` images in `images`.
public func calibrate(
  model: MixerModel, images: [Float], count: Int, method: CalibrationMethod, percentile: Double = 99.99
) throws -> [String: ActivationQuantization] {
  try images.withUnsafeBufferPointer {
    try collectActivationStatistics(model: model, images: $0.baseAddress!, count: count)
  }.quantization(method, percentile: percentile)
}
