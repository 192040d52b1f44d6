// oneDNN: the one place that calls `dnnl_`. The low-precision matrix products (bfloat16 operands
// with fp32 accumulation and output; 8-bit integer GEMM with 32-bit accumulation) behind Swift
// functions, with the same row-major, transpose-flag contract as `gemm` in Gemm.swift. The
// precisions built on them (what each needs of the CPU, its training products, its inference
// kernels) are in Precision.swift, the kernels in MatrixProducts.swift and InferenceKernels.swift.
//
// A bf16 product is a oneDNN matmul primitive; creating one costs far more than running it on our
// shapes, so each (shape, transposes, leading dimensions, alpha, beta) is created once and cached,
// and every call only swaps the data pointers. oneDNN runs its kernels on OpenMP threads
// (`DNNL.setThreads`); OpenBLAS has its own pool (`BLAS.setThreads`).

import CDNNL
import Foundation

/// A oneDNN call that failed, or a CPU that lacks the instructions a precision needs.
public struct DNNLError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

public enum DNNL {
  /// oneDNN's version, e.g. "2.6.3".
  public static var version: String {
    guard let v = dnnl_version()?.pointee else { return "unknown" }
    return "\(v.major).\(v.minor).\(v.patch)"
  }

  /// The instruction set oneDNN dispatches to on this CPU (after `DNNL_MAX_CPU_ISA`, if set).
  public static var effectiveISA: String {
    let isa = dnnl_get_effective_cpu_isa()
    let names: [(dnnl_cpu_isa_t, String)] = [
      (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
      (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
      (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
      (dnnl_cpu_isa_sse41, "sse41"),
    ]
    return names.first { has(isa, $0.0) }?.1 ?? "generic"
  }

  private static func has(_ isa: dnnl_cpu_isa_t, _ needed: dnnl_cpu_isa_t) -> Bool {
    isa.rawValue & needed.rawValue == needed.rawValue
  }

  /// The instruction sets precisions ask for (`PrecisionFormat.hasNativeKernels`), as oneDNN
  /// names them.
  public enum ISA: Sendable {
    case avx512CoreBF16, avx512CoreVNNI, avx2VNNI
  }

  /// Whether oneDNN dispatches to `needed` (or a superset) on this CPU.
  public static func cpuHas(_ needed: ISA) -> Bool {
    let flag: dnnl_cpu_isa_t
    switch needed {
    case .avx512CoreBF16: flag = dnnl_cpu_isa_avx512_core_bf16
    case .avx512CoreVNNI: flag = dnnl_cpu_isa_avx512_core_vnni
    case .avx2VNNI: flag = dnnl_cpu_isa_avx2_vnni
    }
    return has(dnnl_get_effective_cpu_isa(), flag)
  }

  /// Off: every product takes oneDNN's kernels where the CPU has them (tests turn it on to
  /// check the portable kernels on such CPUs too).
  nonisolated(unsafe) public static var forcePortable = false

  /// Sets the number of OpenMP threads oneDNN's kernels use from now on.
  public static func setThreads(_ count: Int) { omp_set_num_threads(Int32(max(1, count))) }

  /// The number of OpenMP threads oneDNN's kernels use.
  public static var threads: Int { Int(omp_get_max_threads()) }

  /// Runs `body(t)` for t in 0..<threads on OpenMP's team, the threads oneDNN's kernels run on,
  /// and returns when all have finished (a smaller team, e.g. when nested, runs several each).
  /// Elementwise kernels between oneDNN products run here: the team's threads wait for work by
  /// spinning a while after each product, so a second pool (Dispatch) would compete with them.
  public static func parallel(threads: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
      var context = (threads, body)
      withUnsafeMutablePointer(to: &context) { pointer in
        GOMP_parallel(
          { raw in
            let context = raw!.assumingMemoryBound(to: (Int, (Int) -> Void).self).pointee
            for t in stride(from: Int(omp_get_thread_num()), to: context.0, by: Int(omp_get_num_threads())) {
              context.1(t)
            }
          }, pointer, UInt32(threads), 0)
      }
    }
  }

  /// Makes oneDNN use the rank's thread count (`KernelThreads.count`, which `BLAS.setThreads`
  /// sets): oneDNN's OpenMP threads and OpenBLAS's pool then never run at the same time and
  /// together never exceed the rank's cores, since every product runs on one or the other.
  /// (OpenMP's thread count belongs to the calling thread, so this is checked on every call.)
  static func matchThreads() {
    let wanted = Int32(KernelThreads.count)
    if omp_get_max_threads() != wanted { omp_set_num_threads(wanted) }
  }

  /// Serialises the bf16 products of threads sharing the process (in-process ranks): the cached
  /// primitives' memory objects and the one stream are not thread-safe.
  static let lock = NSLock()

  static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) {
    guard status != dnnl_success else { return }
    fatalError("oneDNN \(what()) failed with status \(status.rawValue)")
  }

  // One CPU engine and one in-order stream for the process.
  nonisolated(unsafe) static let engine: dnnl_engine_t = {
    var engine: dnnl_engine_t?
    check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine_create")
    return engine!
  }()
  nonisolated(unsafe) static let stream: dnnl_stream_t = {
    var stream: dnnl_stream_t?
    check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue), "stream_create")
    return stream!
  }()
}

