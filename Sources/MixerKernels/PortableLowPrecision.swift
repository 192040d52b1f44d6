// Portable bf16 and int8 products: the arithmetic of oneDNN's low-precision kernels (DNNL.swift)
// on CPUs that oneDNN 2.6 has no correct kernel for, computed by OpenBLAS on widened operands.
//   bf16  oneDNN 2.6 has no bf16 matmul below avx512_core (an AVX2-only CPU such as an AMD EPYC
//         without AVX-512 gets `unimplemented`). Here the bf16 operands are widened to fp32,
//         which is exact, and multiplied by sgemm: the same products (a bf16·bf16 product is
//         exact in fp32) accumulated in fp32, in OpenBLAS's order instead of oneDNN's.
//   int8  oneDNN's AVX2 int8 kernels without VNNI add pairs of u8·s8 products in saturating
//         int16 (`vpmaddubsw`), so a product of values over 127 comes out wrong (checked: a
//         u8·s8 GEMM with values 200-255 was wrong in every element). Here the integers are
//         widened to fp64 and multiplied by dgemm: every partial sum is an integer below 2^53,
//         so the int32 result is exact in any order, as the VNNI/AMX kernels' are.
// The elementwise parts (bias, GELU, output scales and zero points, rounding to nearest even,
// saturation) follow oneDNN's definitions. These kernels are slower than fp32: they exist so that
// a bf16 run or an int8 model gives the same numbers on any CPU; the start-up line says when they
// are used (`Precision.kernelNote`). `precision.usesPortableKernels` chooses them.

import Foundation

/// The `rows × cols` matrix stored from `x` with row stride `ld`, widened element by element into
/// a buffer with the same layout (the caller deallocates it).
private func widened<T>(
  _ x: UnsafePointer<T>, rows: Int, cols: Int, ld: Int, _ convert: (T) -> Float
) -> UnsafeMutablePointer<Float> {
  let count = rows == 0 ? 0 : (rows - 1) * ld + cols
  let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
  for r in 0..<rows {
    for j in 0..<cols { out[r * ld + j] = convert(x[r * ld + j]) }
  }
  return out
}

/// The same, widened to Double.
private func widenedDouble<T>(
  _ x: UnsafePointer<T>, rows: Int, cols: Int, ld: Int, _ convert: (T) -> Double
) -> UnsafeMutablePointer<Double> {
  let count = rows == 0 ? 0 : (rows - 1) * ld + cols
  let out = UnsafeMutablePointer<Double>.allocate(capacity: max(1, count))
  for r in 0..<rows {
    for j in 0..<cols { out[r * ld + j] = convert(x[r * ld + j]) }
  }
  return out
}

/// The stored shape of op(X) `[rows × cols]`: as given, or swapped when X is stored transposed.
@inline(__always)
private func stored(_ trans: Transpose, _ rows: Int, _ cols: Int) -> (rows: Int, cols: Int) {
  trans == .none ? (rows, cols) : (cols, rows)
}

enum PortableKernels {
  /// `matmulBF16` (fp32 C) on OpenBLAS.
  static func matmulBF16(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let sa = stored(transA, m, k), sb = stored(transB, k, n)
    let wa = widened(a, rows: sa.rows, cols: sa.cols, ld: lda, floatFromBF16)
    let wb = widened(b, rows: sb.rows, cols: sb.cols, ld: ldb, floatFromBF16)
    defer { wa.deallocate(); wb.deallocate() }
    gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: wa, lda: lda, b: wb, ldb: ldb, beta: beta, c: c, ldc: ldc)
  }

  /// `matmulBF16` with a bf16 C and an optional bias along `biasAxis`, added before the rounding.
  static func matmulBF16(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
    bias: UnsafePointer<Float>?, biasAxis: BiasAxis, c: UnsafeMutablePointer<UInt16>, ldc: Int
  ) {
    let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, m * n))
    defer { out.deallocate() }
    matmulBF16(transA, transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: out, ldc: n)
    for r in 0..<m {
      let row = out + r * n
      if let bias {
        switch biasAxis {
        case .rows: for j in 0..<n { row[j] += bias[r] }
        case .columns: for j in 0..<n { row[j] += bias[j] }
        }
      }
      convertToBF16(row, c + r * ldc, count: n)
    }
  }

  /// `act = gelu(pre)` on bf16 values, in fp32 arithmetic.
  static func geluForwardBF16(pre: UnsafePointer<UInt16>, act: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
    let x = widened(pre, rows: 1, cols: count, ld: count, floatFromBF16)
    defer { x.deallocate() }
    geluForward(out: x, inp: x, count: count, kind: kind)
    convertToBF16(x, act, count: count)
  }

  /// `d = d · gelu′(pre)` in place on bf16 values, in fp32 arithmetic.
  static func geluBackwardBF16(pre: UnsafePointer<UInt16>, gradient d: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
    let x = widened(pre, rows: 1, cols: count, ld: count, floatFromBF16)
    let g = widened(d, rows: 1, cols: count, ld: count, floatFromBF16)
    defer { x.deallocate(); g.deallocate() }
    geluBackward(dinp: g, dout: g, inp: x, count: count, kind: kind)
    convertToBF16(g, d, count: count)
  }

  /// `C (int32) = op(A − aZero) · op(B) (+ C)`, exact: the integers multiplied by dgemm.
  static func gemmInt8<A, B>(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<A>, lda: Int, aZero: Int, aValue: (A) -> Double,
    b: UnsafePointer<B>, ldb: Int, bValue: (B) -> Double,
    accumulate: Bool, c: UnsafeMutablePointer<Int32>, ldc: Int
  ) {
    let sa = stored(transA, m, k), sb = stored(transB, k, n)
    let zero = Double(aZero)
    let wa = widenedDouble(a, rows: sa.rows, cols: sa.cols, ld: lda) { aValue($0) - zero }
    let wb = widenedDouble(b, rows: sb.rows, cols: sb.cols, ld: ldb, bValue)
    let out = UnsafeMutablePointer<Double>.allocate(capacity: max(1, m * n))
    defer { wa.deallocate(); wb.deallocate(); out.deallocate() }
    gemmDouble(transA, transB, m: m, n: n, k: k, a: wa, lda: lda, b: wb, ldb: ldb, c: out, ldc: n)
    for r in 0..<m {
      for j in 0..<n {
        let sum = Int32(truncatingIfNeeded: Int64(out[r * n + j]))
        c[r * ldc + j] = accumulate ? c[r * ldc + j] &+ sum : sum
      }
    }
  }
}

