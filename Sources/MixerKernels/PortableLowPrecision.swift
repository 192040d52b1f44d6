// Portable bf16 and int8 products: the arithmetic of oneDNN's low-precision kernels (DNNL.swift)
// on CPUs that oneDNN 2.6 has no correct kernel for, computed by OpenBLAS on widened operands.
//   bf16  oneDNN 2.6 has no bf16 matmul below avx512_core (an AVX2-only CPU such as an AMD EPYC
//         without AVX-512 gets `unimplemented`). Here the bf16 operands are widened to fp32,
//         which is exact, and multiplied by sgemm: the same products (a bf16·bf16 product is
//         exact in fp32) accumulated in fp32, in OpenBLAS's order instead of oneDNN's.
//   int8  oneDNN's AVX2 int8 kernels without VNNI add pairs of u8·s8 products in saturating
//         int16 (`vpmaddubsw`), so a product of values over 127 comes out wrong (checked: a
//         u8·s8 GEMM with values 200-255 was wrong in every element). Here the integers are
//         widened to fp32 and multiplied by sgemm over K-blocks short enough that every partial
//         sum is an integer of magnitude at most 2^24, which fp32 holds exactly: with
//         |(u8 − zero)·s8| ≤ 255·128 = 32,640 a block of 512 sums to at most 16,711,680 < 2^24
//         in any order (FMA too). Each block's sums are converted to int32 and added, so the
//         int32 result is exact, as the VNNI/AMX kernels' are. A weight matrix is widened once,
//         when its product is prepared (`PortableInt8Matmul`).
// The elementwise parts (bias, GELU, output scales and zero points, rounding to nearest even,
// saturation) follow oneDNN's definitions; they and the widening run a chunk of rows per kernel
// thread (`parallelRows`), each row as on one thread, so the thread count changes no bit. These
// kernels are slower than fp32: they exist so that a bf16 run or an int8 model gives the same
// numbers on any CPU; the start-up line says when they are used (`Precision.kernelNote`).
// `precision.usesPortableKernels` chooses them.

import Foundation

/// bf16 values `[rows × cols]` stored with row stride `ld`, widened to fp32 (exact) into a buffer
/// with the same layout (the caller deallocates it).
private func widenedBF16(_ x: UnsafePointer<UInt16>, rows: Int, cols: Int, ld: Int) -> UnsafeMutablePointer<Float> {
  let count = rows == 0 ? 0 : (rows - 1) * ld + cols
  let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
  parallelRows(rows, elementsPerRow: cols) { _, rows in
    for r in rows {
      for j in 0..<cols { out[r * ld + j] = floatFromBF16(x[r * ld + j]) }
    }
  }
  return out
}

/// u8 values minus `zero`, as fp32 (exact), in the same layout (the caller deallocates it).
private func widenedU8(_ x: UnsafePointer<UInt8>, zero: Int, rows: Int, cols: Int, ld: Int) -> UnsafeMutablePointer<Float> {
  let count = rows == 0 ? 0 : (rows - 1) * ld + cols
  let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
  let z = Float(zero)
  parallelRows(rows, elementsPerRow: cols) { _, rows in
    for r in rows {
      for j in 0..<cols { out[r * ld + j] = Float(x[r * ld + j]) - z }
    }
  }
  return out
}

/// s8 values as fp32 (exact), in the same layout (the caller deallocates it).
private func widenedS8(_ x: UnsafePointer<Int8>, rows: Int, cols: Int, ld: Int) -> UnsafeMutablePointer<Float> {
  let count = rows == 0 ? 0 : (rows - 1) * ld + cols
  let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
  parallelRows(rows, elementsPerRow: cols) { _, rows in
    for r in rows {
      for j in 0..<cols { out[r * ld + j] = Float(x[r * ld + j]) }
    }
  }
  return out
}

/// The stored shape of op(X) `[rows × cols]`: as given, or swapped when X is stored transposed.
@inline(__always)
private func stored(_ trans: Transpose, _ rows: Int, _ cols: Int) -> (rows: Int, cols: Int) {
  trans == .none ? (rows, cols) : (cols, rows)
}