// MARK: - bf16 matrix product

private struct MatmulKey: Hashable {
  let transA: Bool, transB: Bool
  let m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
  let alpha: Float, beta: Float
  /// C in bf16 instead of fp32
  var bf16Output = false
  /// an fp32 bias added to C: one per row (`[M, 1]`) or one per column (`[1, N]`), or none
  var bias: BiasAxis? = nil
}

/// A created matmul primitive with its memory objects (their data handles set per call).
private final class MatmulPrimitive {
  let primitive: dnnl_primitive_t
  let a: dnnl_memory_t, b: dnnl_memory_t, c: dnnl_memory_t, bias: dnnl_memory_t?
  /// The execution arguments (the memory objects never change, only their data handles).
  var args: [dnnl_exec_arg_t] = []

  init(_ key: MatmulKey) {
    func desc(rows: Int, cols: Int, ld: Int, transposed: Bool, type: dnnl_data_type_t) -> dnnl_memory_desc_t {
      var md = dnnl_memory_desc_t()
      // op(X)[i][j] lives at i*ld + j as stored, or at j*ld + i when X is stored transposed
      var dims: dnnl_dims_t = (dnnl_dim_t(rows), dnnl_dim_t(cols), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
      var strides: dnnl_dims_t = (
        dnnl_dim_t(transposed ? 1 : ld), dnnl_dim_t(transposed ? ld : 1), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
      )
      let status = withUnsafePointer(to: &dims) { d in
        withUnsafePointer(to: &strides) { s in
          d.withMemoryRebound(to: dnnl_dim_t.self, capacity: 12) { dp in
            s.withMemoryRebound(to: dnnl_dim_t.self, capacity: 12) { sp in
              dnnl_memory_desc_init_by_strides(&md, 2, dp, type, sp)
            }
          }
        }
      }
      DNNL.check(status, "memory_desc_init_by_strides")
      return md
    }
    var aDesc = desc(rows: key.m, cols: key.k, ld: key.lda, transposed: key.transA, type: dnnl_bf16)
    var bDesc = desc(rows: key.k, cols: key.n, ld: key.ldb, transposed: key.transB, type: dnnl_bf16)
    var cDesc = desc(rows: key.m, cols: key.n, ld: key.ldc, transposed: false, type: key.bf16Output ? dnnl_bf16 : dnnl_f32)
    var biasDesc = key.bias.map {
      $0 == .rows
        ? desc(rows: key.m, cols: 1, ld: 1, transposed: false, type: dnnl_f32)
        : desc(rows: 1, cols: key.n, ld: key.n, transposed: false, type: dnnl_f32)
    }
    var op = dnnl_matmul_desc_t()
    let initStatus: dnnl_status_t
    if biasDesc != nil {
      initStatus = dnnl_matmul_desc_init(&op, &aDesc, &bDesc, &biasDesc!, &cDesc)
    } else {
      initStatus = dnnl_matmul_desc_init(&op, &aDesc, &bDesc, nil, &cDesc)
    }
    DNNL.check(initStatus, "matmul_desc_init")

    var attr: dnnl_primitive_attr_t?
    DNNL.check(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(attr) }
    if key.alpha != 1 {
      var scale = key.alpha
      DNNL.check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "set_output_scales")
    }
    if key.beta != 0 {
      var postOps: dnnl_post_ops_t?
      DNNL.check(dnnl_post_ops_create(&postOps), "post_ops_create")
      defer { dnnl_post_ops_destroy(postOps) }
      DNNL.check(dnnl_post_ops_append_sum(postOps, key.beta), "post_ops_append_sum")
      DNNL.check(dnnl_primitive_attr_set_post_ops(attr, postOps), "set_post_ops")
    }
    var pd: dnnl_primitive_desc_t?
    DNNL.check(dnnl_primitive_desc_create(&pd, &op, attr, DNNL.engine, nil), "primitive_desc_create (matmul bf16)")
    defer { dnnl_primitive_desc_destroy(pd) }
    var primitive: dnnl_primitive_t?
    DNNL.check(dnnl_primitive_create(&primitive, pd), "primitive_create")
    self.primitive = primitive!

    func memory(_ md: inout dnnl_memory_desc_t) -> dnnl_memory_t {
      var mem: dnnl_memory_t?
      DNNL.check(dnnl_memory_create(&mem, &md, DNNL.engine, nil), "memory_create")
      return mem!
    }
    a = memory(&aDesc)
    b = memory(&bDesc)
    c = memory(&cDesc)
    bias = biasDesc != nil ? memory(&biasDesc!) : nil
    args = [
      dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: a), dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: b),
      dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: c),
    ]
    if let bias { args.append(dnnl_exec_arg_t(arg: DNNL_ARG_BIAS, memory: bias)) }
  }
}

