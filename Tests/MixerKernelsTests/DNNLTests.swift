// The oneDNN shim: bf16 matmul against gemmNaive on the same bf16-rounded operands (every transpose
// pair, padded leading dimensions, alpha ≠ 1, beta 0 and 1), the integer GEMMs against exact
// integer loops, bf16 rounding, and the instruction-set check.

import Foundation
@testable import MixerKernels
import MixerTestSupport
import XCTest

final class DNNLTests: XCTestCase {
  func testBF16RoundingIsNearestEven() {
    XCTAssertEqual(bf16Bits(1.0), 0x3F80)
    XCTAssertEqual(floatFromBF16(bf16Bits(-2.5)), -2.5)
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even pattern (1.0)
    XCTAssertEqual(bf16Bits(1 + 0x1p-8), 0x3F80)
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to the even one
    XCTAssertEqual(floatFromBF16(bf16Bits(1 + 3 * 0x1p-8)), 1 + 0x1p-6)
    XCTAssertTrue(floatFromBF16(bf16Bits(.nan)).isNaN)
    XCTAssertEqual(floatFromBF16(bf16Bits(.infinity)), .infinity)
  }

  /// The 16-lane rounding (`convertToBF16`, the kernels' bf16 outputs) is the scalar one, on
  /// ties, NaNs with payloads, infinities, subnormals and the largest finite values.
  func testVectorRoundingMatchesScalar() {
    var values: [Float] = [
      0, -0, 1, 1 + 0x1p-8, 1 + 3 * 0x1p-8, -(1 + 0x1p-8), .infinity, -.infinity, .nan, -.nan,
      Float(bitPattern: 0x7FC1_2345), Float(bitPattern: 0xFF80_0001), Float(bitPattern: 0x7F80_0001),
      .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude,
      Float(bitPattern: 0x7F7F_FFFF), Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
    ]
    var random = TestRandom(seed: 9)
    values += random.floats(1000, in: -1e4...1e4)
    values += (0..<1000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &random)) }
    var vector = [UInt16](repeating: 0, count: values.count)
    convertToBF16(values, &vector, count: values.count)
    XCTAssertEqual(vector, values.map(bf16Bits))
  }

  /// The inference product with prepared weights: fp32 weights rounded to bf16 and reordered
  /// once, bf16 input, bias added in the kernel; against the naive product of the rounded values.
  func testPreparedBF16MatmulMatchesNaive() throws {
    try onEveryKernelPath(.bf16) {
      var random = TestRandom(seed: 5)
      for (m, n, k) in [(1, 7, 9), (33, 47, 65), (197, 64, 196)] {
        let w = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
        let x = random.floats(m * k, in: -2...2)
        let matmul = BF16Matmul(m: m, n: n, k: k, weights: w, bias: bias)
        var out = [Float](repeating: .nan, count: m * n)
        matmul.run(src: x.map(bf16Bits), dst: &out)
        let wr = w.map { floatFromBF16(bf16Bits($0)) }, xr = x.map { floatFromBF16(bf16Bits($0)) }
        var expected = [Float](repeating: 0, count: m * n)
        gemmNaive(.none, .none, m: m, n: n, k: k, a: xr, lda: k, b: wr, ldb: n, beta: 0, c: &expected, ldc: n)
        for i in 0..<m {
          for j in 0..<n {
            XCTAssertEqual(
              out[i * n + j], expected[i * n + j] + bias[j], accuracy: 1e-4 * Float(k).squareRoot() + 1e-5,
              "\(m)x\(n)x\(k) at (\(i), \(j)) [\(matmul.implementation)]")
          }
        }
        // the same primitive again gives the same bytes
        var again = [Float](repeating: 0, count: m * n)
        matmul.run(src: x.map(bf16Bits), dst: &again)
        XCTAssertEqual(again, out)
      }
    }
  }

  func testBF16MatmulMatchesNaiveOnRoundedOperands() throws {
    try onEveryKernelPath(.bf16) {
      var random = TestRandom(seed: 3)
      for (m, n, k) in [(5, 7, 9), (33, 47, 65), (64, 16, 300)] {
        for transA in [Transpose.none, .transpose] {
          for transB in [Transpose.none, .transpose] {
            for (alpha, beta): (Float, Float) in [(1, 0), (1, 1), (0.5, 1)] {
              let (aRows, aCols) = transA == .none ? (m, k) : (k, m)
              let (bRows, bCols) = transB == .none ? (k, n) : (n, k)
              let lda = aCols + 3, ldb = bCols + 2, ldc = n + 5
              let a = random.floats(aRows * lda, in: -1...1).map { floatFromBF16(bf16Bits($0)) }
              let b = random.floats(bRows * ldb, in: -1...1).map { floatFromBF16(bf16Bits($0)) }
              var cFast = random.floats(m * ldc, in: -1...1)
              if beta == 0 { for i in 0..<m { for j in 0..<n { cFast[i * ldc + j] = .nan } } }
              var cNaive = cFast
              let before = cFast
              if beta == 0 { for i in 0..<m { for j in 0..<n { cNaive[i * ldc + j] = 0 } } }
              let a16 = a.map(bf16Bits), b16 = b.map(bf16Bits)
              matmulBF16(
                transA, transB, m: m, n: n, k: k, alpha: alpha, a: a16, lda: lda, b: b16, ldb: ldb, beta: beta,
                c: &cFast, ldc: ldc)
              gemmNaive(
                transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
                c: &cNaive, ldc: ldc)
              for i in 0..<m {
                for j in 0..<n {
                  // exact products of bf16 numbers, summed in fp32: only fp32 summation order differs
                  XCTAssertEqual(
                    cFast[i * ldc + j], cNaive[i * ldc + j], accuracy: 1e-4 * Float(k).squareRoot() + 1e-5,
                    "\(m)x\(n)x\(k) \(transA) \(transB) alpha \(alpha) beta \(beta) at (\(i), \(j))")
                }
                // the padding past column n is not touched
                for j in n..<ldc { XCTAssertEqual(cFast[i * ldc + j], before[i * ldc + j]) }
              }
            }
          }
        }
      }
    }
  }

  /// The product that writes a pre-activation: bf16 operands, the fp32 bias (per row or per
  /// column) added in the kernel, C rounded to bf16; against the naive product of the rounded
  /// operands plus the bias, rounded (one bf16 step apart at most: the two sum in other orders).
  func testBF16OutputMatmulWithBiasMatchesNaive() throws {
    try onEveryKernelPath(.bf16) {
      var random = TestRandom(seed: 12)
      let (m, n, k) = (37, 66, 45)
      for transA in [Transpose.none, .transpose] {
        for transB in [Transpose.none, .transpose] {
          for axis in [BiasAxis.rows, .columns] {
            let a = random.floats(m * k, in: -2...2).map(bf16Bits), b = random.floats(k * n, in: -1...1).map(bf16Bits)
            let bias = random.floats(axis == .rows ? m : n, in: -1...1)
            let (lda, ldb) = (transA == .none ? k : m, transB == .none ? n : k)
            var c = [UInt16](repeating: 0xFFFF, count: m * n)
            matmulBF16(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bias: bias, biasAxis: axis, c: &c, ldc: n)
            var expected = [Float](repeating: 0, count: m * n)
            gemmNaive(
              transA, transB, m: m, n: n, k: k, a: a.map(floatFromBF16), lda: lda, b: b.map(floatFromBF16), ldb: ldb,
              beta: 0, c: &expected, ldc: n)
            for i in 0..<m {
              for j in 0..<n {
                let want = expected[i * n + j] + (axis == .rows ? bias[i] : bias[j])
                let got = floatFromBF16(c[i * n + j])
                XCTAssertEqual(got, want, accuracy: abs(want) * 0x1p-7 + 1e-5, "\(transA)\(transB) \(axis) at (\(i), \(j))")
              }
            }
          }
        }
      }
    }
  }

  /// GELU and its backward on bf16 values (oneDNN's eltwise kernels, both kinds) against the
  /// Double formulas on the same bf16 inputs, within the rounding of the bf16 result.
  func testGELUOnBF16ValuesMatchesDoubleFormulas() throws {
    try onEveryKernelPath(.bf16) {
      var random = TestRandom(seed: 13)
      let count = 1000 + 13
      let pre = random.floats(count, in: -7...7).map(bf16Bits)
      let gradient = random.floats(count, in: -3...3).map(bf16Bits)
      for kind in GELUKind.allCases {
        func reference(_ x: Double) -> (Double, Double) {
          switch kind {
          case .tanh:
            let c = (2 / Double.pi).squareRoot(), u = c * (x + 0.044715 * x * x * x), t = Foundation.tanh(u)
            return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
          case .erf:
            let cdf = 0.5 * (1 + Foundation.erf(x / 2.0.squareRoot()))
            return (x * cdf, cdf + x * Foundation.exp(-0.5 * x * x) / (2 * Double.pi).squareRoot())
          }
        }
        var act = [UInt16](repeating: 0, count: count)
        geluForwardBF16(pre: pre, act: &act, count: count, kind: kind)
        var d = gradient
        geluBackwardBF16(pre: pre, gradient: &d, count: count, kind: kind)
        for i in 0..<count {
          let x = Double(floatFromBF16(pre[i]))
          let (y, slope) = reference(x)
          let dx = Double(floatFromBF16(gradient[i])) * slope
          XCTAssertEqual(Double(floatFromBF16(act[i])), y, accuracy: abs(y) * 0x1p-8 + 1e-5, "\(kind) gelu(\(x))")
          XCTAssertEqual(Double(floatFromBF16(d[i])), dx, accuracy: abs(dx) * 0x1p-8 + 1e-5, "\(kind) gelu′(\(x))")
        }
      }
    }
  }

  func testIntegerGemmsAreExact() throws {
    try onEveryKernelPath(.int8) {
      var random = TestRandom(seed: 4)
      for (m, n, k) in [(3, 5, 7), (31, 17, 130)] {
        for transA in [Transpose.none, .transpose] {
          for transB in [Transpose.none, .transpose] {
            let (aRows, aCols) = transA == .none ? (m, k) : (k, m)
            let (bRows, bCols) = transB == .none ? (k, n) : (n, k)
            let lda = aCols + 1, ldb = bCols + 2, ldc = n + 3
            let au = (0..<(aRows * lda)).map { _ in UInt8(truncatingIfNeeded: Int(random.floats(1, in: 0...255)[0])) }
            let as8 = (0..<(aRows * lda)).map { _ in Int8(Int(random.floats(1, in: -127...127)[0])) }
            let b = (0..<(bRows * ldb)).map { _ in Int8(Int(random.floats(1, in: -127...127)[0])) }
            func aAt(_ i: Int, _ p: Int, _ x: [Int]) -> Int { transA == .none ? x[i * lda + p] : x[p * lda + i] }
            func bAt(_ p: Int, _ j: Int) -> Int { Int(transB == .none ? b[p * ldb + j] : b[j * ldb + p]) }
            let zero: UInt8 = 128
            var cu = [Int32](repeating: 7, count: m * ldc)
            gemmU8S8S32(transA, transB, m: m, n: n, k: k, a: au, lda: lda, aZero: zero, b: b, ldb: ldb, c: &cu, ldc: ldc)
            var cs = [Int32](repeating: 1, count: m * ldc)
            gemmS8S8S32(transA, transB, m: m, n: n, k: k, a: as8, lda: lda, b: b, ldb: ldb, accumulate: true, c: &cs, ldc: ldc)
            let auInt = au.map { Int($0) }, asInt = as8.map { Int($0) }
            for i in 0..<m {
              for j in 0..<n {
                var su = 0, ss = 0
                for p in 0..<k {
                  su += (aAt(i, p, auInt) - Int(zero)) * bAt(p, j)
                  ss += aAt(i, p, asInt) * bAt(p, j)
                }
                XCTAssertEqual(Int(cu[i * ldc + j]), su, "u8s8 \(m)x\(n)x\(k) \(transA) \(transB)")
                XCTAssertEqual(Int(cs[i * ldc + j]), ss + 1, "s8s8 accumulate \(m)x\(n)x\(k) \(transA) \(transB)")
              }
            }
          }
        }
      }
    }
  }

  func testKernelNoteNamesTheMissingInstructionSet() throws {
    XCTAssertNil(Precision.fp32.kernelNote)
    for precision in [Precision.bf16, .int8] {
      XCTAssertEqual(precision.usesPortableKernels, !precision.runsNatively)
      if precision.runsNatively { XCTAssertNil(precision.kernelNote) }
      DNNL.forcePortable = true
      defer { DNNL.forcePortable = false }
      XCTAssertTrue(precision.usesPortableKernels)
      let note = try XCTUnwrap(precision.kernelNote)
      XCTAssertTrue(note.contains(precision.requiredISA!) && note.contains("portable kernels"), note)
    }
  }

  /// The case the portable int8 kernel exists for: u8 values over 127 times s8 values, where
  /// oneDNN's AVX2 kernels (no VNNI) add pairs in saturating int16 and come out wrong.
  func testPortableInt8ProductIsExactWhereInt16PairsWouldSaturate() {
    let (m, n, k) = (8, 8, 256)
    var random = TestRandom(seed: 11)
    let a = (0..<(m * k)).map { _ in UInt8(200 + Int(random.floats(1, in: 0...55.99)[0])) }
    let b = (0..<(k * n)).map { i in Int8(i % 3 == 0 ? 127 : -128) }
    DNNL.forcePortable = true
    defer { DNNL.forcePortable = false }
    var c = [Int32](repeating: 0, count: m * n)
    gemmU8S8S32(.none, .none, m: m, n: n, k: k, a: a, lda: k, aZero: 3, b: b, ldb: n, c: &c, ldc: n)
    for i in 0..<m {
      for j in 0..<n {
        var exact: Int64 = 0
        for p in 0..<k { exact += Int64(Int(a[i * k + p]) - 3) * Int64(b[p * n + j]) }
        XCTAssertEqual(Int64(c[i * n + j]), exact, "(\(i), \(j))")
      }
    }
  }

  /// The portable int8 product sums in fp32 over K-blocks of 512 (u8·s8) or 1024 (s8·s8): past one
  /// block, with the extreme values 255, −128 and 127 and both ends of the zero point, the int32
  /// sums are still exact, for every transpose pair and padded leading dimensions.
  func testPortableInt8ProductIsExactOverSeveralBlocksOfExtremeValues() {
    XCTAssertEqual(PortableKernels.exactBlockLength(largestProduct: 255 * 128), 512)
    XCTAssertEqual(PortableKernels.exactBlockLength(largestProduct: 128 * 128), 1024)
    XCTAssertLessThanOrEqual(512 * 255 * 128, 1 << 24)
    XCTAssertGreaterThan(1024 * 255 * 128, 1 << 24)
    DNNL.forcePortable = true
    defer { DNNL.forcePortable = false }
    let (m, n, k) = (3, 4, 1100)
    for (zero, aValue) in [(UInt8(0), UInt8(255)), (UInt8(255), UInt8(0))] {
      for transA in [Transpose.none, .transpose] {
        for transB in [Transpose.none, .transpose] {
          let (aRows, aCols) = transA == .none ? (m, k) : (k, m)
          let (bRows, bCols) = transB == .none ? (k, n) : (n, k)
          let lda = aCols + 1, ldb = bCols + 2, ldc = n + 3
          // A all at the far end from the zero point; B −128 but for a 127 every 97 elements
          let a = [UInt8](repeating: aValue, count: aRows * lda)
          let b = (0..<(bRows * ldb)).map { Int8($0 % 97 == 5 ? 127 : -128) }
          func bAt(_ p: Int, _ j: Int) -> Int { Int(transB == .none ? b[p * ldb + j] : b[j * ldb + p]) }
          var c = [Int32](repeating: 9, count: m * ldc)
          gemmU8S8S32(transA, transB, m: m, n: n, k: k, a: a, lda: lda, aZero: zero, b: b, ldb: ldb, c: &c, ldc: ldc)
          var s8 = [Int32](repeating: 9, count: m * ldc)
          let as8 = [Int8](repeating: -128, count: aRows * lda)
          gemmS8S8S32(transA, transB, m: m, n: n, k: k, a: as8, lda: lda, b: b, ldb: ldb, c: &s8, ldc: ldc)
          for i in 0..<m {
            for j in 0..<n {
              var exact = 0, exactS8 = 0
              for p in 0..<k {
                exact += (Int(aValue) - Int(zero)) * bAt(p, j)
                exactS8 += -128 * bAt(p, j)
              }
              XCTAssertGreaterThan(abs(exact), 1 << 24, "past the integers fp32 holds exactly")
              XCTAssertEqual(Int(c[i * ldc + j]), exact, "u8s8 zero \(zero) \(transA) \(transB) (\(i), \(j))")
              XCTAssertEqual(Int(s8[i * ldc + j]), exactS8, "s8s8 \(transA) \(transB) (\(i), \(j))")
            }
          }
        }
      }
    }
  }

  /// The block length is the bound that matters: 1024 products of 255·(−128) and one 255·127 sum
  /// to −33,358,335, odd and above 2^24, which no fp32 computation gives; in one block of 1024
  /// (the length a product bound of 128·128 would allow) the sum is wrong, in blocks of 512 exact.
  func testPortableInt8BlockLongerThanTheBoundIsNotExact() {
    let k = 1024
    let a = [Float](repeating: 255, count: k)  // [1×K] u8 255 − zero 0
    let b = (0..<k).map { Float($0 == k - 1 ? 127 : -128) }  // [K×1]
    let exact = 255 * (-128 * (k - 1) + 127)
    XCTAssertEqual(exact, -33_358_335)
    var sequential: Float = 0
    for p in 0..<k { sequential += a[p] * b[p] }
    XCTAssertNotEqual(Int(sequential), exact, "a sequential fp32 sum of one block of 1024")
    var honest: Int32 = 0, tooLong: Int32 = 0
    PortableKernels.gemmIntegers(
      .none, .none, m: 1, n: 1, k: k, a: a, lda: k, b: b, ldb: 1, largestProduct: 255 * 128, accumulate: false,
      c: &honest, ldc: 1)
    PortableKernels.gemmIntegers(
      .none, .none, m: 1, n: 1, k: k, a: a, lda: k, b: b, ldb: 1, largestProduct: 128 * 128, accumulate: false,
      c: &tooLong, ldc: 1)
    XCTAssertEqual(Int(honest), exact)
    XCTAssertNotEqual(Int(tooLong), exact, "sgemm over one block of 1024")
  }

  /// The portable `Int8Matmul`'s row-at-a-time epilogue gives the values of oneDNN's definition
  /// computed an element at a time (bit for bit), for every epilogue and both GELUs, with a row
  /// length (37) that is not a multiple of GELU's vector width.
  func testPortableInt8MatmulEpilogueMatchesElementwiseDefinition() {
    DNNL.forcePortable = true
    defer { DNNL.forcePortable = false }
    let (m, n, k) = (5, 37, 70)
    var random = TestRandom(seed: 21)
    let a = (0..<(m * k)).map { _ in UInt8(Int(random.floats(1, in: 0...255.99)[0])) }
    let w = (0..<(k * n)).map { _ in Int8(Int(random.floats(1, in: -127.99...127.99)[0])) }
    let scales = random.floats(n, in: 1e-5...1e-4), bias = random.floats(n, in: -1...1)
    let srcZero = 131
    var sums = [Int32](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        for p in 0..<k { sums[i * n + j] += Int32((Int(a[i * k + p]) - srcZero) * Int(w[p * n + j])) }
      }
    }
    let epilogues: [Int8MatmulEpilogue] = [
      .float, .accumulate, .u8(scale: 0.05, zeroPoint: 7, gelu: nil), .u8(scale: 0.05, zeroPoint: 20, gelu: .tanh),
      .u8(scale: 0.05, zeroPoint: 20, gelu: .erf),
    ]
    for epilogue in epilogues {
      let matmul = Int8Matmul(m: m, n: n, k: k, srcZeroPoint: srcZero, weights: w, scales: scales, bias: bias, epilogue: epilogue)
      XCTAssertEqual(matmul.implementation, "portable (sgemm)")
      var floats = (0..<(m * n)).map { Float($0) * 0.25 }
      let before = floats
      var bytes = [UInt8](repeating: 0, count: m * n)
      switch epilogue {
      case .float, .accumulate: floats.withUnsafeMutableBytes { matmul.run(src: a, dst: $0.baseAddress!) }
      case .u8: bytes.withUnsafeMutableBytes { matmul.run(src: a, dst: $0.baseAddress!) }
      }
      for i in 0..<(m * n) {
        let j = i % n
        let sum = Float(sums[i]) + bias[j] / scales[j]
        let v = sum * scales[j]
        switch epilogue {
        case .float: XCTAssertEqual(floats[i], v, "float \(i)")
        case .accumulate: XCTAssertEqual(floats[i], before[i] + v, "accumulate \(i)")
        case .u8(let scale, let zeroPoint, let gelu):
          var g = v
          if let gelu { geluForward(out: &g, inp: [v], count: 1, kind: gelu) }
          let scaled = gelu == nil ? sum * (scales[j] / scale) : g * (1 / scale)
          let q = scaled.rounded(.toNearestOrEven) + Float(zeroPoint)
          XCTAssertEqual(bytes[i], UInt8(min(max(q, 0), 255)), "\(epilogue) \(i)")
        }
      }
    }
  }
}

/// Runs `body` on every kernel path this CPU has for `precision`: oneDNN's where the CPU has its
/// instructions, and the portable one always.
func onEveryKernelPath(_ precision: Precision, _ body: () throws -> Void) rethrows {
  for portable in precision.runsNatively ? [false, true] : [true] {
    DNNL.forcePortable = portable
    defer { DNNL.forcePortable = false }
    try body()
  }
}
