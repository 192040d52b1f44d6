// The inference plan: fp32 equals the training forward's logits; bf16 and int8 stay close to it;
// the int8 kernel is exactly its integer formula; the one-line error without ranges. Every
// other block kind, stem and head: LayerKindTests.

@testable import MixerInference
import MixerKernels
import MixerModel
import MixerTestSupport
import XCTest

/// A small model (16×16 px, patch 4: S 16, C 32, D_S 16, D_C 64, 5 classes) with every parameter
/// random, the head included (the official init zeroes it), and a batch of images.
func smallModel(seed: UInt64 = 1, gelu: GELUKind = .tanh) throws -> (MixerModel, [Float]) {
  let config = MixerConfig(
    imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 2, tokensMLP: 16, channelsMLP: 64, classes: 5,
    gelu: gelu)
  let model = try MixerModel(config: config, seed: seed)
  var rng = CounterRNG(seed: seed, 77)
  for view in model.table.views where view.role != .kernel {
    for j in view.range { model.parameters[j] = (view.role == .scale ? 1 : 0) + (rng.uniform() - 0.5) * 0.4 }
  }
  let images = (0..<(6 * 16 * 16 * 3)).map { _ in rng.uniform() * 2 - 1 }
  return (model, images)
}

/// The training forward's logits `[B, K]`.
func trainingLogits(_ model: MixerModel, _ images: [Float], batch: Int) -> [Double] {
  let acts = Activations(config: model.config, batch: batch)
  images.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
  let logits = acts.head(ClassificationBuffers.self).logits
  return (0..<(batch * model.config.classes)).map { Double(logits[$0]) }
}

func planLogits(_ plan: InferencePlan, _ images: [Float], batch: Int) -> [Float] {
  let logits = images.withUnsafeBufferPointer { plan.forward(images: $0.baseAddress!, batch: batch) }
  return Array(UnsafeBufferPointer(start: logits, count: batch * plan.model.config.classes))
}

/// ‖a − e‖ / ‖e‖
func relativeError(_ a: [Float], _ e: [Double]) -> Double {
  var d = 0.0, n = 0.0
  for (x, y) in zip(a, e) { d += (Double(x) - y) * (Double(x) - y); n += y * y }
  return (d / n).squareRoot()
}

final class InferencePlanTests: XCTestCase {
  func testFP32PlanEqualsTrainingForward() throws {
    for gelu in GELUKind.allCases {
      let (model, images) = try smallModel(gelu: gelu)
      let plan = try InferencePlan(model: model, precision: .fp32)
      for batch in [1, 6] {
        assertClose(
          planLogits(plan, images, batch: batch), trainingLogits(model, images, batch: batch), relative: 1e-5,
          absolute: 1e-5, "fp32 plan, \(gelu) GELU, batch \(batch)")
      }
    }
  }

  /// 8-bit pixels normalised to [−1, 1] all sit on a rounding half of the 255-step grid of [−1, 1]
  /// (x / (2/255) = p − 127.5): calibration spreads such a range over 254 steps instead, where no
  /// pixel is nearer a half than 1/510 of a step; inputs that are not on such a lattice keep 255.
  func testCalibrationAvoidsGridsWithInputsOnRoundingHalves() {
    let pixels = (0..<256).map { (Float($0) - 127.5) / 127.5 }
    XCTAssertGreaterThan(ActivationQuantization(low: -1, high: 1).tieFraction(pixels), 0.99)
    let q = ActivationQuantization(low: -1, high: 1, avoidingTiesIn: pixels)
    XCTAssertEqual(q, ActivationQuantization(low: -1, high: 1, steps: 254))
    XCTAssertEqual(q.zeroPoint, 127)
    XCTAssertEqual(q.tieFraction(pixels), 0)
    for x in pixels {
      let t = x / q.scale
      XCTAssertGreaterThan(abs(t - t.rounded(.down) - 0.5), 1.9e-3, "pixel \(x)")
    }
    var rng = CounterRNG(seed: 5)
    let smooth = (0..<10_000).map { _ in rng.uniform() * 2 - 1 }
    XCTAssertEqual(ActivationQuantization(low: -1, high: 1, avoidingTiesIn: smooth), ActivationQuantization(low: -1, high: 1))
  }

