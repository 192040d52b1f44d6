// The precision of the matrix products: a type, not branches. Every layer multiplies through a
// `MatrixProducts` with the contract of `gemm` (row-major, transpose flags, leading dimensions,
// fp32 operands in and fp32 C out, beta 0 overwrites, beta 1 accumulates):
//   FP32Products  calls `gemm` (OpenBLAS sgemm): the default, bit-for-bit the fp32 trainer.
//   BF16Products  mixed precision: operands rounded to bfloat16, products accumulated and stored
//                 in fp32 by oneDNN (`matmulBF16`). The weights come from a bf16 copy of the whole
//                 parameter buffer made once per forward (`prepare`), the fp32 master parameters,
//                 gradients and optimizer state stay as they are; activations are rounded into
//                 a compact bf16 scratch as each product reads them, unless the layer that
//                 writes them stored them as operands (below).
// Everything outside the products (LayerNorm, GELU, softmax, the loss, the optimizer) computes in
// fp32. An MLP's hidden layer (`hiddenForward`/`hiddenBackward`) is the one place where bf16 also
// stores a value outside the products: its pre-activation and the gradients at it stay bf16, and
// GELU runs on them in fp32 arithmetic inside oneDNN (see `BF16Products.hiddenForward`).
//
// Operand storage. An activation that only products read (the input and hidden activation of an
// MLP) can be stored once in the products' number format by the kernel that computes it, and
// every product that reads it then reads that copy: `operandStorage(for:)` gives the buffer
// (nil in fp32: the kernel writes fp32 as before). Saved activations live until the next
// `prepare`; a gradient read by two products lives for the scope of `withOperand`. The fp32
// buffer is then never written, so its pages are never touched. A bf16 product is the same
// whether its operand was rounded by the kernel that wrote it or here, bit for bit.

import CMixerVector

/// Storage standing for an fp32 operand in a precision's own number format (`operandStorage`).
public struct OperandStorage {
  public let bytes: UnsafeMutableRawPointer
  public let rounding: OperandRounding

  public init(bytes: UnsafeMutableRawPointer, rounding: OperandRounding) {
    (self.bytes, self.rounding) = (bytes, rounding)
  }

  init(bfloat16 bits: UnsafeMutablePointer<UInt16>) { self.init(bytes: UnsafeMutableRawPointer(bits), rounding: .bfloat16) }

  /// The storage as bfloat16 bit patterns, for the kernels that write bf16 operands directly.
  public var bfloat16: UnsafeMutablePointer<UInt16> {
    precondition(rounding == .bfloat16, "operand storage is not bfloat16")
    return bytes.assumingMemoryBound(to: UInt16.self)
  }

  /// Writes `x[0..<count]` rounded into the storage.
  public func store(_ x: UnsafePointer<Float>, count: Int) {
    switch rounding {
    case .none: bytes.assumingMemoryBound(to: Float.self).update(from: x, count: count)
    case .bfloat16: convertToBF16Parallel(x, bfloat16, count: count)
    case .affineU8: preconditionFailure("u8 operands are quantized with a calibrated scale, not stored by training")
    }
  }
}

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
  /// Storage in this precision's operand format that stands for `x[0..<count]` in every product
  /// reading x until the next `prepare` (or, when `scoped`, until `releaseOperand(x)`): the
  /// caller writes x's values rounded into it (`OperandStorage.store`, or a kernel that writes
  /// that format directly) instead of writing x, and nothing but products reads x. nil means
  /// this precision reads fp32: write x as usual.
  func operandStorage(for x: UnsafeMutablePointer<Float>, count: Int, scoped: Bool) -> OperandStorage?
  /// Ends the scoped storage of x.
  func releaseOperand(_ x: UnsafeMutablePointer<Float>)

  /// The hidden layer of an MLP in training, `act = gelu(op(A)·op(B) + bias)` `[m, n]` (the
  /// product's arguments as in `gemm`, the bias along `axis`): keeps in `pre` `[m, n]`, or in
  /// storage standing for it, what `hiddenBackward` needs, and leaves act where the products that
  /// read it find it (act itself, or its operand storage). With `dropMask` act is then multiplied
  /// by it (dropout).
  func hiddenForward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    bias: UnsafePointer<Float>, axis: BiasAxis, kind: GELUKind,
    pre: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, dropMask: UnsafePointer<Float>?)

  /// The backward of `hiddenForward` (same `pre`, `axis`, `kind`, `dropMask`): the gradient at
  /// act is the product `op(A)·op(B)` `[m, n]`, written to `gradient` and multiplied by dropMask;
  /// it becomes the gradient at the pre-activation, its sums along `axis` are added into `dbias`,
  /// and `body` runs the products that read it (from gradient, or its operand storage).
  func hiddenBackward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    gradient: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>, axis: BiasAxis, kind: GELUKind, dropMask: UnsafePointer<Float>?,
    _ body: () -> Void)
}

