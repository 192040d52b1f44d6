// The precision of the matrix products: a type, not branches. Every layer multiplies through a
// `MatrixProducts` with the contract of `gemm` (row-major, transpose flags, leading dimensions,
// fp32 operands in and fp32 C out, beta 0 overwrites, beta 1 accumulates):
//   FP32Products  calls `gemm` (OpenBLAS sgemm): the default, bit-for-bit the fp32 trainer.
//   BF16Products  mixed precision: operands rounded to bfloat16, products accumulated and stored
//                 in fp32 by oneDNN (`matmulBF16`). The weights come from a bf16 copy of the whole
//                 parameter buffer made once per forward (`prepare`), the fp32 master parameters,
//                 gradients and optimizer state stay as they are; activations are rounded into
//                 a compact bf16 scratch as each product reads them.
// Everything outside the products (LayerNorm, GELU, softmax, the loss, the optimizer) stays fp32.

/// Matrix products in one precision, with the contract of `gemm`.
public protocol MatrixProducts: AnyObject {
  /// The number format of the operands.
  var precision: Precision { get }
  /// Called before a forward pass with the parameter buffer whose values the products read as
  /// weights until the next call (a bf16 implementation rounds them here, once).
  func prepare(weights: UnsafePointer<Float>, count: Int)
  /// `C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C`, row-major, C in fp32.
  func multiply(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int)
}

extension MatrixProducts {
  /// `multiply` with `gemm`'s argument labels and default alpha, so call sites read alike.
  @inline(__always)
  public func gemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    multiply(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
  }
}

extension Precision {
  /// The products of this precision for training. Throws a one-line error when the CPU lacks the
  /// instructions (never an emulation) or the precision does not train (int8 is inference only).
  public func makeProducts() throws -> any MatrixProducts {
    try requireTraining()
    switch self {
    case .fp32: return FP32Products.shared
    case .bf16: return BF16Products()
    case .int8: fatalError("unreachable: requireTraining throws for int8")
    }
  }

  /// Throws the one-line error of `makeProducts` without making them (for a config's check).
  public func requireTraining() throws {
    if self == .int8 { throw DNNLError("--precision int8 is for inference only; train with fp32 or bf16") }
    try DNNL.require(self)
  }
}

/// fp32 products on OpenBLAS: `gemm` itself.
public final class FP32Products: MatrixProducts, @unchecked Sendable {
  /// One instance serves every model (it holds no state).
  public static let shared = FP32Products()
  public init() {}
  public var precision: Precision { .fp32 }
  public func prepare(weights: UnsafePointer<Float>, count: Int) {}

  @inline(__always)
  public func multiply(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    MixerKernels.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
  }
}

/// Mixed-precision products: bf16 operands, fp32 accumulation and output, on oneDNN.
/// Not thread-safe: one instance per model, used by one thread at a time (as the model is).
public final class BF16Products: MatrixProducts, @unchecked Sendable {
  public var precision: Precision { .bf16 }

  /// The bf16 copy of the prepared weights `[count]` and the fp32 buffer it mirrors.
  private let mirror = GrowableBF16()
  private var weights: UnsafePointer<Float>?
  private var weightCount = 0
  /// Compact bf16 copies of the activation operands A and B of the current product.
  private let scratchA = GrowableBF16(), scratchB = GrowableBF16()

  public init() {}

  public func prepare(weights: UnsafePointer<Float>, count: Int) {
    mirror.reserve(count)
    convertToBF16Parallel(weights, mirror.pointer, count: count)
    self.weights = weights
    weightCount = count
  }

  public func multiply(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    // op(A) is M×K: stored M rows of K, or K rows of M when transposed; likewise B
    let (aBits, aLead) = operand(a, rows: transA == .none ? m : k, cols: transA == .none ? k : m, ld: lda, into: scratchA)
    let (bBits, bLead) = operand(b, rows: transB == .none ? k : n, cols: transB == .none ? n : k, ld: ldb, into: scratchB)
    matmulBF16(
      transA, transB, m: m, n: n, k: k, alpha: alpha, a: aBits, lda: aLead, b: bBits, ldb: bLead, beta: beta,
      c: c, ldc: ldc)
  }

  /// The bf16 operand for `x` (`rows` rows of `cols` values, row stride `ld`): the prepared
  /// weights' copy when `x` lies inside them, else `x` rounded into `scratch` with stride `cols`.
  private func operand(
    _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into scratch: GrowableBF16
  ) -> (UnsafePointer<UInt16>, Int) {
    if let weights, x >= weights, x + ((rows - 1) * ld + cols) <= weights + weightCount {
      return (UnsafePointer(mirror.pointer + (x - weights)), ld)
    }
    scratch.reserve(rows * cols)
    let dst = scratch.pointer
    if ld == cols {
      convertToBF16Parallel(x, dst, count: rows * cols)
    } else {
      KernelProfile.measure("bf16 round strided operand") {
        for r in 0..<rows { convertToBF16(x + r * ld, dst + r * cols, count: cols) }
      }
    }
    return (UnsafePointer(dst), cols)
  }
}

/// A bf16 buffer that only grows (allocated on the first products of a shape, reused after).
final class GrowableBF16 {
  private(set) var pointer = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
  private var capacity = 1

  deinit { pointer.deallocate() }

  func reserve(_ count: Int) {
    guard count > capacity else { return }
    pointer.deallocate()
    pointer = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
    capacity = count
  }
}

/// `convertToBF16` split over the kernel threads when large.
func convertToBF16Parallel(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
  KernelProfile.measure("bf16 round") {
    let chunk = 4096
    let chunks = (count + chunk - 1) / chunk
    parallelRows(chunks, elementsPerRow: chunk) { _, range in
      let start = range.lowerBound * chunk, end = min(count, range.upperBound * chunk)
      if end > start { convertToBF16(src + start, dst + start, count: end - start) }
    }
  }
}
