// The instruction set the elementwise kernels of training run (GELU, LayerNorm, bias, residual,
// bf16 rounding: the C target CMixerVector, one build per level). The best level the CPU runs is
// chosen when the kernels are first called; MIXER_ISA picks another (benchmarks, tests). Every
// level computes the same bits (the same 16-lane arithmetic in the same order, no FMA
// contraction), which the tests check against the baseline build: the level changes speed only.
// At start-up (`choose`) the level's build also runs a short self-check against the baseline
// build; a build that fails it is passed over, and the start-up line says so.

import CMixerVector

public enum KernelISA: Int, CaseIterable, Sendable, CustomStringConvertible {
  /// x86-64's baseline (SSE2): the reference the others are checked against.
  case baseline = 0
  /// AVX2 and FMA: 16 lanes as two 256-bit registers.
  case avx2 = 1
  /// AVX-512 F/BW/DQ/VL: 16 lanes in one 512-bit register.
  case avx512 = 2

  /// The environment variable that overrides the choice: baseline, avx2 or avx512.
  public static let variable = "MIXER_ISA"

  public var description: String { String(cString: mx_isa_name(Int32(rawValue))) }

  /// Whether this CPU (and its OS) runs the level's code.
  public var isSupported: Bool { mx_isa_supported(Int32(rawValue)) != 0 }

  /// The levels this CPU runs, weakest first.
  public static var supported: [KernelISA] { allCases.filter(\.isSupported) }

  /// The best level this CPU runs.
  public static var best: KernelISA { KernelISA(rawValue: Int(mx_isa_best()))! }

  /// The level the kernels run now. Setting an unsupported level is a programming error; use
  /// `select(named:)` for user input.
  public static var active: KernelISA {
    get { KernelISA(rawValue: Int(mx_isa_active()))! }
    set {
      // (the call stays outside precondition: -Ounchecked drops the condition, call and all)
      let status = mx_isa_select(Int32(newValue.rawValue))
      precondition(status == 0, "\(newValue) is not supported here")
    }
  }

  /// Applies a level given by name (MIXER_ISA's value); the error is one line for the user.
  public static func select(named name: String) throws(KernelISAError) {
    active = try level(named: name)
  }

  /// The supported level called `name`.
  public static func level(named name: String) throws(KernelISAError) -> KernelISA {
    guard let level = allCases.first(where: { $0.description == name }) else {
      throw .unknown(name)
    }
    guard level.isSupported else { throw .unsupported(level) }
    return level
  }

  /// The start-up self-check of this level's build: every kernel against the baseline build on
  /// small inputs, bit for bit (check.c). nil when they agree, else the first kernel that differs.
  /// `corrupt` (tests only) turns one output bit of that kernel, numbered from 1.
  public func selfCheck(corrupt: Int = 0) -> String? {
    mx_isa_check(Int32(rawValue), Int32(corrupt)).map { String(cString: $0) }
  }

  /// The level to run: `requested` (MIXER_ISA) if it passes `check`, else an error naming the
  /// kernel; without a request, the best supported level that passes, with a note for each
  /// better one that failed (the baseline is the reference, so the search ends there).
  public static func choose(
    requested: KernelISA?, check: (KernelISA) -> String? = { $0.selfCheck() }
  ) throws(KernelISAError) -> (level: KernelISA, note: String?) {
    if let requested {
      if let kernel = check(requested) { throw .failedCheck(requested, kernel: kernel) }
      return (requested, nil)
    }
    var failures: [String] = []
    for level in supported.reversed() where level != .baseline {
      guard let kernel = check(level) else {
        return (level, failures.isEmpty ? nil : failures.joined(separator: "; "))
      }
      failures.append("\(level) failed its self-check: \(kernel) differs from the baseline build")
    }
    return (.baseline, failures.isEmpty ? nil : failures.joined(separator: "; "))
  }

  /// Why the level in use is not the best this CPU runs, when the start-up check said so.
  public nonisolated(unsafe) static var choiceNote: String?

  /// The level in use, with the start-up check's note: "avx2", or "baseline (avx2 failed ...)".
  public static var summary: String {
    choiceNote.map { "\(active) (\($0))" } ?? active.description
  }
}

public enum KernelISAError: Error, Equatable, CustomStringConvertible {
  case unknown(String)
  case unsupported(KernelISA)
  case failedCheck(KernelISA, kernel: String)

  public var description: String {
    switch self {
    case .unknown(let name):
      return "\(KernelISA.variable)=\(name) is not an instruction set of the kernels (baseline, avx2, avx512)"
    case .unsupported(let level):
      return "\(KernelISA.variable)=\(level): this CPU does not run \(level) code (it runs \(KernelISA.supported.map(\.description).joined(separator: ", ")))"
    case .failedCheck(let level, let kernel):
      return "\(KernelISA.variable)=\(level): the \(level) build of the kernels failed its self-check (\(kernel) differs from the baseline build); unset \(KernelISA.variable) to run the best build that passes"
    }
  }
}