  /// Percentile calibration selects its two order statistics instead of sorting: the values
  /// equal the sorted sample's at every rank asked, with many repeated values, a constant sample
  /// and one value.
  func testOrderStatisticsEqualTheSortedValues() {
    var rng = CounterRNG(seed: 9)
    let spread = (0..<5_001).map { _ in (rng.uniform() - 0.5) * 1e3 }
    let repeated = (0..<4_096).map { _ in (rng.uniform() * 7).rounded() - 3 }
    for values in [spread, repeated, [Float](repeating: 2, count: 300), [-1.5]] {
      let sorted = values.sorted()
      let ranks = Array(Set([0, 1, values.count / 3, values.count / 2, values.count - 2, values.count - 1].filter { $0 >= 0 && $0 < values.count }))
      XCTAssertEqual(orderStatistics(values, ranks: ranks), ranks.map { sorted[$0] }, "\(values.count) values, ranks \(ranks)")
      XCTAssertEqual(orderStatistics(values, ranks: ranks.reversed()), ranks.reversed().map { sorted[$0] })
    }
  }

  func testBF16AndInt8PlansStayCloseToFP32() throws {
    let (model, images) = try smallModel()
    let expected = trainingLogits(model, images, batch: 6)
    let bf16 = try InferencePlan(model: model, precision: .bf16)
    let bf16Error = relativeError(planLogits(bf16, images, batch: 6), expected)
    XCTAssertLessThan(bf16Error, 2e-2, "bf16 plan: relative logit error")
    XCTAssertGreaterThan(bf16Error, 0, "bf16 plan: the products did not run in bf16")

    let ranges = try calibrate(model: model, images: images, count: 6, method: .minMax)
    let int8 = try InferencePlan(model: model, precision: .int8, inputs: ranges)
    let int8Error = relativeError(planLogits(int8, images, batch: 6), expected)
    XCTAssertLessThan(int8Error, 5e-2, "int8 plan (min-max ranges of these images): relative logit error")
    XCTAssertGreaterThan(int8Error, 0)
    XCTAssertEqual(Set(int8.precisions.values), [.int8])
  }

  func testInt8WithoutRangesIsAOneLineError() throws {
    let (model, _) = try smallModel()
    XCTAssertThrowsError(try InferencePlan(model: model, precision: .int8)) { error in
      let text = "\(error)"
      XCTAssertTrue(text.contains("no calibrated input range") && text.contains("mixer-dist quantize"), text)
      XCTAssertFalse(text.contains("\n"))
    }
  }

  /// out = s_x · s_w[n] · Σ_k (q_x − z)·q_w + bias, computed here with integer loops.
  func testInt8ProductIsItsIntegerFormula() throws {
    let (model, images) = try smallModel()
    let layer = model.config.productLayers[3]  // MixerBlock_0/channel_mixing/Dense_0
    let ranges = try calibrate(model: model, images: images, count: 6, method: .minMax)
    let input = ranges[layer.name]!
    let (m, k, n) = (7, layer.inputs, layer.outputs)
    let weights = QuantizedWeights(
      model.parameters.pointer + model.table.offset(layer.name + "/kernel"), inputs: k, outputs: n)
    let bias = model.parameter(layer.name + "/bias")!
    let kernel = Int8Product(weights: weights, bias: bias, input: input, inputs: k, outputs: n)
    var rng = CounterRNG(seed: 9)
    let x = (0..<(m * k)).map { _ in rng.uniform() * 6 - 3 }
    let scratch = KernelScratch()
    scratch.reserve(elements: m * k)
    var out = [Float](repeating: .nan, count: m * n)
    x.withUnsafeBufferPointer { xp in
      out.withUnsafeMutableBufferPointer { kernel.run(out: $0.baseAddress!, x: xp.baseAddress!, transposed: false, rows: m, scratch: scratch) }
    }
    var expected = [Double](repeating: 0, count: m * n)
    for r in 0..<m {
      for j in 0..<n {
        var sum = 0
        for t in 0..<k {
          let q = Int(max(0, min(255, (x[r * k + t] / input.scale).rounded(.toNearestOrEven) + Float(input.zeroPoint))))
          sum += (q - input.zeroPoint) * Int(weights.values[t * n + j])
        }
        expected[r * n + j] = Double(input.scale * weights.scales[j] * Float(sum) + bias[j])
      }
    }
    assertClose(out, expected, relative: 1e-6, absolute: 1e-6, "int8 product against integer loops")

    // the same input stored transposed [K×M] (the token-mixing read) gives the same output
    var xT = [Float](repeating: 0, count: m * k)
    for r in 0..<m { for t in 0..<k { xT[t * m + r] = x[r * k + t] } }
    var outT = [Float](repeating: .nan, count: m * n)
    xT.withUnsafeBufferPointer { xp in
      outT.withUnsafeMutableBufferPointer { kernel.run(out: $0.baseAddress!, x: xp.baseAddress!, transposed: true, rows: m, scratch: scratch) }
    }
    XCTAssertEqual(outT, out, "int8 product on the transposed input")
  }