/// The largest |u8 − zero| over u8 values: 255 for a zero point in 0...255.
@inline(__always)
private func largestU8Difference(zero: Int) -> Int { max(abs(zero), abs(255 - zero)) }

enum PortableKernels {
  /// The longest K-block (a power of two) over which sgemm sums integer products of magnitude at
  /// most `largestProduct` exactly: every partial sum of the block, in any order, is an integer of
  /// magnitude at most block·largestProduct ≤ 2^24, and fp32 holds every integer up to 2^24.
  /// 512 for u8·s8 (255·128 = 32,640), 1024 for s8·s8 (128·128).
  static func exactBlockLength(largestProduct: Int) -> Int {
    precondition(largestProduct > 0 && largestProduct <= 1 << 24, "portable int8: a product of \(largestProduct) is not exact in fp32")
    var block = 1
    while 2 * block * largestProduct <= 1 << 24 { block *= 2 }
    return block
  }

  /// `matmulBF16` (fp32 C) on OpenBLAS.
  static func matmulBF16(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let sa = stored(transA, m, k), sb = stored(transB, k, n)
    let wa = widenedBF16(a, rows: sa.rows, cols: sa.cols, ld: lda)
    let wb = widenedBF16(b, rows: sb.rows, cols: sb.cols, ld: ldb)
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
    parallelRows(m, elementsPerRow: n) { _, rows in
      for r in rows {
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
  }

  /// `act = gelu(pre)` on bf16 values, in fp32 arithmetic.
  static func geluForwardBF16(pre: UnsafePointer<UInt16>, act: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
    let x = widenedBF16(pre, rows: 1, cols: count, ld: count)
    defer { x.deallocate() }
    geluForward(out: x, inp: x, count: count, kind: kind)
    convertToBF16(x, act, count: count)
  }

  /// `d = d · gelu′(pre)` in place on bf16 values, in fp32 arithmetic.
  static func geluBackwardBF16(pre: UnsafePointer<UInt16>, gradient d: UnsafeMutablePointer<UInt16>, count: Int, kind: GELUKind) {
    let x = widenedBF16(pre, rows: 1, cols: count, ld: count)
    let g = widenedBF16(d, rows: 1, cols: count, ld: count)
    defer { x.deallocate(); g.deallocate() }
    geluBackward(dinp: g, dout: g, inp: x, count: count, kind: kind)
    convertToBF16(g, d, count: count)
  }

  /// `C (int32) = op(A) · op(B) (+ C)` for fp32 operands holding integers whose products are at
  /// most `largestProduct` in magnitude, exact: sgemm over K-blocks of
  /// `exactBlockLength(largestProduct:)`, each block's sums converted to int32 and added (wrapping,
  /// as int32 accumulation does).
  static func gemmIntegers(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, largestProduct: Int,
    accumulate: Bool, c: UnsafeMutablePointer<Int32>, ldc: Int
  ) {
    let block = exactBlockLength(largestProduct: largestProduct)
    if !accumulate {
      parallelRows(m, elementsPerRow: n) { _, rows in
        for r in rows { (c + r * ldc).update(repeating: 0, count: n) }
      }
    }
    guard m > 0, n > 0 else { return }
    let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, m * n))  // [M×N] one block's sums
    defer { out.deallocate() }
    var k0 = 0
    while k0 < k {
      let length = min(block, k - k0)
      let aBlock = transA == .none ? a + k0 : a + k0 * lda
      let bBlock = transB == .none ? b + k0 * ldb : b + k0
      gemmUnprofiled(transA, transB, m: m, n: n, k: length, a: aBlock, lda: lda, b: bBlock, ldb: ldb, c: out, ldc: n)
      parallelRows(m, elementsPerRow: n) { _, rows in
        for r in rows {
          let row = out + r * n, sums = c + r * ldc
          for j in 0..<n { sums[j] &+= Int32(row[j]) }
        }
      }
      k0 += length
    }
  }

