// The instruction set the elementwise kernels of training run (GELU, LayerNorm, bias, residual,
// bf16 rounding: the C target CMixerVector, one build per level). The best level the CPU runs is
// chosen when the kernels are first called; MIXER_ISA picks another (benchmarks, tests). Every
// level computes the same bits (the same 16-lane arithmetic in the same order, no FMA
// contraction), which the tests check against the baseline build: the level changes speed only.

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
    guard let level = allCases.first(where: { $0.description == name }) else {
      throw .unknown(name)
    }
    guard level.isSupported else { throw .unsupported(level) }
    active = level
  }
}

public enum KernelISAError: Error, Equatable, CustomStringConvertible {
  case unknown(String)
  case unsupported(KernelISA)

  public var description: String {
    switch self {
    case .unknown(let name):
      return "\(KernelISA.variable)=\(name) is not an instruction set of the kernels (baseline, avx2, avx512)"
    case .unsupported(let level):
      return "\(KernelISA.variable)=\(level): this CPU does not run \(level) code (it runs \(KernelISA.supported.map(\.description).joined(separator: ", ")))"
    }
  }
}