extension MatrixProducts {
  public func hiddenForward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    bias: UnsafePointer<Float>, axis: BiasAxis, kind: GELUKind,
    pre: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, dropMask: UnsafePointer<Float>?
  ) {
    hiddenForwardInFP32(
      transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: bias, axis: axis, kind: kind,
      pre: pre, act: act, dropMask: dropMask)
  }

  public func hiddenBackward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    gradient: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>, axis: BiasAxis, kind: GELUKind, dropMask: UnsafePointer<Float>?,
    _ body: () -> Void
  ) {
    hiddenBackwardInFP32(
      transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, gradient: gradient, pre: pre,
      dbias: dbias, axis: axis, kind: kind, dropMask: dropMask, body)
  }

  /// `hiddenForward` with the pre-activation in fp32: the product into pre, then one kernel adds
  /// the bias, writes act (as an operand, unless dropout multiplies it after) and overwrites pre
  /// with gelu′, all the backward needs.
  func hiddenForwardInFP32(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    bias: UnsafePointer<Float>, axis: BiasAxis, kind: GELUKind,
    pre: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, dropMask: UnsafePointer<Float>?
  ) {
    let count = m * n
    gemm(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: pre, ldc: n)
    biasGELUForwardKeepingDerivative(
      act: act, actBF16: dropMask == nil ? operandStorage(for: act, count: count, scoped: false)?.bfloat16 : nil,
      pre: pre, bias: bias, rows: m, cols: n, axis: axis, kind: kind)
    if let dropMask {
      multiplyElementwise(act, by: dropMask, count: count)
      shareOperand(act, count: count)
    }
  }

  /// `hiddenBackward` from the fp32 gelu′ that `hiddenForwardInFP32` kept in pre.
  func hiddenBackwardInFP32(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    gradient: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>, axis: BiasAxis, kind: GELUKind, dropMask: UnsafePointer<Float>?,
    _ body: () -> Void
  ) {
    let count = m * n
    gemm(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: gradient, ldc: n)
    if let dropMask { multiplyElementwise(gradient, by: dropMask, count: count) }
    withOperand(gradient, count: count) { storage in
      geluBackwardFromDerivative(
        dinp: gradient, dinpBF16: storage?.bfloat16, dbias: dbias, dout: gradient, derivative: pre,
        rows: m, cols: n, axis: axis)
      body()
    }
  }
}

/// x[i] *= mask[i] (dropout's mask on a hidden activation or its gradient).
func multiplyElementwise(_ x: UnsafeMutablePointer<Float>, by mask: UnsafePointer<Float>, count: Int) {
  for i in 0..<count { x[i] *= mask[i] }
}

extension MatrixProducts {
  /// Rounds `x` (already written, and not written again until the next `prepare`) once for
  /// every product that reads it from now on; x itself stays for the kernels that read fp32.
  public func shareOperand(_ x: UnsafeMutablePointer<Float>, count: Int) {
    operandStorage(for: x, count: count, scoped: false)?.store(x, count: count)
  }

  /// Runs `body` with scoped operand storage for x (nil in fp32), released after it.
  public func withOperand<R>(
    _ x: UnsafeMutablePointer<Float>, count: Int, _ body: (OperandStorage?) -> R
  ) -> R {
    let storage = operandStorage(for: x, count: count, scoped: true)
    defer { if storage != nil { releaseOperand(x) } }
    return body(storage)
  }