/// `Int8Matmul` on portable kernels: the exact int32 sums of `PortableKernels.gemmInt8`, then
/// oneDNN's epilogue: `v = scale[n]·(sum + bias[n]/scale[n])`, and for a u8 output
/// `sat_u8(round(g(v)/s) + z)` (round to nearest even).
final class PortableInt8Matmul {
  let m: Int, n: Int, k: Int
  private let weights: [Int8]
  private let scales: [Float], biasOverScale: [Float]
  private let srcZeroPoint: Int
  private let epilogue: Int8MatmulEpilogue

  init(
    m: Int, n: Int, k: Int, srcZeroPoint: Int, weights w: UnsafePointer<Int8>, scales: [Float], bias: [Float],
    epilogue: Int8MatmulEpilogue
  ) {
    (self.m, self.n, self.k, self.srcZeroPoint, self.epilogue) = (m, n, k, srcZeroPoint, epilogue)
    weights = Array(UnsafeBufferPointer(start: w, count: k * n))
    self.scales = scales
    biasOverScale = (0..<n).map { bias[$0] / scales[$0] }
  }

  func run(src a: UnsafePointer<UInt8>, dst c: UnsafeMutableRawPointer) {
    KernelProfile.measure("int8 \(m)x\(n)x\(k) portable", flops: 2 * Double(m) * Double(n) * Double(k)) {
      let sums = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, m * n))
      defer { sums.deallocate() }
      weights.withUnsafeBufferPointer { w in
        PortableKernels.gemmInt8(
          .none, .none, m: m, n: n, k: k, a: a, lda: k, aZero: srcZeroPoint, aValue: { Double($0) },
          b: w.baseAddress!, ldb: n, bValue: { Double($0) }, accumulate: false, c: sums, ldc: n)
      }
      for r in 0..<m {
        for j in 0..<n {
          let sum = Float(sums[r * n + j]) + biasOverScale[j]
          let v = sum * scales[j]
          let i = r * n + j
          switch epilogue {
          case .float:
            c.assumingMemoryBound(to: Float.self)[i] = v
          case .accumulate:
            c.assumingMemoryBound(to: Float.self)[i] += v
          case .u8(let scale, let zeroPoint, let gelu):
            // as oneDNN's attributes: the GELU post-op scales its output by 1/s; without it the
            // output scale is scale[n]/s
            var g = v
            if let gelu {
              let x = v
              geluForward(out: &g, inp: [x], count: 1, kind: gelu)
            }
            let scaled = gelu == nil ? sum * (scales[j] / scale) : g * (1 / scale)
            let q = scaled.rounded(.toNearestOrEven) + Float(zeroPoint)
            c.assumingMemoryBound(to: UInt8.self)[i] = UInt8(min(max(q, 0), 255))
          }
        }
      }
    }
  }
}

/// `BF16Matmul` on portable kernels: the weights rounded to bf16 once and kept widened.
final class PortableBF16Matmul {
  let m: Int, n: Int, k: Int
  private let weights: [Float]
  private let bias: [Float]

  init(m: Int, n: Int, k: Int, weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
    (self.m, self.n, self.k) = (m, n, k)
    weights = (0..<(k * n)).map { floatFromBF16(bf16Bits(w[$0])) }
    self.bias = Array(UnsafeBufferPointer(start: bias, count: n))
  }

  func run(src a: UnsafePointer<UInt16>, dst c: UnsafeMutablePointer<Float>) {
    let x = widened(a, rows: m, cols: k, ld: k, floatFromBF16)
    defer { x.deallocate() }
    weights.withUnsafeBufferPointer { w in
      gemm(.none, .none, m: m, n: n, k: k, a: x, lda: k, b: w.baseAddress!, ldb: n, beta: 0, c: c, ldc: n)
    }
    for r in 0..<m {
      for j in 0..<n { c[r * n + j] += bias[j] }
    }
  }
}