nonisolated(unsafe) private var matmulCache: [MatmulKey: MatmulPrimitive] = [:]

/// The primitive cached under `key`, created on first use (callers hold `DNNL.lock`).
private func cached<Key: Hashable, Primitive>(
  _ cache: inout [Key: Primitive], _ key: Key, _ make: (Key) -> Primitive
) -> Primitive {
  if let primitive = cache[key] { return primitive }
  let primitive = make(key)
  cache[key] = primitive
  return primitive
}

/// `C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C` with A and B in bfloat16 (bit patterns),
/// products accumulated and C stored in fp32; row-major, the contract of `gemm`.
public func matmulBF16(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  alpha: Float = 1, a: UnsafePointer<UInt16>, lda: Int,
  b: UnsafePointer<UInt16>, ldb: Int,
  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  if Precision.bf16.usesPortableKernels {
    return PortableKernels.matmulBF16(
      transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
  }
  let key = MatmulKey(
    transA: transA == .transpose, transB: transB == .transpose, m: m, n: n, k: k, lda: lda, ldb: ldb,
    ldc: ldc, alpha: alpha, beta: beta)
  runMatmul(key, a: a, b: b, bias: nil, c: UnsafeMutableRawPointer(c))
}

/// `C[M×N] = op(A)[M×K] · op(B)[K×N] (+ bias)` with A and B in bfloat16, accumulated in fp32 and
/// stored rounded to bf16 (a pre-activation only elementwise kernels read); the fp32 bias, when
/// given, runs along `biasAxis` (one per row or per column) and is added before the rounding.
/// oneDNN 2.6 adds a per-column bias in its AMX kernel but a per-row one only in its reference
/// implementation, thousands of times slower on large shapes: use `addRowBiasBF16` after instead.
public func matmulBF16(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
  bias: UnsafePointer<Float>?, biasAxis: BiasAxis, c: UnsafeMutablePointer<UInt16>, ldc: Int
) {
  if Precision.bf16.usesPortableKernels {
    return PortableKernels.matmulBF16(
      transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: bias, biasAxis: biasAxis, c: c, ldc: ldc)
  }
  var key = MatmulKey(
    transA: transA == .transpose, transB: transB == .transpose, m: m, n: n, k: k, lda: lda, ldb: ldb,
    ldc: ldc, alpha: 1, beta: 0)
  key.bf16Output = true
  key.bias = bias == nil ? nil : biasAxis
  runMatmul(key, a: a, b: b, bias: bias, c: UnsafeMutableRawPointer(c))
}

private func runMatmul(
  _ key: MatmulKey, a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, bias: UnsafePointer<Float>?,
  c: UnsafeMutableRawPointer
) {
  DNNL.lock.lock()
  defer { DNNL.lock.unlock() }
  DNNL.matchThreads()
  let p = cached(&matmulCache, key, MatmulPrimitive.init)
  let name = "bf16 \(key.transA ? "T" : "N")\(key.transB ? "T" : "N") \(key.m)x\(key.n)x\(key.k)\(key.bf16Output ? " ->bf16" : "")"
  KernelProfile.measure(name, flops: 2 * Double(key.m) * Double(key.n) * Double(key.k)) {
    DNNL.check(dnnl_memory_set_data_handle(p.a, UnsafeMutableRawPointer(mutating: a)), "set_data_handle")
    DNNL.check(dnnl_memory_set_data_handle(p.b, UnsafeMutableRawPointer(mutating: b)), "set_data_handle")
    DNNL.check(dnnl_memory_set_data_handle(p.c, c), "set_data_handle")
    if let memory = p.bias, let bias {
      DNNL.check(dnnl_memory_set_data_handle(memory, UnsafeMutableRawPointer(mutating: bias)), "set_data_handle")
    }
    let status = p.args.withUnsafeBufferPointer {
      dnnl_primitive_execute(p.primitive, DNNL.stream, Int32($0.count), $0.baseAddress)
    }
    DNNL.check(status, "primitive_execute (matmul bf16)")
    DNNL.check(dnnl_stream_wait(DNNL.stream), "stream_wait")
  }
}

// MARK: - GELU on bf16 values

private struct EltwiseKey: Hashable {
  let count: Int
  let kind: GELUKind
  let backward: Bool
}

/// A created GELU primitive over `count` contiguous bf16 values, with its memory objects.
private final class EltwisePrimitive {
  let primitive: dnnl_primitive_t
  let memories: [dnnl_memory_t]
  var args: [dnnl_exec_arg_t] = []

  init(_ key: EltwiseKey) {
    var md = dnnl_memory_desc_t()
    var dims: dnnl_dims_t = (dnnl_dim_t(key.count), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    let status = withUnsafePointer(to: &dims) {
      $0.withMemoryRebound(to: dnnl_dim_t.self, capacity: 12) { dnnl_memory_desc_init_by_tag(&md, 1, $0, dnnl_bf16, dnnl_a) }
    }
    DNNL.check(status, "memory_desc_init_by_tag")
    let alg = key.kind == .tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf
    var forward = dnnl_eltwise_desc_t()
    DNNL.check(dnnl_eltwise_forward_desc_init(&forward, dnnl_forward_training, alg, &md, 0, 0), "eltwise_forward_desc_init")
    var forwardPD: dnnl_primitive_desc_t?
    DNNL.check(dnnl_primitive_desc_create(&forwardPD, &forward, nil, DNNL.engine, nil), "primitive_desc_create (gelu)")
    defer { dnnl_primitive_desc_destroy(forwardPD) }
    var pd = forwardPD
    var backwardPD: dnnl_primitive_desc_t?
    if key.backward {
      var backward = dnnl_eltwise_desc_t()
      DNNL.check(dnnl_eltwise_backward_desc_init(&backward, alg, &md, &md, 0, 0), "eltwise_backward_desc_init")
      DNNL.check(
        dnnl_primitive_desc_create(&backwardPD, &backward, nil, DNNL.engine, forwardPD), "primitive_desc_create (gelu backward)")
      pd = backwardPD
    }
    defer { if let backwardPD { dnnl_primitive_desc_destroy(backwardPD) } }
    var primitive: dnnl_primitive_t?
    DNNL.check(dnnl_primitive_create(&primitive, pd), "primitive_create (gelu)")
    self.primitive = primitive!
    let roles = key.backward ? [DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC] : [DNNL_ARG_SRC, DNNL_ARG_DST]
    memories = roles.map { _ in
      var mem: dnnl_memory_t?
      DNNL.check(dnnl_memory_create(&mem, &md, DNNL.engine, nil), "memory_create")
      return mem!
    }
    args = zip(roles, memories).map { dnnl_exec_arg_t(arg: $0, memory: $1) }
  }
}

nonisolated(unsafe) private var eltwiseCache: [EltwiseKey: EltwisePrimitive] = [:]

private func runEltwise(_ key: EltwiseKey, _ handles: [UnsafeRawPointer], name: String) {
  DNNL.lock.lock()
  defer { DNNL.lock.unlock() }
  DNNL.matchThreads()
  let p = cached(&eltwiseCache, key, EltwisePrimitive.init)
  KernelProfile.measure(name) {
    for (memory, handle) in zip(p.memories, handles) {
      DNNL.check(dnnl_memory_set_data_handle(memory, UnsafeMutableRawPointer(mutating: handle)), "set_data_handle")
    }
    let status = p.args.withUnsafeBufferPointer {
      dnnl_primitive_execute(p.primitive, DNNL.stream, Int32($0.count), $0.baseAddress)
    }
    DNNL.check(status, "primitive_execute (gelu)")
    DNNL.check(dnnl_stream_wait(DNNL.stream), "stream_wait")
  }
}

/// `act = gelu(pre)` on `count` bf16 values (computed in fp32 by oneDNN, rounded to bf16).
public func geluForwardBF16(pre: UnsafePointer<UInt16>, act: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
  if Precision.bf16.usesPortableKernels { return PortableKernels.geluForwardBF16(pre: pre, act: act, count: count, kind: kind) }
  runEltwise(EltwiseKey(count: count, kind: kind, backward: false), [UnsafeRawPointer(pre), UnsafeRawPointer(act)], name: "gelu forward bf16")
}

/// `d = d · gelu′(pre)` in place on `count` bf16 values (computed in fp32 by oneDNN).
public func geluBackwardBF16(pre: UnsafePointer<UInt16>, gradient d: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
  if Precision.bf16.usesPortableKernels { return PortableKernels.geluBackwardBF16(pre: pre, gradient: d, count: count, kind: kind) }
  runEltwise(
    EltwiseKey(count: count, kind: kind, backward: true), [UnsafeRawPointer(pre), UnsafeRawPointer(d), UnsafeRawPointer(d)],
    name: "gelu backward bf16")
}

// MARK: - 8-bit integer products

/// `C[M×N] (int32) = op(A)[M×K] (uint8, zero point aZero) · op(B)[K×N] (int8) (+ C when accumulate)`,
/// row-major, exact integer arithmetic (oneDNN `dnnl_gemm_u8s8s32`).
public func gemmU8S8S32(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  a: UnsafePointer<UInt8>, lda: Int, aZero: UInt8 = 0,
  b: UnsafePointer<Int8>, ldb: Int,
  accumulate: Bool = false, c: UnsafeMutablePointer<Int32>, ldc: Int
) {
  if Precision.int8.usesPortableKernels {
    return PortableKernels.gemmInt8(
      transA, transB, m: m, n: n, k: k, a: a, lda: lda, aZero: Int(aZero), b: b, ldb: ldb, accumulate: accumulate, c: c, ldc: ldc)
  }
  var zero: Int32 = 0
  KernelProfile.measure(
    "int8 \(transA == .none ? "N" : "T")\(transB == .none ? "N" : "T") \(m)x\(n)x\(k)", flops: 2 * Double(m) * Double(n) * Double(k)
  ) {
    // oneDNN computes C = alpha·(op(A) - ao)·(op(B) - bo) + beta·C + co
    let status = dnnl_gemm_u8s8s32(
      transA == .none ? 78 : 84, transB == .none ? 78 : 84, 70 /* 'F': one fixed offset */,
      dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), 1, a, dnnl_dim_t(lda), aZero, b, dnnl_dim_t(ldb), 0,
      accumulate ? 1 : 0, c, dnnl_dim_t(ldc), &zero)
    DNNL.check(status, "gemm_u8s8s32")
  }
}

/// `C[M×N] (int32) = op(A)[M×K] (int8) · op(B)[K×N] (int8) (+ C when accumulate)`, row-major, exact
/// (oneDNN `dnnl_gemm_s8s8s32`).
public func gemmS8S8S32(
  _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
  a: UnsafePointer<Int8>, lda: Int, b: UnsafePointer<Int8>, ldb: Int,
  accumulate: Bool = false, c: UnsafeMutablePointer<Int32>, ldc: Int
) {
  if Precision.int8.usesPortableKernels {
    return PortableKernels.gemmInt8(
      transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: accumulate, c: c, ldc: ldc)
  }
  var zero: Int32 = 0
  KernelProfile.measure(
    "int8 \(transA == .none ? "N" : "T")\(transB == .none ? "N" : "T") \(m)x\(n)x\(k)", flops: 2 * Double(m) * Double(n) * Double(k)
  ) {
    let status = dnnl_gemm_s8s8s32(
      transA == .none ? 78 : 84, transB == .none ? 78 : 84, 70, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), 1,
      a, dnnl_dim_t(lda), 0, b, dnnl_dim_t(ldb), 0, accumulate ? 1 : 0, c, dnnl_dim_t(ldc), &zero)
    DNNL.check(status, "gemm_s8s8s32")
  }
}