  /// `C (int32) = op(A − aZero) · op(B) (+ C)` for u8 A and s8 B, exact (`gemmIntegers`).
  static func gemmInt8(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<UInt8>, lda: Int, aZero: Int, b: UnsafePointer<Int8>, ldb: Int,
    accumulate: Bool, c: UnsafeMutablePointer<Int32>, ldc: Int
  ) {
    let sa = stored(transA, m, k), sb = stored(transB, k, n)
    let wa = widenedU8(a, zero: aZero, rows: sa.rows, cols: sa.cols, ld: lda)
    let wb = widenedS8(b, rows: sb.rows, cols: sb.cols, ld: ldb)
    defer { wa.deallocate(); wb.deallocate() }
    gemmIntegers(
      transA, transB, m: m, n: n, k: k, a: wa, lda: lda, b: wb, ldb: ldb,
      largestProduct: largestU8Difference(zero: aZero) * 128, accumulate: accumulate, c: c, ldc: ldc)
  }

  /// `C (int32) = op(A) · op(B) (+ C)` for s8 A and s8 B, exact (`gemmIntegers`).
  static func gemmInt8(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
    a: UnsafePointer<Int8>, lda: Int, b: UnsafePointer<Int8>, ldb: Int,
    accumulate: Bool, c: UnsafeMutablePointer<Int32>, ldc: Int
  ) {
    let sa = stored(transA, m, k), sb = stored(transB, k, n)
    let wa = widenedS8(a, rows: sa.rows, cols: sa.cols, ld: lda)
    let wb = widenedS8(b, rows: sb.rows, cols: sb.cols, ld: ldb)
    defer { wa.deallocate(); wb.deallocate() }
    gemmIntegers(
      transA, transB, m: m, n: n, k: k, a: wa, lda: lda, b: wb, ldb: ldb, largestProduct: 128 * 128,
      accumulate: accumulate, c: c, ldc: ldc)
  }
}

/// An int8 weight matrix `[K×N]` widened to fp32 once (exact), for the portable products of every
/// row count and epilogue of one layer.
final class PortableInt8Weights {
  let k: Int, n: Int
  /// `[K×N]`
  let values: [Float]

  init(k: Int, n: Int, weights w: UnsafePointer<Int8>) {
    (self.k, self.n) = (k, n)
    values = [Float](unsafeUninitializedCapacity: k * n) { buffer, initialized in
      for i in 0..<(k * n) { buffer[i] = Float(w[i]) }
      initialized = k * n
    }
  }
}

/// `Int8Matmul` on portable kernels: the weights widened to fp32 once; per call the u8 input
/// widened and the exact int32 sums of `PortableKernels.gemmIntegers`, then oneDNN's epilogue,
/// a row at a time: `v = scale[n]·(sum + bias[n]/scale[n])`, and for a u8 output
/// `sat_u8(round(g(v)/s) + z)` (round to nearest even).
final class PortableInt8Matmul {
  let m: Int, n: Int, k: Int
  /// `[K×N]` the s8 weights as fp32, shared by the products of one layer
  private let weights: PortableInt8Weights
  private let scales: [Float], biasOverScale: [Float]
  /// `[N]` scale[n]/s: the output scale of a u8 output without GELU
  private let outputScales: [Float]
  private let srcZeroPoint: Int
  private let epilogue: Int8MatmulEpilogue

  init(
    m: Int, n: Int, k: Int, srcZeroPoint: Int, weights: PortableInt8Weights, scales: [Float], bias: [Float],
    epilogue: Int8MatmulEpilogue
  ) {
    precondition(weights.k == k && weights.n == n, "PortableInt8Matmul: weights of another shape")
    (self.m, self.n, self.k, self.srcZeroPoint, self.epilogue) = (m, n, k, srcZeroPoint, epilogue)
    _ = PortableKernels.exactBlockLength(largestProduct: largestU8Difference(zero: srcZeroPoint) * 128)
    self.weights = weights
    self.scales = scales
    biasOverScale = (0..<n).map { bias[$0] / scales[$0] }
    if case .u8(let scale, _, _) = epilogue {
      outputScales = scales.map { $0 / scale }
    } else {
      outputScales = scales
    }
  }

