// The instruction-set builds of the elementwise kernels (CMixerVector, KernelISA): every level
// this CPU runs gives the baseline build's bits on every kernel, for row lengths around the
// 16-lane width and for the values that take other paths (NaN, infinities, subnormals, −0, the
// clamps of exp); the baseline against plain scalar arithmetic; the choice by name.

import CMixerVector
import MixerKernels
import MixerNumerics
import XCTest

final class KernelISATests: XCTestCase {
  override func tearDown() { KernelISA.active = KernelISA.best }

  /// Deterministic inputs with the awkward values mixed in.
  func inputs(_ count: Int, seed: UInt64, scale: Float = 3) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    let specials: [Float] = [.nan, .infinity, -.infinity, 1e-40, -1e-41, -0.0, 0, 95, -95, 40, -40, 1e30]
    return (0..<count).map { i in
      state ^= state << 13; state ^= state >> 7; state ^= state << 17
      if i % 11 == 5 { return specials[Int(state % UInt64(specials.count))] }
      return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
  }

  /// The bytes every kernel writes for rows × cols inputs, at the active level.
  func outputs(rows: Int, cols: Int) -> [String: [UInt32]] {
    var result: [String: [UInt32]] = [:]
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }
    func bits16(_ a: [UInt16]) -> [UInt32] { a.map { UInt32($0) } }
    let n = rows * cols
    let x = inputs(n, seed: 1), y = inputs(n, seed: 2), w = inputs(cols, seed: 3)
    let b = inputs(max(rows, cols), seed: 4), finite = x.map { $0.isFinite ? $0 : 1 }
    for perRow in [0, 1] {
      var act = [Float](repeating: 0, count: n), pre = x, act16 = [UInt16](repeating: 0, count: n)
      mx_bias_gelu_keep(&act, nil, &pre, b, 0, rows, cols, Int32(perRow))
      result["gelu act \(perRow)"] = bits(act)
      result["gelu deriv \(perRow)"] = bits(pre)
      pre = x
      mx_bias_gelu_keep(&act, &act16, &pre, b, 0, rows, cols, Int32(perRow))
      result["gelu act16 \(perRow)"] = bits16(act16)
      var dinp = [Float](repeating: 0, count: n), sums = b
      mx_gelu_back_deriv(&dinp, nil, &sums, y, finite, 0, rows, cols, Int32(perRow))
      result["gelu back \(perRow)"] = bits(dinp) + bits(sums)
      sums = b
      mx_gelu_back_deriv(&dinp, &act16, &sums, y, finite, 0, rows, cols, Int32(perRow))
      result["gelu back16 \(perRow)"] = bits16(act16) + bits(sums)
      var sums16 = b
      mx_sum_bf16(&sums16, act16, 0, rows, cols, Int32(perRow))
      result["sum bf16 \(perRow)"] = bits(sums16)
    }
    var out = [Float](repeating: 0, count: n), out16 = [UInt16](repeating: 0, count: n)
    var mean = [Float](repeating: 0, count: rows), rstd = mean
    mx_layernorm_forward(&out, nil, &mean, &rstd, finite, w, b, 0, rows, cols, 1e-6)
    result["layernorm"] = bits(out) + bits(mean) + bits(rstd)
    mx_layernorm_forward(&out, &out16, &mean, &rstd, finite, w, b, 0, rows, cols, 1e-6)
    result["layernorm16"] = bits16(out16)
    var dx = y, dw = w, db = b
    mx_layernorm_backward(&dx, &dw, &db, finite, finite, w, mean, rstd, 0, rows, cols)
    result["layernorm back"] = bits(dx) + bits(dw) + bits(db)
    var z = x
    mx_add_row_bias(&z, b, 0, rows, cols)
    result["row bias"] = bits(z)
    var z16 = x.map(bf16Bits)
    mx_add_row_bias_bf16(&z16, b, 0, rows, cols)
    result["row bias16"] = bits16(z16)
    mx_add_column_bias(&z, x, b, 0, rows, cols)
    result["column bias"] = bits(z)
    var s = b
    mx_sum_columns(&s, y, rows, cols, 0, cols)
    result["sum columns"] = bits(s)
    s = b
    mx_sum_rows(&s, y, 0, rows, cols)
    result["sum rows"] = bits(s)
    for k: Float in [1, 0.5] {
      z = x
      mx_add_scaled(&z, y, k, n)
      result["add \(k)"] = bits(z)
    }
    var r16 = [UInt16](repeating: 0, count: n)
    mx_to_bf16(&r16, x, n)
    result["to bf16"] = bits16(r16)
    return result
  }

  func testEveryLevelThisCPURunsGivesTheBaselineBits() throws {
    XCTAssertTrue(KernelISA.supported.contains(.baseline))
    XCTAssertEqual(KernelISA.supported.last, KernelISA.best)
    #if arch(x86_64)
    // the project builds its Swift code for Haswell, so any CPU that runs the tests runs AVX2
    XCTAssertTrue(KernelISA.avx2.isSupported, "AVX2 not detected on a CPU that runs this build")
    #endif
    for (rows, cols) in [(1, 1), (3, 15), (2, 16), (3, 17), (4, 47), (3, 64), (5, 200)] {
      KernelISA.active = .baseline
      let reference = outputs(rows: rows, cols: cols)
      for level in KernelISA.supported where level != .baseline {
        KernelISA.active = level
        XCTAssertEqual(KernelISA.active, level)
        let got = outputs(rows: rows, cols: cols)
        XCTAssertEqual(Set(got.keys), Set(reference.keys))
        for (name, bits) in reference.sorted(by: { $0.key < $1.key }) {
          let other = got[name] ?? []
          let first = zip(bits, other).enumerated().first { $0.element.0 != $0.element.1 }?.offset
          XCTAssertTrue(bits == other, "\(level) \(rows)x\(cols) \(name): first differing element \(first.map(String.init) ?? "count")")
        }
      }
    }
  }

  /// The baseline build against scalar arithmetic: the rounding is `bf16Bits` on every value,
  /// GELU and its derivative are the tanh form in Double within the exp approximation's error,
  /// LayerNorm is the Double formula.
  func testBaselineAgainstScalarArithmetic() {
    KernelISA.active = .baseline
    let x = inputs(203, seed: 9)
    var r16 = [UInt16](repeating: 0, count: x.count)
    mx_to_bf16(&r16, x, x.count)
    XCTAssertEqual(r16, x.map(bf16Bits))

    let values = (0..<203).map { Float($0 - 101) / 20 }  // -5.05 ... 5.05
    let zero = [Float](repeating: 0, count: values.count)
    var act = zero, pre = values
    mx_bias_gelu_keep(&act, nil, &pre, zero, 0, 1, values.count, 0)
    for (i, v) in values.enumerated() {
      let x = Double(v), c = 0.797_884_560_802_865_4
      let t = Foundation.tanh(c * (x + 0.044_715 * x * x * x))
      let gelu = 0.5 * x * (1 + t)
      let derivative = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044_715 * x * x)
      XCTAssertEqual(Double(act[i]), gelu, accuracy: 2e-6 * max(1, abs(gelu)), "gelu(\(v))")
      XCTAssertEqual(Double(pre[i]), derivative, accuracy: 2e-6 * max(1, abs(derivative)), "gelu′(\(v))")
    }

    let cols = 37, rows = 3
    let inp = inputs(rows * cols, seed: 5).map { $0.isFinite && abs($0) < 50 ? $0 : 0.5 }
    let w = inputs(cols, seed: 6).map { $0.isFinite && abs($0) < 50 ? $0 : 1 }
    let b = inputs(cols, seed: 7).map { $0.isFinite && abs($0) < 50 ? $0 : 0 }
    var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
    mx_layernorm_forward(&out, nil, &mean, &rstd, inp, w, b, 0, rows, cols, 1e-6)
    for r in 0..<rows {
      let row = inp[r * cols..<(r + 1) * cols].map(Double.init)
      let m = row.reduce(0, +) / Double(cols)
      let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(cols)
      for c in 0..<cols {
        let expected = (row[c] - m) / (v + 1e-6).squareRoot() * Double(w[c]) + Double(b[c])
        XCTAssertEqual(Double(out[r * cols + c]), expected, accuracy: 1e-5 * max(1, abs(expected)))
      }
    }
  }

  func testChoiceByName() {
    for level in KernelISA.allCases {
      if level.isSupported {
        XCTAssertNoThrow(try KernelISA.select(named: level.description))
        XCTAssertEqual(KernelISA.active, level)
      } else {
        XCTAssertThrowsError(try KernelISA.select(named: level.description)) {
          XCTAssertEqual($0 as? KernelISAError, .unsupported(level))
        }
      }
    }
    XCTAssertThrowsError(try KernelISA.select(named: "sse9")) {
      XCTAssertEqual($0 as? KernelISAError, .unknown("sse9"))
      XCTAssertEqual("\($0)", "MIXER_ISA=sse9 is not an instruction set of the kernels (baseline, avx2, avx512)")
    }
  }

  /// The start-up self-check passes every level this CPU runs, and catches one output bit off in
  /// any of its twelve kernels, naming that kernel.
  func testSelfCheckPassesEveryBuildAndCatchesEachKernel() {
    for level in KernelISA.supported {
      XCTAssertNil(level.selfCheck(), "\(level)")
      var names: Set<String> = []
      for kernel in 1...12 {
        guard let name = level.selfCheck(corrupt: kernel) else {
          XCTFail("\(level): one bit off in kernel \(kernel) was not caught")
          continue
        }
        names.insert(name)
      }
      XCTAssertEqual(names.count, 12, "\(level): \(names.sorted())")
      XCTAssertEqual(level.selfCheck(corrupt: 3), "layernorm forward")
    }
  }

  /// The choice at start-up: the best level that passes, each failed one in the note; a requested
  /// level that fails is an error naming the kernel.
  func testChoicePassesOverAFailingBuild() throws {
    let best = KernelISA.best
    let clean = try KernelISA.choose(requested: nil) { _ in nil }
    XCTAssertEqual(clean.level, best)
    XCTAssertNil(clean.note)
    let failing = try KernelISA.choose(requested: nil) { $0 == best ? "gelu backward" : nil }
    if best == .baseline {
      XCTAssertEqual(failing.level, .baseline)  // the reference is not checked against itself
    } else {
      XCTAssertEqual(failing.level, KernelISA.supported.dropLast().last)
      XCTAssertEqual(failing.note, "\(best) failed its self-check: gelu backward differs from the baseline build")
    }
    let allFail = try KernelISA.choose(requested: nil) { $0 == .baseline ? nil : "row sums" }
    XCTAssertEqual(allFail.level, .baseline)
    XCTAssertEqual(allFail.note?.components(separatedBy: "; ").count, KernelISA.supported.count - 1)
    XCTAssertThrowsError(try KernelISA.choose(requested: best) { _ in "row bias" }) {
      XCTAssertEqual($0 as? KernelISAError, .failedCheck(best, kernel: "row bias"))
    }
    XCTAssertEqual(try KernelISA.choose(requested: .baseline) { _ in nil }.level, .baseline)
  }
}