// MARK: - int8 matmul primitive (appended for int8 inference, issue 14)
//
// `Int8Matmul` is one int8 product of the inference plan as a cached oneDNN matmul primitive: on
// CPUs with AMX oneDNN picks its brgemm AMX kernel (`brg:avx512_core_amx_int8`), on VNNI ones the
// brgemm VNNI kernel, both far faster on our shapes than `dnnl_gemm_u8s8s32`. The weights are
// reordered once, at creation, into the layout the kernel wants, and the epilogue runs inside the
// kernel on the int32 sums while they are in registers:
//   v[m, n]   = scale[n] · (Σ_k (src[m, k] − srcZero) · w[k, n]) + bias[n]
//   .float            dst[m, n] = v                    (fp32, overwritten)
//   .accumulate       dst[m, n] += v                   (fp32, oneDNN's sum post-op)
//   .u8(s, z, gelu)   dst[m, n] = sat_u8(round(g(v) / s) + z),  g = gelu or identity
// The u8 output is the quantized input of the next int8 product, so a hidden activation of an
// MLP never exists in fp32. oneDNN 2.x adds the bias before the output scale, so it is given
// bias[n] / scale[n]. Rounding is to nearest even (the CPU's default mode), as in `quantizeU8`.
// Source and destination are plain row-major with leading dimensions K and N (a transposed source
// or destination falls back to oneDNN's slow reference kernel, so neither is offered).