  /// `withOperand` for an x already written in fp32 (rounded once, for the products in body).
  public func sharingOperand<R>(_ x: UnsafeMutablePointer<Float>, count: Int, _ body: () -> R) -> R {
    withOperand(x, count: count) { storage in
      storage?.store(x, count: count)
      return body()
    }
  }
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

/// fp32 products on OpenBLAS: `gemm` itself.
public final class FP32Products: MatrixProducts, @unchecked Sendable {
  /// One instance serves every model (it holds no state).
  public static let shared = FP32Products()
  public init() {}
  public var precision: Precision { .fp32 }
  public func prepare(weights: UnsafePointer<Float>, count: Int) {}
  public func operandStorage(for x: UnsafeMutablePointer<Float>, count: Int, scoped: Bool) -> OperandStorage? { nil }
  public func releaseOperand(_ x: UnsafeMutablePointer<Float>) {}

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
  /// Operand storage handed out (`operandStorage`), latest last, and the buffers behind it:
  /// saved ones are reused by registration order from one forward to the next.
  private var stored: [(x: UnsafePointer<Float>, count: Int, bits: UnsafeMutablePointer<UInt16>, scoped: Bool)] = []
  private var savedBuffers: [GrowableBF16] = [], scopedBuffers: [GrowableBF16] = []
  private var savedInUse = 0
  /// Off: every product rounds its own operands (for tests: the results must not change).
  var storesOperands: Bool
  /// On (with `storesOperands`): an MLP's hidden layer without dropout keeps its pre-activation
  /// in bf16, written by the product with the bias added, and runs GELU and its backward on bf16
  /// values through oneDNN (`hiddenForward`). Off: the fp32 pre-activation and GELU kernels.
  var keepsHiddenLayersInBF16: Bool

  /// The products training runs (`Precision.bf16.makeProducts()`).
  public convenience init() { self.init(storesOperands: true, keepsHiddenLayersInBF16: true) }

  /// For tests (`@testable`): products that round every operand themselves, or keep the hidden
  /// layers in fp32; the results must not change.
  init(storesOperands: Bool, keepsHiddenLayersInBF16: Bool) {
    self.storesOperands = storesOperands
    self.keepsHiddenLayersInBF16 = keepsHiddenLayersInBF16
  }

  public func prepare(weights: UnsafePointer<Float>, count: Int) {
    mirror.reserve(count)
    convertToBF16Parallel(weights, mirror.pointer, count: count)
    self.weights = weights
    weightCount = count
    stored.removeAll(keepingCapacity: true)
    savedInUse = 0
  }

  public func operandStorage(for x: UnsafeMutablePointer<Float>, count: Int, scoped: Bool) -> OperandStorage? {
    bfloat16Storage(for: x, count: count, scoped: scoped).map { OperandStorage(bfloat16: $0) }
  }

  private func bfloat16Storage(for x: UnsafeMutablePointer<Float>, count: Int, scoped: Bool) -> UnsafeMutablePointer<UInt16>? {
    guard storesOperands else { return nil }
    let buffer: GrowableBF16
    if scoped {
      let depth = stored.lazy.filter(\.scoped).count
      if depth == scopedBuffers.count { scopedBuffers.append(GrowableBF16()) }
      buffer = scopedBuffers[depth]
    } else {
      if savedInUse == savedBuffers.count { savedBuffers.append(GrowableBF16()) }
      buffer = savedBuffers[savedInUse]
      savedInUse += 1
    }
    buffer.reserve(count)
    stored.append((UnsafePointer(x), count, buffer.pointer, scoped))
    return buffer.pointer
  }

  public func releaseOperand(_ x: UnsafeMutablePointer<Float>) {
    guard let i = stored.lastIndex(where: { $0.scoped && $0.x == UnsafePointer(x) }) else {
      preconditionFailure("releaseOperand: no scoped operand storage for this buffer")
    }
    stored.remove(at: i)
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

  // The hidden layer in bf16, as mixed precision is done elsewhere (PyTorch's autocast keeps a
  // Linear's output, GELU's input and their gradients in bf16): the product writes the
  // pre-activation with its bias added, rounded to bf16 (half the bytes of fp32, and the thin
  // token-mixing products are bound by writing their output); oneDNN's GELU reads it and writes
  // act straight into its operand storage. The backward's product writes the gradient at act in
  // bf16 into the operand storage of `gradient`, oneDNN's GELU backward turns it in place into
  // the gradient at the pre-activation (gelu′ recomputed from the kept bf16 pre-activation), and
  // the bias gradient sums those bf16 values in fp32. Dropout, whose mask multiplies act after
  // GELU, takes the fp32 path.
  public func hiddenForward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    bias: UnsafePointer<Float>, axis: BiasAxis, kind: GELUKind,
    pre: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>, dropMask: UnsafePointer<Float>?
  ) {
    guard storesOperands, keepsHiddenLayersInBF16, dropMask == nil,
      let preBits = bfloat16Storage(for: pre, count: m * n, scoped: false),
      let actBits = bfloat16Storage(for: act, count: m * n, scoped: false)
    else {
      return hiddenForwardInFP32(
        transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: bias, axis: axis, kind: kind,
        pre: pre, act: act, dropMask: dropMask)
    }
    let (aBits, aLead) = operand(a, rows: transA == .none ? m : k, cols: transA == .none ? k : m, ld: lda, into: scratchA)
    let (bBits, bLead) = operand(b, rows: transB == .none ? k : n, cols: transB == .none ? n : k, ld: ldb, into: scratchB)
    // oneDNN 2.6 adds a per-column bias in its AMX kernel but falls back to its reference
    // implementation (thousands of times slower) for a per-row one: that one is added after
    matmulBF16(
      transA, transB, m: m, n: n, k: k, a: aBits, lda: aLead, b: bBits, ldb: bLead,
      bias: axis == .columns ? bias : nil, biasAxis: axis, c: preBits, ldc: n)
    if axis == .rows { addRowBiasBF16(preBits, bias: bias, rows: m, cols: n) }
    geluForwardBF16(pre: preBits, act: actBits, count: m * n, kind: kind)
  }

