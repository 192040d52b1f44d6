// GEMM: the one place that calls `cblas_`; row-major single precision with transpose flags and
// leading dimensions, so no caller ever copies a matrix to transpose it. `gemmNaive` is the oracle
// the tests hold the fast path to.
//
// Threads: OpenBLAS always runs on one thread; `gemm` itself splits a product over the
// `KernelThreads.count` threads, each calling the one-thread sgemm on its own block:
//   - along M or N (row or column blocks of C, no sum crosses a block) when the output is wide;
//   - along K when the output is small and K long (the token-mixing weight gradients,
//     `[D_S, S]` from K = B·C): thread 0 accumulates its share straight into C (with beta), every
//     other thread writes its partial product to scratch, and the partials are added to C in
//     thread order afterwards, so the result depends on the thread count only, never on timing.
// One pool (the elementwise kernels' threads) runs everything: no OpenBLAS worker spins on a core
// while LayerNorm or GELU run, and a thin product no longer synchronises BLAS threads per K block.

import CBLAS
import Dispatch

/// Whether an operand is used as stored or transposed.
public enum Transpose { case none, transpose }

/// `C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C`, all row-major (OpenBLAS `sgemm`).
/// `beta = 0` overwrites C; `beta = 1` accumulates into it.
@inline(__always)
public func gemm(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
  b: UnsafePointer<Float>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  KernelProfile.measure("gemm \(transA == .none ? "N" : "T")\(transB == .none ? "N" : "T") \(m)x\(n)x\(k)", flops: 2 * Double(m) * Double(n) * Double(k)) {
    let threads = KernelThreads.count
    switch gemmSplit(m: m, n: n, k: k, threads: threads) {
    case .none:
      sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    case .rows:
      // C rows i0..<i1 = op(A) rows i0..<i1 · op(B)
      DispatchQueue.concurrentPerform(iterations: threads) { part in
        let rows = gemmBlock(part, of: threads, length: m)
        let aBlock = transA == .none ? a + rows.lowerBound * lda : a + rows.lowerBound
        sgemm(
          transA, transB, m: rows.count, n: n, k: k, alpha: alpha, a: aBlock, lda: lda, b: b, ldb: ldb,
          beta: beta, c: c + rows.lowerBound * ldc, ldc: ldc)
      }
    case .columns:
      // C columns j0..<j1 = op(A) · op(B) columns j0..<j1
      DispatchQueue.concurrentPerform(iterations: threads) { part in
        let columns = gemmBlock(part, of: threads, length: n)
        let bBlock = transB == .none ? b + columns.lowerBound : b + columns.lowerBound * ldb
        sgemm(
          transA, transB, m: m, n: columns.count, k: k, alpha: alpha, a: a, lda: lda, b: bBlock, ldb: ldb,
          beta: beta, c: c + columns.lowerBound, ldc: ldc)
      }
    case .depth:
      // C = beta·C + Σ_t alpha·op(A)[:, K_t]·op(B)[K_t, :]; partial t ≥ 1 in scratch [t-1][M, N]
      let partials = UnsafeMutablePointer<Float>.allocate(capacity: (threads - 1) * m * n)
      defer { partials.deallocate() }
      DispatchQueue.concurrentPerform(iterations: threads) { part in
        let depth = gemmBlock(part, of: threads, length: k)
        let aBlock = transA == .none ? a + depth.lowerBound : a + depth.lowerBound * lda
        let bBlock = transB == .none ? b + depth.lowerBound * ldb : b + depth.lowerBound
        if part == 0 {
          sgemm(
            transA, transB, m: m, n: n, k: depth.count, alpha: alpha, a: aBlock, lda: lda, b: bBlock, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
        } else {
          sgemm(
            transA, transB, m: m, n: n, k: depth.count, alpha: alpha, a: aBlock, lda: lda, b: bBlock, ldb: ldb,
            beta: 0, c: partials + (part - 1) * m * n, ldc: n)
        }
      }
      for part in 1..<threads {
        let partial = partials + (part - 1) * m * n
        for i in 0..<m { vadd(c + i * ldc, partial + i * n, n) }
      }
    }
  }
}

/// How `gemm` spreads one product over threads.
enum GemmSplit: Equatable { case none, rows, columns, depth }

/// Products below this many flops run on the calling thread.
let gemmParallelFlops = 1 << 23

/// The split of an `M×N·K` product over `threads`: none when small (or one thread); along the
/// larger of M and N when every thread gets at least 128 rows/columns of it; otherwise along K
/// when K is at least twice that larger dimension (a thin output from a long reduction).
func gemmSplit(m: Int, n: Int, k: Int, threads: Int) -> GemmSplit {
  if threads <= 1 || 2 * m * n * k < gemmParallelFlops { return .none }
  let wide = max(m, n)
  if wide >= 128 * threads { return m >= n ? .rows : .columns }
  if k >= 2 * wide && k >= 128 * threads { return .depth }
  return .none
}

/// Block `part` of `0..<length` split into `parts` contiguous blocks, boundaries on multiples of
/// 16 (full micro-kernel tiles) except the end.
@inline(__always)
func gemmBlock(_ part: Int, of parts: Int, length: Int) -> Range<Int> {
  func boundary(_ p: Int) -> Int { p == parts ? length : min(length, (p * length / parts + 8) / 16 * 16) }
  return boundary(part)..<boundary(part + 1)
}

/// One-thread OpenBLAS sgemm with `gemm`'s contract.
@inline(__always)
func sgemm(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float, a: UnsafePointer<Float>, lda: Int,
  b: UnsafePointer<Float>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  if m == 0 || n == 0 { return }
  cblas_sgemm(
    CblasRowMajor,
    transA == .none ? CblasNoTrans : CblasTrans,
    transB == .none ? CblasNoTrans : CblasTrans,
    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
    beta, c, blasint(ldc))
}

/// The same contract as `gemm`, computed with three loops in Double: the test oracle.
public func gemmNaive(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
  b: UnsafePointer<Float>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  for i in 0..<m {
    for j in 0..<n {
      var sum = 0.0
      for p in 0..<k {
        let av = transA == .none ? a[i * lda + p] : a[p * lda + i]
        let bv = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
        sum += Double(av) * Double(bv)
      }
      let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
      c[i * ldc + j] = Float(Double(alpha) * sum + old)
    }
  }
}

/// OpenBLAS thread control and identification.
public enum BLAS {
  /// Sets the number of threads the products (`gemm` splits them) and the elementwise kernels use
  /// for every later call; OpenBLAS itself stays on one thread.
  public static func setThreads(_ count: Int) {
    openblas_set_num_threads(1)
    KernelThreads.count = max(1, count)
  }

  /// The number of threads the products use.
  public static var threads: Int { KernelThreads.count }

  /// The kernel OpenBLAS selected for this CPU (e.g. "Haswell", "SkylakeX").
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// OpenBLAS's build configuration string.
  public static var config: String {
    guard let text = openblas_get_config() else { return "unknown" }
    return String(cString: text)
  }
}