/// What an `Int8Matmul` writes.
public enum Int8MatmulEpilogue: Hashable, Sendable {
  /// fp32 `v`
  case float
  /// fp32 `dst += v`
  case accumulate
  /// u8 `round(g(v) / scale) + zeroPoint`, g = GELU of that kind, or identity when nil
  case u8(scale: Float, zeroPoint: Int, gelu: GELUKind?)
}

/// A matmul `dst[M×N] = src[M×K] · W[K×N] + bias[N]` as a oneDNN primitive whose weights were
/// reordered once, at creation, into the layout its kernel wants (the int8 and bf16 inference
/// products below); every call only swaps the source and destination pointers.
final class PreparedMatmul {
  let m: Int, n: Int, k: Int
  /// oneDNN's name for the kernel it chose
  let implementation: String
  private let primitive: dnnl_primitive_t
  private let srcMemory: dnnl_memory_t, weightsMemory: dnnl_memory_t, biasMemory: dnnl_memory_t, dstMemory: dnnl_memory_t
  private var args: [dnnl_exec_arg_t]
  /// the reordered weights and the bias (owned)
  private let weightBuffer: UnsafeMutableRawPointer
  private let biasBuffer: UnsafeMutablePointer<Float>
  private let profileName: String

  /// `weights` `[K×N]` row-major of type `weightType`; `bias` `[N]` fp32; `attr` the caller's
  /// scales, zero points and post-ops (nil: none).
  init(
    m: Int, n: Int, k: Int, src srcType: dnnl_data_type_t, weights weightType: dnnl_data_type_t,
    dst dstType: dnnl_data_type_t, plainWeights w: UnsafeRawPointer, bias: [Float], attr: dnnl_primitive_attr_t?,
    profileName: String
  ) {
    precondition(bias.count == n, "PreparedMatmul: the bias needs N values")
    (self.m, self.n, self.k, self.profileName) = (m, n, k, profileName)
    func plain(_ rows: Int, _ cols: Int, _ type: dnnl_data_type_t, tag: dnnl_format_tag_t = dnnl_ab) -> dnnl_memory_desc_t {
      var md = dnnl_memory_desc_t()
      var dims: dnnl_dims_t = (dnnl_dim_t(rows), dnnl_dim_t(cols), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
      let status = withUnsafePointer(to: &dims) {
        $0.withMemoryRebound(to: dnnl_dim_t.self, capacity: 12) { dnnl_memory_desc_init_by_tag(&md, 2, $0, type, tag) }
      }
      DNNL.check(status, "memory_desc_init_by_tag")
      return md
    }
    func memory(_ md: inout dnnl_memory_desc_t, _ handle: UnsafeMutableRawPointer?) -> dnnl_memory_t {
      var mem: dnnl_memory_t?
      DNNL.check(dnnl_memory_create(&mem, &md, DNNL.engine, handle), "memory_create")
      return mem!
    }
    var srcDesc = plain(m, k, srcType)
    var anyWeights = plain(k, n, weightType, tag: dnnl_format_tag_any)
    var plainWeights = plain(k, n, weightType)
    var biasDesc = plain(1, n, dnnl_f32)
    var dstDesc = plain(m, n, dstType)
    var op = dnnl_matmul_desc_t()
    DNNL.check(dnnl_matmul_desc_init(&op, &srcDesc, &anyWeights, &biasDesc, &dstDesc), "matmul_desc_init (\(profileName))")
    var pd: dnnl_primitive_desc_t?
    DNNL.check(dnnl_primitive_desc_create(&pd, &op, attr, DNNL.engine, nil), "primitive_desc_create (\(profileName))")
    defer { dnnl_primitive_desc_destroy(pd) }
    var info: UnsafePointer<CChar>?
    _ = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info)
    implementation = info.map { String(cString: $0) } ?? "unknown"
    var prim: dnnl_primitive_t?
    DNNL.check(dnnl_primitive_create(&prim, pd), "primitive_create (\(profileName))")
    primitive = prim!

    // the weights in the kernel's layout, reordered once
    var packedDesc = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)!.pointee
    weightBuffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, dnnl_memory_desc_get_size(&packedDesc)), alignment: 64)
    let plainMemory = memory(&plainWeights, UnsafeMutableRawPointer(mutating: w))
    defer { dnnl_memory_destroy(plainMemory) }
    weightsMemory = memory(&packedDesc, weightBuffer)
    var reorderDesc: dnnl_primitive_desc_t?
    DNNL.check(
      dnnl_reorder_primitive_desc_create(&reorderDesc, &plainWeights, DNNL.engine, &packedDesc, DNNL.engine, nil),
      "reorder_primitive_desc_create (weights)")
    defer { dnnl_primitive_desc_destroy(reorderDesc) }
    var reorder: dnnl_primitive_t?
    DNNL.check(dnnl_primitive_create(&reorder, reorderDesc), "primitive_create (reorder)")
    defer { dnnl_primitive_destroy(reorder) }
    var reorderArgs = [
      dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: plainMemory), dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: weightsMemory),
    ]
    DNNL.lock.lock()
    DNNL.check(dnnl_primitive_execute(reorder, DNNL.stream, 2, &reorderArgs), "primitive_execute (reorder)")
    DNNL.check(dnnl_stream_wait(DNNL.stream), "stream_wait")
    DNNL.lock.unlock()

    biasBuffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
    biasBuffer.initialize(from: bias, count: n)
    srcMemory = memory(&srcDesc, nil)
    biasMemory = memory(&biasDesc, UnsafeMutableRawPointer(biasBuffer))
    dstMemory = memory(&dstDesc, nil)
    args = [
      dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: srcMemory), dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: weightsMemory),
      dnnl_exec_arg_t(arg: DNNL_ARG_BIAS, memory: biasMemory), dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: dstMemory),
    ]
  }

  deinit {
    for memory in [srcMemory, weightsMemory, biasMemory, dstMemory] { dnnl_memory_destroy(memory) }
    dnnl_primitive_destroy(primitive)
    weightBuffer.deallocate()
    biasBuffer.deallocate()
  }

  func run(src a: UnsafeRawPointer, dst c: UnsafeMutableRawPointer) {
    DNNL.lock.lock()
    defer { DNNL.lock.unlock() }
    DNNL.matchThreads()
    KernelProfile.measure(profileName, flops: 2 * Double(m) * Double(n) * Double(k)) {
      DNNL.check(dnnl_memory_set_data_handle(srcMemory, UnsafeMutableRawPointer(mutating: a)), "set_data_handle")
      DNNL.check(dnnl_memory_set_data_handle(dstMemory, c), "set_data_handle")
      let status = args.withUnsafeBufferPointer {
        dnnl_primitive_execute(primitive, DNNL.stream, Int32($0.count), $0.baseAddress)
      }
      DNNL.check(status, "primitive_execute (\(profileName))")
      DNNL.check(dnnl_stream_wait(DNNL.stream), "stream_wait")
    }
  }
}