  public func hiddenBackward(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    gradient: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>, axis: BiasAxis, kind: GELUKind, dropMask: UnsafePointer<Float>?,
    _ body: () -> Void
  ) {
    // the forward kept pre in bf16 exactly when it stored bf16 bits for it
    guard dropMask == nil, let preBits = stored.last(where: { !$0.scoped && $0.x == UnsafePointer(pre) })?.bits else {
      return hiddenBackwardInFP32(
        transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, gradient: gradient, pre: pre,
        dbias: dbias, axis: axis, kind: kind, dropMask: dropMask, body)
    }
    let (aBits, aLead) = operand(a, rows: transA == .none ? m : k, cols: transA == .none ? k : m, ld: lda, into: scratchA)
    let (bBits, bLead) = operand(b, rows: transB == .none ? k : n, cols: transB == .none ? n : k, ld: ldb, into: scratchB)
    withOperand(gradient, count: m * n) { storage in
      let gradientBits = storage!.bfloat16
      matmulBF16(
        transA, transB, m: m, n: n, k: k, a: aBits, lda: aLead, b: bBits, ldb: bLead, bias: nil, biasAxis: axis,
        c: gradientBits, ldc: n)
      geluBackwardBF16(pre: preBits, gradient: gradientBits, count: m * n, kind: kind)
      biasBackwardBF16(dbias: dbias, dout: gradientBits, rows: m, cols: n, axis: axis)
      body()
    }
  }

  /// The bf16 operand for `x` (`rows` rows of `cols` values, row stride `ld`): the prepared
  /// weights' copy when `x` lies inside them, else `x` rounded into `scratch` with stride `cols`.
  private func operand(
    _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into scratch: GrowableBF16
  ) -> (UnsafePointer<UInt16>, Int) {
    let end = x + ((rows - 1) * ld + cols)
    if let weights, x >= weights, end <= weights + weightCount {
      return (UnsafePointer(mirror.pointer + (x - weights)), ld)
    }
    for entry in stored.reversed() where x >= entry.x && end <= entry.x + entry.count {
      return (UnsafePointer(entry.bits + (x - entry.x)), ld)
    }
    scratch.reserve(rows * cols)
    let dst = scratch.pointer
    if ld == cols {
      convertToBF16Parallel(x, dst, count: rows * cols)
    } else {
      KernelProfile.measure("bf16 round strided operand") {
        for r in 0..<rows { mx_to_bf16(dst + r * cols, x + r * ld, cols) }
      }
    }
    return (UnsafePointer(dst), cols)
  }
}

/// A bf16 buffer that only grows (allocated on the first products of a shape, reused after),
/// starting on a cache line: oneDNN's AMX kernels read and write rows of whole cache lines, and
/// on 16-byte-aligned buffers (malloc's) the same products ran up to 2x slower.
final class GrowableBF16 {
  private(set) var pointer = GrowableBF16.allocate(1)
  private var capacity = 1

  deinit { pointer.deallocate() }

  func reserve(_ count: Int) {
    guard count > capacity else { return }
    pointer.deallocate()
    pointer = GrowableBF16.allocate(count)
    capacity = count
  }

  private static func allocate(_ count: Int) -> UnsafeMutablePointer<UInt16> {
    UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<UInt16>.stride, alignment: 64)
      .bindMemory(to: UInt16.self, capacity: count)
  }
}

/// `convertToBF16` split over the kernel threads when large.
func convertToBF16Parallel(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
  KernelProfile.measure("bf16 round") {
    parallelElements(count) { range in
      mx_to_bf16(dst + range.lowerBound, src + range.lowerBound, range.count)
    }
  }
}
