// gemm (OpenBLAS) against gemmNaive (three loops in Double): every transpose pair, odd sizes,
// padded leading dimensions, alpha ≠ 1, beta 0 (overwrite) and 1 (accumulate).

import Foundation
import MixerKernels
import MixerTestSupport
import XCTest

final class GemmTests: XCTestCase {
  func testMatchesNaiveForEveryTransposeAndBeta() {
    var random = TestRandom(seed: 1)
    // (M, N, K): a tiny odd case and one large enough for OpenBLAS's blocked kernels.
    for (m, n, k) in [(5, 7, 9), (3, 1, 4), (33, 47, 65)] {
      for transA in [Transpose.none, .transpose] {
        for transB in [Transpose.none, .transpose] {
          for beta: Float in [0, 1] {
            // op(A) is M×K: stored [M, K] or, transposed, [K, M]; every row padded past its
            // length so lda > cols. Likewise B (op(B) is K×N) and C `[M, N]`.
            let (aRows, aCols) = transA == .none ? (m, k) : (k, m)
            let (bRows, bCols) = transB == .none ? (k, n) : (n, k)
            let lda = aCols + 3
            let ldb = bCols + 2
            let ldc = n + 5
            let a = random.floats(aRows * lda, in: -1...1)
            let b = random.floats(bRows * ldb, in: -1...1)
            var cFast = random.floats(m * ldc, in: -1...1)
            if beta == 0 {
              // beta = 0 must overwrite: C's old values (NaN here) may not leak into the result.
              for i in 0..<m { for j in 0..<n { cFast[i * ldc + j] = .nan } }
            }
            var cNaive = cFast
            let alpha: Float = -1.5
            gemm(
              transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: &cFast, ldc: ldc)
            gemmNaive(
              transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
              beta: beta, c: &cNaive, ldc: ldc)
            // The padding of C is compared too: neither may write past column N.
            assertClose(
              cFast, cNaive, relative: 1e-5, absolute: 1e-5 * Double(k),
              "gemm \(transA)/\(transB) M\(m) N\(n) K\(k) beta \(beta)")
          }
        }
      }
    }
  }

  /// With several threads, OpenBLAS's idle workers get the short timeout (unless the user set
  /// one), and the restarted pool still computes products on both threads correctly.
  func testSeveralThreadsShortenTheIdleTimeoutAndStillMultiply() throws {
    let userValue = ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"].flatMap { Int($0) }
    let before = BLAS.threads
    defer { BLAS.setThreads(before) }
    BLAS.setThreads(2)
    XCTAssertEqual(BLAS.threads, 2)
    XCTAssertEqual(BLAS.idleTimeoutLog2Cycles, userValue.map { min(max($0, 4), 30) } ?? BLAS.idleSpinLog2Cycles)
    // large enough that OpenBLAS splits it over both threads
    var random = TestRandom(seed: 3)
    let (m, n, k) = (256, 192, 128)
    let a = random.floats(m * k, in: -1...1), b = random.floats(k * n, in: -1...1)
    var fast = [Float](repeating: .nan, count: m * n), naive = fast
    for _ in 0..<3 {  // the first call after the restart wakes the new workers
      gemm(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 0, c: &fast, ldc: n)
    }
    gemmNaive(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 0, c: &naive, ldc: n)
    assertClose(fast, naive, relative: 1e-5, absolute: 1e-5 * Double(k), "gemm on 2 threads after the restart")
  }

  /// gemmNaive against a product written out by hand, so the oracle's indexing is checked too.
  func testNaiveOnAKnownProduct() {
    // A = [[1, 2, 3], [4, 5, 6]] (2×3), B = [[1, 0], [0, 1], [1, 1]] (3×2):
    // A·B = [[4, 5], [10, 11]].
    let a: [Float] = [1, 2, 3, 4, 5, 6]
    let b: [Float] = [1, 0, 0, 1, 1, 1]
    // Aᵀ stored [3, 2] and Bᵀ stored [2, 3].
    let aT: [Float] = [1, 4, 2, 5, 3, 6]
    let bT: [Float] = [1, 0, 1, 0, 1, 1]
    let expected: [Double] = [4, 5, 10, 11]
    let cases: [(Transpose, [Float], Int, Transpose, [Float], Int)] = [
      (.none, a, 3, .none, b, 2), (.transpose, aT, 2, .none, b, 2),
      (.none, a, 3, .transpose, bT, 3), (.transpose, aT, 2, .transpose, bT, 3),
    ]
    for (transA, aStored, lda, transB, bStored, ldb) in cases {
      for oracle in [true, false] {
        var c = [Float](repeating: 1, count: 4)
        if oracle {
          gemmNaive(
            transA, transB, m: 2, n: 2, k: 3, alpha: 2, a: aStored, lda: lda, b: bStored,
            ldb: ldb, beta: 1, c: &c, ldc: 2)
        } else {
          gemm(
            transA, transB, m: 2, n: 2, k: 3, alpha: 2, a: aStored, lda: lda, b: bStored,
            ldb: ldb, beta: 1, c: &c, ldc: 2)
        }
        assertClose(
          c, expected.map { 2 * $0 + 1 }, relative: 1e-6, absolute: 0,
          "\(oracle ? "gemmNaive" : "gemm") \(transA)/\(transB)")
      }
    }
  }
}