/// One u8·s8 product `[M×K]·[K×N]` with per-column scales, a bias and an epilogue, as a cached
/// oneDNN matmul primitive with its weights reordered once.
public final class Int8Matmul {
  public let m: Int, n: Int, k: Int
  public let epilogue: Int8MatmulEpilogue
  /// oneDNN's primitive, or the portable kernel where oneDNN has no correct one
  private let matmul: PreparedMatmul?
  private let portable: PortableInt8Matmul?
  /// oneDNN's name for the kernel it chose, e.g. `brg:avx512_core_amx_int8`, or `portable`
  public var implementation: String { matmul?.implementation ?? "portable (sgemm)" }

  /// `weights` `[K×N]` row-major; `scales` `[N]` (input scale · weight scale per column); `bias` `[N]`.
  public convenience init(
    m: Int, n: Int, k: Int, srcZeroPoint: Int, weights w: UnsafePointer<Int8>, scales: [Float], bias: [Float],
    epilogue: Int8MatmulEpilogue
  ) {
    self.init(m: m, n: n, k: k, srcZeroPoint: srcZeroPoint, weights: w, scales: scales, bias: bias, epilogue: epilogue, widened: nil)
  }

  /// The same, with the portable kernel's fp32 copy of the weights shared with the layer's other
  /// products (`Int8Product`: one copy for every row count), widened here when nil.
  init(
    m: Int, n: Int, k: Int, srcZeroPoint: Int, weights w: UnsafePointer<Int8>, scales: [Float], bias: [Float],
    epilogue: Int8MatmulEpilogue, widened: PortableInt8Weights?
  ) {
    precondition(scales.count == n && bias.count == n, "Int8Matmul: scales and bias need N values")
    (self.m, self.n, self.k, self.epilogue) = (m, n, k, epilogue)
    if Precision.int8.usesPortableKernels {
      portable = PortableInt8Matmul(
        m: m, n: n, k: k, srcZeroPoint: srcZeroPoint, weights: widened ?? PortableInt8Weights(k: k, n: n, weights: w),
        scales: scales, bias: bias, epilogue: epilogue)
      matmul = nil
      return
    }
    portable = nil
    var attr: dnnl_primitive_attr_t?
    DNNL.check(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
    defer { dnnl_primitive_attr_destroy(attr) }
    var outputScales = scales
    var postOps: dnnl_post_ops_t?
    DNNL.check(dnnl_post_ops_create(&postOps), "post_ops_create")
    defer { dnnl_post_ops_destroy(postOps) }
    let dstType: dnnl_data_type_t
    let tail: String
    switch epilogue {
    case .float:
      (dstType, tail) = (dnnl_f32, "")
    case .accumulate:
      (dstType, tail) = (dnnl_f32, " +=")
      DNNL.check(dnnl_post_ops_append_sum(postOps, 1), "post_ops_append_sum")
    case .u8(let scale, let zeroPoint, let gelu):
      (dstType, tail) = (dnnl_u8, gelu == nil ? " →u8" : " gelu→u8")
      if let gelu {
        let alg = gelu == .tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf
        DNNL.check(dnnl_post_ops_append_eltwise(postOps, 1 / scale, alg, 0, 0), "post_ops_append_eltwise")
      } else {
        outputScales = scales.map { $0 / scale }
      }
      var zero = Int32(zeroPoint)
      DNNL.check(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &zero), "set_zero_points (dst)")
    }
    DNNL.check(dnnl_primitive_attr_set_post_ops(attr, postOps), "set_post_ops")
    DNNL.check(dnnl_primitive_attr_set_output_scales(attr, dnnl_dim_t(n), 1 << 1, outputScales), "set_output_scales")
    var srcZero = Int32(srcZeroPoint)
    DNNL.check(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &srcZero), "set_zero_points (src)")
    // oneDNN 2.x adds the bias before the output scale: the bias in accumulator units
    matmul = PreparedMatmul(
      m: m, n: n, k: k, src: dnnl_u8, weights: dnnl_s8, dst: dstType, plainWeights: w,
      bias: (0..<n).map { bias[$0] / scales[$0] }, attr: attr, profileName: "int8 \(m)x\(n)x\(k)\(tail)")
  }

  /// Runs the product: `src` `[M×K]` u8, `dst` `[M×N]` fp32 or u8 as the epilogue says.
  public func run(src a: UnsafePointer<UInt8>, dst c: UnsafeMutableRawPointer) {
    if let portable { return portable.run(src: a, dst: c) }
    matmul!.run(src: a, dst: c)
  }
}

