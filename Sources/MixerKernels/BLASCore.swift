// The OpenBLAS kernel ("core") for this CPU, and the check that it computes right.
//
// OpenBLAS built with DYNAMIC_ARCH picks its kernel once, when the library loads, from its own
// CPU tables; OPENBLAS_CORETYPE, read at the same moment, overrides that choice. OpenBLAS 0.3.21
// does not know some newer CPUs (an Intel Xeon VM with AMX among them) and falls back to its
// `Prescott` kernel, about 5× slower for fp32, without a word. `BLASCore.choice` compares the
// kernel OpenBLAS picked with the one the CPU's instruction sets allow and names the better one;
// the command line then starts itself again with OPENBLAS_CORETYPE set (the only way to change
// the kernel after load). A user's own OPENBLAS_CORETYPE is never overridden: some OpenBLAS
// builds compute wrong results on some CPUs and that variable is the known way around them.
// `BLASSelfTest` holds sgemm to the naive product on a few shapes before any work starts.
//
// What Debian's OpenBLAS 0.3.21 does with OPENBLAS_CORETYPE (checked on an AMD EPYC with AVX2/FMA
// and no AVX-512): names are matched without case; `Cooperlake` falls back to `Haswell` when the
// CPU lacks AVX512-BF16, but `SkylakeX` is taken as given even without AVX-512 (the first product
// would stop on an illegal instruction), so a core is only ever named from the CPU's own flags,
// and a user's core the CPU cannot run stops the run with a one-line error before any product.

import Foundation

/// The instruction sets that decide the OpenBLAS kernel, as the CPU reports them.
public struct CPUFeatures: Equatable, Sendable {
  /// flag names as /proc/cpuinfo spells them (`avx2`, `fma`, `avx512f`, `avx512_bf16`, ...)
  public var flags: Set<String>
  /// `GenuineIntel`, `AuthenticAMD`, ...
  public var vendor: String

  public init(flags: Set<String>, vendor: String) {
    self.flags = flags
    self.vendor = vendor
  }

  /// This machine's, from /proc/cpuinfo (no flags where that file does not exist).
  public static let current: CPUFeatures = {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
      return CPUFeatures(flags: [], vendor: "unknown")
    }
    return CPUFeatures(cpuinfo: text)
  }()

  /// The features of the first processor listed in a /proc/cpuinfo text.
  public init(cpuinfo: String) {
    var flags: Set<String> = []
    var vendor = "unknown"
    for line in cpuinfo.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 1)
      guard parts.count == 2 else { continue }
      let key = parts[0].trimmingCharacters(in: .whitespaces)
      let value = parts[1].trimmingCharacters(in: .whitespaces)
      if key == "vendor_id", vendor == "unknown" { vendor = value }
      if key == "flags", flags.isEmpty { flags = Set(value.split(separator: " ").map(String.init)) }
    }
    self.init(flags: flags, vendor: vendor)
  }

  /// AVX-512 F, BW and VL: what OpenBLAS's SkylakeX kernels need.
  public var hasAVX512: Bool { flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl"]) }
  /// AVX-512 with AVX512-BF16: what OpenBLAS's Cooperlake kernels need.
  public var hasAVX512BF16: Bool { hasAVX512 && flags.contains("avx512_bf16") }
  /// AVX2 and FMA: what OpenBLAS's Haswell and Zen kernels need.
  public var hasAVX2FMA: Bool { flags.isSuperset(of: ["avx2", "fma"]) }

  /// The widest of those instruction sets, for messages: "AVX-512 with BF16", "AVX2/FMA", ...
  public var bestISA: String {
    if hasAVX512BF16 { return "AVX-512 with BF16" }
    if hasAVX512 { return "AVX-512" }
    if hasAVX2FMA { return "AVX2/FMA" }
    return "no AVX2/FMA"
  }
}

