// GEMM: the one place that calls `cblas_`; row-major single precision with transpose flags and
// leading dimensions, so no caller ever copies a matrix to transpose it. `gemmNaive` is the oracle
// the tests hold the fast path to.

import CBLAS
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Whether an operand is used as stored or transposed.
public enum Transpose { case none, transpose }

/// `C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C`, all row-major (OpenBLAS `sgemm`).
/// `beta = 0` overwrites C; `beta = 1` accumulates into it. With `KernelThreads.fixedChunks` set
/// (`train --exact`), see `fixedChunkGemm`.
@inline(__always)
public func gemm(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
  b: UnsafePointer<Float>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  if let chunks = KernelThreads.fixedChunks {
    return fixedChunkGemm(
      transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
      chunks: chunks)
  }
  gemmCall(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
}

/// Products below this many flops are one call under `fixedChunkGemm`.
let fixedChunkGemmThreshold = 1 << 21

/// `gemm` with the same bits on any thread count. OpenBLAS's one-thread and threaded drivers give
/// different bits for the same product (measured here on shapes from 128x10x16 to 1024x512x128),
/// so OpenBLAS runs on one thread (`BLAS.setThreads`) and C is cut into `chunks` fixed blocks of
/// rows (or of columns, when there are more), one single-threaded call each, which the kernel
/// threads run in turn. The blocks depend on the shape alone, never on the thread count.
func fixedChunkGemm(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float, a: UnsafePointer<Float>, lda: Int,
  b: UnsafePointer<Float>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, chunks: Int
) {
  let splitRows = m >= n
  let extent = splitRows ? m : n
  let parts = 2 * m * n * k < fixedChunkGemmThreshold ? 1 : min(chunks, extent)
  let run = { (part: Int) in
    let block = chunkRange(part, of: parts, rows: extent)
    if block.isEmpty { return }
    let start = block.lowerBound
    if splitRows {
      gemmCall(
        transA, transB, m: block.count, n: n, k: k, alpha: alpha,
        a: transA == .none ? a + start * lda : a + start, lda: lda, b: b, ldb: ldb,
        beta: beta, c: c + start * ldc, ldc: ldc)
    } else {
      gemmCall(
        transA, transB, m: m, n: block.count, k: k, alpha: alpha, a: a, lda: lda,
        b: transB == .none ? b + start : b + start * ldb, ldb: ldb,
        beta: beta, c: c + start, ldc: ldc)
    }
  }
  let workers = min(KernelThreads.count, parts)
  if workers <= 1 {
    for part in 0..<parts { run(part) }
    return
  }
  withoutActuallyEscaping(run) { run in
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
      for part in stride(from: worker, to: parts, by: workers) { run(part) }
    }
  }
}

/// One `cblas_sgemm` call of `gemm`'s contract.
@inline(__always)
func gemmCall(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float, a: UnsafePointer<Float>, lda: Int,
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

/// `C[M×N] = op(A)[M×K] · op(B)[K×N]` (OpenBLAS `sgemm`, C overwritten), outside the kernel
/// profile: the portable int8 products multiply integers with it in K-blocks short enough to be
/// exact, and time the whole product themselves.
public func gemmUnprofiled(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
  c: UnsafeMutablePointer<Float>, ldc: Int
) {
  cblas_sgemm(
    CblasRowMajor,
    transA == .none ? CblasNoTrans : CblasTrans,
    transB == .none ? CblasNoTrans : CblasTrans,
    blasint(m), blasint(n), blasint(k), 1, a, blasint(lda), b, blasint(ldb), 0, c, blasint(ldc))
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
    if count > 1 { shortenIdleSpin() }
    openblas_set_num_threads(Int32(KernelThreads.fixedChunks == nil ? max(1, count) : 1))
    KernelThreads.count = max(1, count)
  }

  /// Fixes (`chunks`) or frees (nil) how products and elementwise kernels are split (`train
  /// --exact`): fixed, OpenBLAS runs on one thread and the kernel threads run a fixed number of
  /// chunks (`fixedChunkGemm`, `parallelRows`), so the bits do not depend on the thread count.
  public static func setFixedChunks(_ chunks: Int?) {
    guard KernelThreads.fixedChunks != chunks else { return }
    KernelThreads.fixedChunks = chunks
    openblas_set_num_threads(Int32(chunks == nil ? KernelThreads.count : 1))
  }

  /// The idle-thread timeout, as log2 of cycles, that `setThreads` gives OpenBLAS's threads
  /// unless OPENBLAS_THREAD_TIMEOUT is set.
  public static let idleSpinLog2Cycles = 4

  /// The timeout OpenBLAS's idle threads use (log2 cycles; OpenBLAS's own default is 28).
  public static var idleTimeoutLog2Cycles: Int {
    let value = Int(OpenBLASThreadServer.timeout?() ?? 0)
    return value > 0 ? min(max(value, 4), 30) : 28
  }

  private nonisolated(unsafe) static var spinShortened = false

  /// After each threaded product, OpenBLAS's worker threads poll for more work (yielding the
  /// core between polls) for 2^28 cycles, about 0.1 s, before they sleep. The elementwise kernels
  /// run right after the products on the same cores, so one of their threads shared its core with
  /// a polling worker: `cifar` on 2 threads spent 300-440 ms a step in them instead of 220-270.
  /// Unless the user set OPENBLAS_THREAD_TIMEOUT, the pool is restarted once with the shortest
  /// timeout: a worker sleeps when its part is done and the next product wakes it. Results do not
  /// change. The wake-ups have a cost, which on this VM outweighed the gain for the small `tiny`
  /// preset (about 8% slower; OPENBLAS_THREAD_TIMEOUT=28 keeps OpenBLAS's own behaviour).
  private static func shortenIdleSpin() {
    guard !spinShortened else { return }
    spinShortened = true
    guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil, getenv("GOTO_THREAD_TIMEOUT") == nil,
      let readEnvironment = OpenBLASThreadServer.readEnvironment,
      let shutdown = OpenBLASThreadServer.shutdown, let start = OpenBLASThreadServer.start
    else { return }
    setenv("OPENBLAS_THREAD_TIMEOUT", String(idleSpinLog2Cycles), 0)
    readEnvironment()
    _ = shutdown()
    _ = start()
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

/// OpenBLAS's thread-server calls, exported but not declared in cblas.h, found at run time: a
/// single-threaded OpenBLAS build has no thread server (nil then).
private enum OpenBLASThreadServer {
  typealias Call = @convention(c) () -> Int32
  /// re-reads the OPENBLAS_* environment
  static let readEnvironment: (@convention(c) () -> Void)? = symbol("openblas_read_env")
  /// the idle-thread timeout it read (log2 cycles, 0 when unset)
  static let timeout: Call? = symbol("openblas_thread_timeout")
  /// stops the pool; `start` starts it again, reading the timeout
  static let shutdown: Call? = symbol("blas_thread_shutdown_")
  static let start: Call? = symbol("blas_thread_init")

  private static func symbol<T>(_ name: String) -> T? {
    guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, name) else { return nil }
    return unsafeBitCast(address, to: T.self)
  }
}