// MARK: - bf16 matmul primitive with prepared weights (inference)
//
// `BF16Matmul` is one bf16 product of the inference plan, `dst[M×N] = src[M×K] · W[K×N] + bias`
// (src bf16 row-major, dst fp32 overwritten), as a cached oneDNN matmul primitive whose weights
// were rounded to bf16 and reordered once, at creation, into the layout its kernel wants (AMX
// brgemm here): `matmulBF16` takes plain weights, which oneDNN repacks on every call.

/// One bf16 product with its weights prepared once, for a fixed row count.
public final class BF16Matmul {
  public let m: Int, n: Int, k: Int
  /// oneDNN's primitive, or the portable kernel where oneDNN has none
  private let matmul: PreparedMatmul?
  private let portable: PortableBF16Matmul?
  /// oneDNN's name for the kernel it chose, e.g. `brg:avx512_core_amx_bf16`, or `portable`
  public var implementation: String { matmul?.implementation ?? "portable (sgemm)" }

  /// `weights` `[K×N]` fp32 row-major (rounded to bf16 here); `bias` `[N]`.
  public init(m: Int, n: Int, k: Int, weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
    (self.m, self.n, self.k) = (m, n, k)
    if Precision.bf16.usesPortableKernels {
      portable = PortableBF16Matmul(m: m, n: n, k: k, weights: w, bias: bias)
      matmul = nil
      return
    }
    portable = nil
    let rounded = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, k * n))
    defer { rounded.deallocate() }
    convertToBF16(w, rounded, count: k * n)
    matmul = PreparedMatmul(
      m: m, n: n, k: k, src: dnnl_bf16, weights: dnnl_bf16, dst: dnnl_f32, plainWeights: rounded,
      bias: Array(UnsafeBufferPointer(start: bias, count: n)), attr: nil, profileName: "bf16 \(m)x\(n)x\(k) prepared")
  }

  /// `dst` `[M×N]` fp32 = `src` `[M×K]` bf16 · W + bias.
  public func run(src a: UnsafePointer<UInt16>, dst c: UnsafeMutablePointer<Float>) {
    if let portable { return portable.run(src: a, dst: c) }
    matmul!.run(src: a, dst: c)
  }
}