/// Which OpenBLAS kernel to run, and why.
public enum BLASCore {
  /// The environment variable OpenBLAS reads its kernel from at load.
  public static let coreTypeVariable = "OPENBLAS_CORETYPE"
  /// Set (to the kernel OpenBLAS had picked) by the start-up re-exec, so that the new process can
  /// say which kernel it replaced.
  public static let replacedVariable = "MIXER_DIST_BLAS_REPLACED_CORE"

  /// What to do about the kernel OpenBLAS picked.
  public enum Choice: Equatable, Sendable {
    /// it is as good as this CPU allows
    case keep
    /// the user set OPENBLAS_CORETYPE: kept, even when `better` (non-nil) would be faster
    case userSet(better: String?)
    /// a weaker kernel than the CPU allows: load OpenBLAS again with this one
    case replace(with: String)
  }

  /// The kernel the CPU's instruction sets call for (nil: nothing better than SSE kernels).
  public static func target(for cpu: CPUFeatures) -> String? {
    if cpu.hasAVX512BF16 { return "Cooperlake" }
    if cpu.hasAVX512 { return "SkylakeX" }
    if cpu.hasAVX2FMA { return cpu.vendor == "AuthenticAMD" || cpu.vendor == "HygonGenuine" ? "Zen" : "Haswell" }
    return nil
  }

  /// The instruction-set tier of an OpenBLAS x86-64 kernel name: 3 AVX-512 with BF16, 2 AVX-512,
  /// 1 AVX2/FMA, 0 anything older (or a name this table does not know).
  public static func tier(of core: String) -> Int {
    switch core.lowercased() {
    case "cooperlake", "sapphirerapids": return 3
    case "skylakex": return 2
    case "haswell", "zen": return 1
    default: return 0
    }
  }

  /// The instruction sets kernel `core` needs that `cpu` does not report, for the error that stops
  /// a run before its first product would end on an illegal instruction (OpenBLAS takes
  /// `OPENBLAS_CORETYPE=SkylakeX` as given on an AVX2 CPU); nil when it can run here, when the
  /// name is not one `tier(of:)` knows, or when the CPU's flags are unknown.
  public static func missingInstructions(core: String, cpu: CPUFeatures) -> String? {
    guard !cpu.flags.isEmpty else { return nil }
    switch tier(of: core) {
    case 3 where !cpu.hasAVX512BF16: return "AVX-512 with BF16"
    case 2 where !cpu.hasAVX512: return "AVX-512 F/BW/VL"
    case 1 where !cpu.hasAVX2FMA: return "AVX2 and FMA"
    default: return nil
    }
  }

  /// The decision, a pure function of the CPU, the kernel OpenBLAS picked and the user's
  /// OPENBLAS_CORETYPE (nil or empty: unset).
  public static func choice(cpu: CPUFeatures, openBLASCore: String, userCoreType: String?) -> Choice {
    let target = target(for: cpu)
    let better = target.flatMap { tier(of: $0) > tier(of: openBLASCore) ? $0 : nil }
    if let userCoreType, !userCoreType.isEmpty { return .userSet(better: better) }
    guard let better else { return .keep }
    return .replace(with: better)
  }

  /// The kernel in use and how it was chosen, for start-up lines: "Zen", "Zen (chosen by
  /// mixer-dist for AVX2/FMA; OpenBLAS picked Prescott)", "Prescott (OPENBLAS_CORETYPE; this CPU
  /// could run Zen)".
  public static func summary(
    core: String, cpu: CPUFeatures, environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> String {
    if let replaced = environment[replacedVariable], !replaced.isEmpty {
      return "\(core) (chosen by mixer-dist for \(cpu.bestISA); OpenBLAS picked \(replaced))"
    }
    if let user = environment[coreTypeVariable], !user.isEmpty {
      if let target = target(for: cpu), tier(of: target) > tier(of: core) {
        return "\(core) (\(coreTypeVariable)=\(user); this CPU could run \(target))"
      }
      return "\(core) (\(coreTypeVariable)=\(user))"
    }
    return core
  }
}

/// sgemm held to the naive product on a few shapes: every transpose pairing, sizes that are not
/// multiples of any kernel's block, and one large enough for OpenBLAS's packed, blocked path.
public enum BLASSelfTest {
  /// One product of the test: `C[M×N] = op(A)[M×K] · op(B)[K×N]` (+ `beta`·C).
  public struct Shape {
    public var transA: Transpose, transB: Transpose, m: Int, n: Int, k: Int, beta: Float
  }

