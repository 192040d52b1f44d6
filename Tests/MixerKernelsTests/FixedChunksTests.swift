// `BLAS.setFixedChunks` (`train --exact`): with a fixed decomposition, products and LayerNorm's
// backward give the same bits on 1 and 2 threads, and the chunked product still matches the naive
// oracle for every transpose pair, split by rows and by columns. Without it (today), OpenBLAS's
// threaded and one-thread drivers differ on this host for one of these shapes: the control.

import MixerKernels
import MixerTestSupport
import XCTest

final class FixedChunksTests: XCTestCase {
  override func tearDown() {
    BLAS.setFixedChunks(nil)
    BLAS.setThreads(1)
  }

  /// `C = op(A)·op(B)` (beta 0) of an M×N×K product on `threads` threads.
  func product(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, a: [Float], b: [Float], threads: Int) -> [Float] {
    BLAS.setThreads(threads)
    var c = [Float](repeating: .nan, count: m * n)
    gemm(transA, transB, m: m, n: n, k: k, a: a, lda: transA == .none ? k : m, b: b, ldb: transB == .none ? n : k,
         beta: 0, c: &c, ldc: n)
    return c
  }

  func testFixedChunkProductsAreTheSameOnOneAndTwoThreadsAndMatchTheOracle() {
    var random = TestRandom(seed: 2)
    var differedWithoutFixedChunks = false
    for (m, n, k) in [(1024, 128, 512), (128, 512, 1024), (64, 300, 256)] {
      for transA in [Transpose.none, .transpose] {
        for transB in [Transpose.none, .transpose] {
          let a = random.floats(m * k, in: -1...1), b = random.floats(k * n, in: -1...1)
          BLAS.setFixedChunks(nil)
          if product(transA, transB, m: m, n: n, k: k, a: a, b: b, threads: 1)
            != product(transA, transB, m: m, n: n, k: k, a: a, b: b, threads: 2) {
            differedWithoutFixedChunks = true
          }
          BLAS.setFixedChunks(4)
          let one = product(transA, transB, m: m, n: n, k: k, a: a, b: b, threads: 1)
          let two = product(transA, transB, m: m, n: n, k: k, a: a, b: b, threads: 2)
          XCTAssertEqual(one, two, "\(m)x\(n)x\(k) \(transA) \(transB): thread count moved the bits")
          var reference = [Float](repeating: 0, count: m * n)
          gemmNaive(transA, transB, m: m, n: n, k: k, a: a, lda: transA == .none ? k : m, b: b,
                    ldb: transB == .none ? n : k, beta: 0, c: &reference, ldc: n)
          let worst = zip(one, reference).map { abs($0 - $1) }.max()!
          XCTAssertLessThan(worst, 1e-3, "\(m)x\(n)x\(k) \(transA) \(transB) against the oracle")
        }
      }
    }
    XCTAssertTrue(differedWithoutFixedChunks, "OpenBLAS gave the same bits on 1 and 2 threads: the control proves nothing")
  }

  func testLayerNormBackwardIsTheSameOnOneAndTwoThreadsWithFixedChunks() {
    var random = TestRandom(seed: 3)
    let rows = 1024, c = 128
    let dout = random.floats(rows * c, in: -1...1), inp = random.floats(rows * c, in: -2...2)
    let weight = random.floats(c, in: 0.5...1.5)
    let mean = random.floats(rows, in: -0.1...0.1), rstd = random.floats(rows, in: 0.5...2)
    func run(threads: Int) -> [Float] {
      BLAS.setThreads(threads)
      var dinp = [Float](repeating: 0, count: rows * c), dweight = [Float](repeating: 0, count: c)
      var dbias = [Float](repeating: 0, count: c)
      layerNormBackward(dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: dout, inp: inp, weight: weight,
                        mean: mean, rstd: rstd, rows: rows, channels: c)
      return dinp + dweight + dbias
    }
    BLAS.setFixedChunks(nil)
    XCTAssertNotEqual(run(threads: 1), run(threads: 2), "the control: partial sums per thread")
    BLAS.setFixedChunks(4)
    XCTAssertEqual(run(threads: 1), run(threads: 2))
  }
}