  func run(src a: UnsafePointer<UInt8>, dst c: UnsafeMutableRawPointer) {
    KernelProfile.measure("int8 \(m)x\(n)x\(k) portable", flops: 2 * Double(m) * Double(n) * Double(k)) {
      let sums = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, m * n))  // [M×N]
      let x = widenedU8(a, zero: srcZeroPoint, rows: m, cols: k, ld: k)  // [M×K] u8 − z
      defer { sums.deallocate(); x.deallocate() }
      weights.values.withUnsafeBufferPointer { w in
        PortableKernels.gemmIntegers(
          .none, .none, m: m, n: n, k: k, a: x, lda: k, b: w.baseAddress!, ldb: n,
          largestProduct: largestU8Difference(zero: srcZeroPoint) * 128, accumulate: false, c: sums, ldc: n)
      }
      scales.withUnsafeBufferPointer { scales in
        biasOverScale.withUnsafeBufferPointer { biasOverScale in
          outputScales.withUnsafeBufferPointer { outputScales in
            epilogueRows(sums: sums, scales: scales.baseAddress!, biasOverScale: biasOverScale.baseAddress!,
                         outputScales: outputScales.baseAddress!, dst: c)
          }
        }
      }
    }
  }

  /// The epilogue over every row of `sums`, into `dst` (fp32 overwritten or accumulated, or u8).
  private func epilogueRows(
    sums: UnsafePointer<Int32>, scales: UnsafePointer<Float>, biasOverScale: UnsafePointer<Float>,
    outputScales: UnsafePointer<Float>, dst c: UnsafeMutableRawPointer
  ) {
    switch epilogue {
    case .float:
      let out = c.assumingMemoryBound(to: Float.self)
      parallelRows(m, elementsPerRow: n) { _, rows in
        for r in rows {
          let rowSums = sums + r * n, rowOut = out + r * n
          for j in 0..<n { rowOut[j] = (Float(rowSums[j]) + biasOverScale[j]) * scales[j] }
        }
      }
    case .accumulate:
      let out = c.assumingMemoryBound(to: Float.self)
      parallelRows(m, elementsPerRow: n) { _, rows in
        for r in rows {
          let rowSums = sums + r * n, rowOut = out + r * n
          for j in 0..<n { rowOut[j] += (Float(rowSums[j]) + biasOverScale[j]) * scales[j] }
        }
      }
    case .u8(let scale, let zeroPoint, let gelu):
      // as oneDNN's attributes: the GELU post-op scales its output by 1/s; without it the
      // output scale is scale[n]/s
      let out = c.assumingMemoryBound(to: UInt8.self)
      let zero = Float(zeroPoint)
      guard let gelu else {
        parallelRows(m, elementsPerRow: n) { _, rows in
          for r in rows {
            let rowSums = sums + r * n, rowOut = out + r * n
            for j in 0..<n {
              let q = ((Float(rowSums[j]) + biasOverScale[j]) * outputScales[j]).rounded(.toNearestOrEven) + zero
              rowOut[j] = UInt8(min(max(q, 0), 255))
            }
          }
        }
        return
      }
      let inverse = 1 / scale
      parallelRows(m, elementsPerRow: n) { _, rows in
        let v = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))  // [N] one row before GELU
        defer { v.deallocate() }
        for r in rows {
          let rowSums = sums + r * n, rowOut = out + r * n
          for j in 0..<n { v[j] = (Float(rowSums[j]) + biasOverScale[j]) * scales[j] }
          geluForward(out: v, inp: v, count: n, kind: gelu)  // a row per call, as on one thread
          for j in 0..<n {
            let q = (v[j] * inverse).rounded(.toNearestOrEven) + zero
            rowOut[j] = UInt8(min(max(q, 0), 255))
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
    let x = widenedBF16(a, rows: m, cols: k, ld: k)
    defer { x.deallocate() }
    weights.withUnsafeBufferPointer { w in
      gemm(.none, .none, m: m, n: n, k: k, a: x, lda: k, b: w.baseAddress!, ldb: n, beta: 0, c: c, ldc: n)
    }
    bias.withUnsafeBufferPointer { bias in
      parallelRows(m, elementsPerRow: n) { _, rows in
        for r in rows {
          for j in 0..<n { c[r * n + j] += bias[j] }
        }
      }
    }
  }
}