  public nonisolated(unsafe) static let shapes: [Shape] = [
    Shape(transA: .none, transB: .none, m: 1, n: 1, k: 1, beta: 0),
    Shape(transA: .none, transB: .none, m: 7, n: 5, k: 3, beta: 0),
    Shape(transA: .none, transB: .transpose, m: 33, n: 17, k: 65, beta: 1),
    Shape(transA: .transpose, transB: .none, m: 24, n: 49, k: 31, beta: 0),
    Shape(transA: .transpose, transB: .transpose, m: 19, n: 40, k: 9, beta: 1),
    Shape(transA: .none, transB: .none, m: 131, n: 97, k: 259, beta: 0),
  ]

  /// The product under test: `gemm`'s signature.
  public typealias Product = (
    _ transA: Transpose, _ transB: Transpose, _ m: Int, _ n: Int, _ k: Int,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
  ) -> Void

  /// OpenBLAS's sgemm, through `gemm`.
  public static let openBLAS: Product = { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
    gemm(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
  }

  /// Runs every shape through `product`; nil when each result is within `tolerance` of the naive
  /// product, relative to Σ|a·b| of its element, else a one-line description of the first miss.
  public static func run(_ product: Product = openBLAS, tolerance: Double = 1e-4) -> String? {
    var random = CounterRNG(seed: 0x5EED_B1A5)
    for shape in shapes {
      let (m, n, k) = (shape.m, shape.n, shape.k)
      // row-major storage of op(A) and op(B): A is M×K (K×M when transposed), B is K×N (N×K)
      let lda = shape.transA == .none ? k : m
      let ldb = shape.transB == .none ? n : k
      let a = (0..<(m * k)).map { _ in 2 * random.uniform() - 1 }  // A [M×K] or [K×M]
      let b = (0..<(k * n)).map { _ in 2 * random.uniform() - 1 }  // B [K×N] or [N×K]
      let start = (0..<(m * n)).map { _ in 2 * random.uniform() - 1 }  // C before the product [M×N]
      var fast = start, naive = start
      product(shape.transA, shape.transB, m, n, k, a, lda, b, ldb, shape.beta, &fast, n)
      gemmNaive(shape.transA, shape.transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: shape.beta, c: &naive, ldc: n)
      // Σ|a·b| (+ |C| where the product accumulates): the scale of each element's rounding error
      var magnitude = start.map(abs)
      gemmNaive(shape.transA, shape.transB, m: m, n: n, k: k, a: a.map(abs), lda: lda, b: b.map(abs), ldb: ldb, beta: shape.beta, c: &magnitude, ldc: n)
      for index in 0..<(m * n) {
        let difference = abs(Double(fast[index]) - Double(naive[index]))
        let bound = tolerance * Double(magnitude[index]) + 1e-30
        if !(difference <= bound) {
          let kind = "\(shape.transA == .none ? "N" : "T")\(shape.transB == .none ? "N" : "T")"
          return "sgemm \(kind) \(m)x\(n)x\(k) element \(index / n),\(index % n): \(fast[index]) where the naive product gives \(naive[index])"
        }
      }
    }
    return nil
  }
}

extension BLAS {
  /// The kernel in use and how it was chosen (`BLASCore.summary`), for start-up lines.
  public static var coreSummary: String { BLASCore.summary(core: coreName, cpu: .current) }
}
