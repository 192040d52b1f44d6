// The row-parallel elementwise kernels give the single-thread results (exactly where no sum
// crosses chunks; to float rounding for the per-column parameter gradients). The pixel-wise
// cross-entropy runs images in parallel and is exact.

import MixerKernels
import MixerTestSupport
import XCTest

final class ParallelTests: XCTestCase {
  override func tearDown() {
    KernelThreads.count = 1
    KernelThreads.team = .dispatch
  }

  func run(threads: Int, rows: Int, cols: Int) -> [[Float]] {
    KernelThreads.count = threads
    var random = TestRandom(seed: 41)
    let x = random.floats(rows * cols, in: -3...3)
    let w = random.floats(cols, in: 0.5...1.5), b = random.floats(cols, in: -0.2...0.2)
    var out = [Float](repeating: 0, count: rows * cols)
    var mean = [Float](repeating: 0, count: rows), rstd = mean
    layerNormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, channels: cols)
    let dy = random.floats(rows * cols, in: -1...1)
    var dx = [Float](repeating: 0, count: rows * cols)
    var dw = [Float](repeating: 0.5, count: cols), db = [Float](repeating: -0.5, count: cols)
    layerNormBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: dy, inp: x, weight: w, mean: mean, rstd: rstd, rows: rows, channels: cols)
    var pre = x
    var act = [Float](repeating: 0, count: rows * cols)
    biasGELUForwardKeepingDerivative(act: &act, pre: &pre, bias: b, rows: rows, cols: cols, axis: .columns, kind: .tanh)
    var dh = [Float](repeating: 0, count: rows * cols)
    var dgb = [Float](repeating: 0.25, count: cols)
    geluBackwardFromDerivative(dinp: &dh, dbias: &dgb, dout: dy, derivative: pre, rows: rows, cols: cols, axis: .columns)
    var dgr = [Float](repeating: 0, count: rows)
    geluBackwardFromDerivative(dinp: &dh, dbias: &dgr, dout: dy, derivative: pre, rows: rows, cols: cols, axis: .rows)
    return [out, mean, rstd, dx, dw, db, act, pre, dh, dgb, dgr]
  }

  func testParallelMatchesSerial() {
    // 2048 × 48 = 98k elements: above the threshold, so 3 chunks really run
    let serial = run(threads: 1, rows: 2048, cols: 48)
    let parallel = run(threads: 3, rows: 2048, cols: 48)
    let names = ["out", "mean", "rstd", "dx", "dweight", "dbias", "act", "gelu′", "dh", "dbias cols", "dbias rows"]
    for (i, name) in names.enumerated() {
      if ["dweight", "dbias", "dbias cols"].contains(name) {
        assertClose(parallel[i], serial[i], relative: 1e-4, absolute: 1e-3, name)
      } else {
        XCTAssertEqual(parallel[i], serial[i], name)
      }
    }
    // and the same again: deterministic for a fixed thread count
    XCTAssertEqual(run(threads: 3, rows: 2048, cols: 48), parallel)
    // on OpenMP's team (bf16 training) the chunks are the same, so are the results
    KernelThreads.team = .openMP
    XCTAssertEqual(run(threads: 3, rows: 2048, cols: 48), parallel)
  }

  /// Per-row bias sums are each row's own: the same bits on any thread count and team.
  func testRowBiasGradientIsExactInParallel() {
    var random = TestRandom(seed: 44)
    let rows = 64, cols = 2051
    let dout = random.floats(rows * cols, in: -1...1)
    func sums(threads: Int, team: KernelThreads.Team) -> [Float] {
      KernelThreads.count = threads
      KernelThreads.team = team
      var dbias = [Float](repeating: 0.5, count: rows)
      biasBackwardRows(dbias: &dbias, dout: dout, rows: rows, cols: cols)
      return dbias
    }
    let serial = sums(threads: 1, team: .dispatch)
    XCTAssertEqual(serial[3], 0.5 + dout[(3 * cols)..<(4 * cols)].reduce(0, +), accuracy: 1e-3)
    XCTAssertEqual(sums(threads: 3, team: .dispatch), serial)
    XCTAssertEqual(sums(threads: 2, team: .openMP), serial)
  }

  /// Per-column bias sums split by columns, each summed over the rows in order: the bits of the
  /// plain loop on any thread count.
  func testColumnBiasGradientIsTheRowOrderSumInParallel() {
    var random = TestRandom(seed: 45)
    let rows = 2000, cols = 83
    let dout = random.floats(rows * cols, in: -1...1)
    var expected = [Float](repeating: -0.25, count: cols)
    for r in 0..<rows {
      for j in 0..<cols { expected[j] += dout[r * cols + j] }
    }
    for (threads, team) in [(1, KernelThreads.Team.dispatch), (3, .dispatch), (2, .openMP)] {
      KernelThreads.count = threads
      KernelThreads.team = team
      var dbias = [Float](repeating: -0.25, count: cols)
      biasBackwardColumns(dbias: &dbias, dout: dout, rows: rows, cols: cols)
      XCTAssertEqual(dbias, expected, "\(threads) threads, \(team)")
    }
  }

  /// `parallelElements` hands out every index once, in blocks, on any thread count.
  func testParallelElementsCoversEveryIndexOnce() {
    for (threads, count) in [(1, 10), (2, 100_003), (3, 70_000), (4, 0)] {
      KernelThreads.count = threads
      var hits = [Int](repeating: 0, count: count)
      hits.withUnsafeMutableBufferPointer { hits in
        parallelElements(count, block: 1000) { range in
          for i in range { hits[i] += 1 }
        }
      }
      XCTAssertEqual(hits, [Int](repeating: 1, count: count), "\(threads) threads, \(count) elements")
    }
  }

  func testOpenMPTeamRunsEveryChunkOnce() {
    for threads in [1, 2, 3, 7] {
      var hits = [Int](repeating: 0, count: threads)
      hits.withUnsafeMutableBufferPointer { hits in
        DNNL.parallel(threads: threads) { t in hits[t] += 1 }
      }
      XCTAssertEqual(hits, [Int](repeating: 1, count: threads), "\(threads) threads")
    }
  }

  /// The kernels that write a bf16 operand write exactly the rounding of their fp32 output.
  func testBF16OutputsAreTheRoundedFP32Outputs() {
    let (rows, cols) = (300, 70)  // not a multiple of 16: the scalar tails too
    var random = TestRandom(seed: 43)
    let x = random.floats(rows * cols, in: -4...4)
    let w = random.floats(cols, in: 0.5...1.5), b = random.floats(cols, in: -0.2...0.2)
    let rowBias = random.floats(rows, in: -0.2...0.2)
    func rounded(_ v: [Float]) -> [UInt16] { v.map(bf16Bits) }

    var out = [Float](repeating: 0, count: rows * cols), out16 = [UInt16](repeating: 0, count: rows * cols)
    var mean = [Float](repeating: 0, count: rows), rstd = mean
    layerNormForward(out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, channels: cols)
    var untouched = [Float](repeating: 7, count: rows * cols)
    layerNormForward(out: &untouched, outBF16: &out16, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, channels: cols)
    XCTAssertEqual(out16, rounded(out), "layernorm")
    XCTAssertEqual(untouched, [Float](repeating: 7, count: rows * cols), "layernorm wrote the fp32 output")

    for (axis, bias) in [(BiasAxis.columns, b), (.rows, rowBias)] {
      for kind in GELUKind.allCases {
        var pre = x, act = [Float](repeating: 0, count: rows * cols)
        biasGELUForwardKeepingDerivative(act: &act, pre: &pre, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)
        var pre16 = x, act16 = [UInt16](repeating: 0, count: rows * cols)
        untouched = [Float](repeating: 7, count: rows * cols)
        biasGELUForwardKeepingDerivative(
          act: &untouched, actBF16: &act16, pre: &pre16, bias: bias, rows: rows, cols: cols, axis: axis, kind: kind)
        XCTAssertEqual(act16, rounded(act), "gelu \(axis) \(kind)")
        XCTAssertEqual(pre16, pre, "gelu′ \(axis) \(kind)")
        XCTAssertEqual(untouched, [Float](repeating: 7, count: rows * cols), "gelu wrote the fp32 output")

        let dy = random.floats(rows * cols, in: -1...1)
        var dh = [Float](repeating: 0, count: rows * cols), dbias = [Float](repeating: 0.25, count: axis == .rows ? rows : cols)
        geluBackwardFromDerivative(dinp: &dh, dbias: &dbias, dout: dy, derivative: pre, rows: rows, cols: cols, axis: axis)
        var dh16 = [UInt16](repeating: 0, count: rows * cols), dbias16 = [Float](repeating: 0.25, count: dbias.count)
        untouched = [Float](repeating: 7, count: rows * cols)
        geluBackwardFromDerivative(
          dinp: &untouched, dinpBF16: &dh16, dbias: &dbias16, dout: dy, derivative: pre, rows: rows, cols: cols, axis: axis)
        XCTAssertEqual(dh16, rounded(dh), "gelu backward \(axis)")
        XCTAssertEqual(dbias16, dbias, "gelu backward bias \(axis)")
        XCTAssertEqual(untouched, [Float](repeating: 7, count: rows * cols), "gelu backward wrote the fp32 output")
      }
    }
  }

  func testPixelCrossEntropyImagesInParallelAreExact() {
    // 5 images of 1024 pixels and 7 classes: 36k elements each, 3 chunks
    func run(threads: Int) -> [[Float]] {
      KernelThreads.count = threads
      var random = TestRandom(seed: 42)
      let (batch, pixels, classes) = (5, 1024, 7)
      let logits = random.floats(batch * pixels * classes, in: -3...3)
      let labels = (0..<(batch * pixels)).map { Int32($0 % 11 == 0 ? -1 : ($0 * 5) % classes) }
      var losses = [Float](repeating: 0, count: batch), valid = losses
      var probs = [Float](repeating: 0, count: logits.count)
      pixelCrossEntropyForward(
        losses: &losses, probs: &probs, validCounts: &valid, logits: logits, labels: labels, batch: batch,
        pixels: pixels, classes: classes, smoothing: 0.1, ignore: -1)
      var dlogits = probs
      pixelCrossEntropyBackward(
        dlogits: &dlogits, probs: probs, validCounts: valid, labels: labels, batch: batch, pixels: pixels,
        classes: classes, smoothing: 0.1, scale: 0.5, ignore: -1)
      return [losses, valid, probs, dlogits]
    }
    XCTAssertEqual(run(threads: 3), run(threads: 1))
  }
}