  /// The fused epilogue (bias, GELU, requantized to the next layer's u8 input inside the product)
  /// against the fp32 product, GELU and `quantizeU8`: every value within one quantization step,
  /// and most exactly equal (only values next to a rounding boundary may differ).
  func testInt8GELUQuantizedEpilogue() throws {
    let (model, images) = try smallModel()
    let layer = model.config.productLayers[3]  // MixerBlock_0/channel_mixing/Dense_0
    let ranges = try calibrate(model: model, images: images, count: 6, method: .minMax)
    let (m, k, n) = (7, layer.inputs, layer.outputs)
    let weights = QuantizedWeights(model.parameters.pointer + model.table.offset(layer.name + "/kernel"), inputs: k, outputs: n)
    let kernel = Int8Product(
      weights: weights, bias: model.parameter(layer.name + "/bias")!, input: ranges[layer.name]!, inputs: k, outputs: n)
    let next = ActivationQuantization(low: -0.2, high: 2.5)
    var rng = CounterRNG(seed: 11)
    let x = (0..<(m * k)).map { _ in rng.uniform() * 6 - 3 }
    var q = [UInt8](repeating: 0, count: m * k)
    q.withUnsafeMutableBufferPointer { quantizeU8($0.baseAddress!, x, count: m * k, kernel.input) }
    for gelu in GELUKind.allCases {
      var fused = [UInt8](repeating: 0, count: m * n), reference = [UInt8](repeating: 0, count: m * n)
      var out = [Float](repeating: 0, count: m * n)
      fused.withUnsafeMutableBytes { f in
        kernel.runQuantized(dst: f.baseAddress!, q: q, rows: m, epilogue: .u8(scale: next.scale, zeroPoint: next.zeroPoint, gelu: gelu))
      }
      out.withUnsafeMutableBufferPointer { o in
        kernel.runQuantized(dst: UnsafeMutableRawPointer(o.baseAddress!), q: q, rows: m, epilogue: .float)
        geluForward(out: o.baseAddress!, inp: o.baseAddress!, count: m * n, kind: gelu)
        reference.withUnsafeMutableBufferPointer { quantizeU8($0.baseAddress!, o.baseAddress!, count: m * n, next) }
      }
      let differences = zip(fused, reference).map { abs(Int($0) - Int($1)) }
      let worst = differences.enumerated().max { $0.element < $1.element }!
      XCTAssertLessThanOrEqual(worst.element, 1, "\(gelu) GELU: max difference \(worst.element) at index \(worst.offset)")
      XCTAssertLessThan(differences.filter { $0 != 0 }.count, m * n / 20, "\(gelu) GELU: too many values one step off")
      XCTAssertGreaterThan(Set(fused).count, 20, "\(gelu) GELU: the output should spread over the u8 range")
    }
  }

  /// LayerNorm fused with quantization against `layerNormForward` then `quantizeU8`, in both
  /// layouts (the transposed one puts x row s·B + b, channel c at [b·C + c, s]): the same bytes.
  func testLayerNormQuantizeMatchesLayerNormThenQuantize() throws {
    let (s, b, c) = (19, 3, 40)
    var rng = CounterRNG(seed: 12)
    let x = (0..<(s * b * c)).map { _ in rng.uniform() * 8 - 4 }
    let weight = (0..<c).map { _ in 0.5 + rng.uniform() }, bias = (0..<c).map { _ in rng.uniform() - 0.5 }
    let p = ActivationQuantization(low: -2.5, high: 3)
    XCTAssertEqual(layerNormQuantizeStaging(channels: c), 4 * c)
    var y = [Float](repeating: 0, count: s * b * c), mean = [Float](repeating: 0, count: s * b), rstd = mean
    layerNormForward(out: &y, mean: &mean, rstd: &rstd, inp: x, weight: weight, bias: bias, rows: s * b, channels: c, epsilon: 1e-6)
    var reference = [UInt8](repeating: 0, count: s * b * c)
    reference.withUnsafeMutableBufferPointer { quantizeU8($0.baseAddress!, y, count: s * b * c, p) }
    for layout in [QuantizedLayout.rows, .transposed(tokens: s, batch: b)] {
      var q = [UInt8](repeating: 0, count: s * b * c)
      var staging = [Float](repeating: 0, count: layerNormQuantizeStaging(channels: c))
      layerNormQuantizeForward(
        q: &q, staging: &staging, inp: x, weight: weight, bias: bias, rows: s * b, channels: c, epsilon: 1e-6, quantization: p, layout: layout)
      var off = 0, worst = 0
      for token in 0..<s {
        for image in 0..<b {
          for channel in 0..<c {
            let expected = Int(reference[(token * b + image) * c + channel])
            let index: Int
            if case .rows = layout { index = (token * b + image) * c + channel } else { index = (image * c + channel) * s + token }
            let d = abs(Int(q[index]) - expected)
            worst = max(worst, d)
            if d != 0 { off += 1 }
          }
        }
      }
      XCTAssertEqual(worst, 0, "\(layout): max difference \(worst), \(off) values differ")
    }
  }
}

