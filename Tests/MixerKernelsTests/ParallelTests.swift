// The row-parallel elementwise kernels give the single-thread results (exactly where no sum
// crosses chunks; to float rounding for the per-column parameter gradients). The pixel-wise
// cross-entropy runs images in parallel and is exact.

import MixerKernels
import MixerTestSupport
import XCTest

final class ParallelTests: XCTestCase {
  override func tearDown() { KernelThreads.count = 1 }

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
