// GEMM: the one place that calls `cblas_`; row-major single precision with transpose flags and
// leading dimensions, so no caller ever copies a matrix to transpose it. `gemmNaive` is the oracle
// the tests hold the fast path to.

import CBLAS

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
  cblas_sgemm(
    CblasRowMajor,
    transA == .none ? CblasNoTrans : CblasTrans,
    transB == .none ? CblasNoTrans : CblasTrans,
    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
    beta, c, blasint(ldc))
  }
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
  /// Sets the number of threads OpenBLAS (and the elementwise kernels) use for every later call.
  public static func setThreads(_ count: Int) {
    openblas_set_num_threads(Int32(max(1, count)))
    KernelThreads.count = max(1, count)
  }

  /// The number of threads OpenBLAS currently uses.
  public static var threads: Int { Int(openblas_get_num_threads()) }

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