/// The plan's elementwise steps split over the kernel threads give the one-thread bits.
final class PlanElementwiseTests: XCTestCase {
  override func tearDown() { KernelThreads.count = 1 }

  func testParallelGELUAndTransposedAddAreTheSerialBits() {
    var rng = CounterRNG(seed: 5, 11)
    // 100,003 values: above the parallel threshold, not a multiple of 16 (a scalar tail)
    let count = 100_003
    let x = (0..<count).map { _ in (rng.uniform() - 0.5) * 16 }
    for kind in GELUKind.allCases {
      var serial = [Float](repeating: 0, count: count)
      geluForward(out: &serial, inp: x, count: count, kind: kind)
      for threads in [2, 3] {
        KernelThreads.count = threads
        var parallel = [Float](repeating: 0, count: count)
        parallelGELU(out: &parallel, inp: x, count: count, kind: kind)
        let bad = serial.indices.first { parallel[$0].bitPattern != serial[$0].bitPattern }
        XCTAssertNil(bad, "\(kind) on \(threads) threads: first different value at \(bad ?? -1)")
      }
    }
    // x [cols, rows] += t [rows, cols]ᵀ, rows not a multiple of the 16-row tile
    let (rows, cols) = (1_000, 197)
    let t = (0..<(rows * cols)).map { _ in rng.uniform() - 0.5 }
    let start = (0..<(rows * cols)).map { _ in rng.uniform() - 0.5 }
    var expected = start
    for s in 0..<cols { for r in 0..<rows { expected[s * rows + r] += t[r * cols + s] } }
    for threads in [1, 2, 3] {
      KernelThreads.count = threads
      var out = start
      addTransposed(&out, t, rows: rows, cols: cols)
      let bad = expected.indices.first { out[$0].bitPattern != expected[$0].bitPattern }
      XCTAssertNil(bad, "add transposed on \(threads) threads: first different value at \(bad ?? -1)")
    }
  }

  /// The portable int8 and bf16 products (oneDNN's arithmetic on sgemm, forced here on any CPU)
  /// split their widening, block sums, epilogues and quantization over the kernel threads: a
  /// plan's logits are the same bits on 1, 2 and 3 threads. The model is large enough (S 64, C 64,
  /// D_C 128, batch 16) that every pass is above the parallel threshold.
  func testPortableLowPrecisionPlansAreTheSameBitsOnAnyThreadCount() throws {
    DNNL.forcePortable = true
    defer { DNNL.forcePortable = false }
    let config = MixerConfig(
      imageHeight: 32, imageWidth: 32, patch: 4, hidden: 64, blocks: 2, tokensMLP: 32, channelsMLP: 128, classes: 5)
    let model = try MixerModel(config: config, seed: 3)
    var rng = CounterRNG(seed: 3, 77)
    for view in model.table.views where view.role != .kernel {
      for j in view.range { model.parameters[j] = (view.role == .scale ? 1 : 0) + (rng.uniform() - 0.5) * 0.4 }
    }
    let batch = 16
    let images = (0..<(batch * 32 * 32 * 3)).map { _ in rng.uniform() * 2 - 1 }
    let ranges = try calibrate(model: model, images: images, count: batch, method: .percentile)
    for precision in [Precision.int8, .bf16] {
      var reference: [UInt32] = []
      for threads in [1, 2, 3] {
        KernelThreads.count = threads
        let plan = try InferencePlan(model: model, precision: precision, inputs: ranges)
        let logits = images.withUnsafeBufferPointer { plan.forward(images: $0.baseAddress!, batch: batch) }
        let bits = (0..<(batch * 5)).map { logits[$0].bitPattern }
        XCTAssertTrue(bits.contains { $0 != 0 })
        if threads == 1 { reference = bits; continue }
        let bad = bits.indices.first { bits[$0] != reference[$0] }
        XCTAssertNil(bad, "\(precision) on \(threads) threads: first different logit at \(bad ?? -1)")
      }
    }
  }
}
