// The per-layer matrix-product kernels of inference, one type per precision:
//   out[M×N] = op(X)[M×K] · W[K×N] + bias[N]        X fp32, out fp32 (overwritten)
// op(X) is X as stored `[M×K]`, or X stored `[K×M]` and read transposed (the token-mixing MLP
// reads the token-major LayerNorm output `[S, B·C]` this way). Weights are prepared once, when
// the plan is built:
//   fp32  OpenBLAS sgemm on the model's own parameters
//   bf16  weights rounded to bfloat16 once; X rounded per call; oneDNN matmul, fp32 accumulate
//   int8  weights s8 with one scale per output column (absmax/127); X quantized per call to u8
//         with the layer's calibrated scale and zero point; oneDNN u8s8s32 (exact int32 sums);
//         out = s_x · s_w[n] · (Σ_k q_x·q_w − z_x · Σ_k q_w[k, n]) + bias[n]
// The zero point is applied through the column sums of the int8 weights (exact integers), so
// the GEMM itself runs with a zero offset.

import MixerKernels

/// The affine u8 quantization of one layer's input: q = clamp(round(x / scale) + zeroPoint, 0, 255).
public struct ActivationQuantization: Codable, Equatable, Sendable {
  public var scale: Float
  public var zeroPoint: Int

  public init(scale: Float, zeroPoint: Int) {
    self.scale = scale
    self.zeroPoint = zeroPoint
  }

  /// The u8 quantization covering [low, high] (widened to include 0, so zero is exact).
  public init(low: Float, high: Float) {
    let lo = min(low, 0), hi = max(high, 0)
    let scale = max(hi - lo, 1e-8) / 255
    self.scale = scale
    self.zeroPoint = Int(min(255, max(0, (-lo / scale).rounded())))
  }
}

/// Int8 weights `[K×N]` with one scale per output column: W ≈ q · scale[n].
public struct QuantizedWeights: Sendable {
  public var values: [Int8]
  public var scales: [Float]

  /// Symmetric per-output-channel quantization of `w` `[K×N]`: scale = max_k |w[k, n]| / 127.
  public init(_ w: UnsafePointer<Float>, inputs k: Int, outputs n: Int) {
    var absMax = [Float](repeating: 0, count: n)
    for r in 0..<k { for j in 0..<n { absMax[j] = max(absMax[j], abs(w[r * n + j])) } }
    scales = absMax.map { $0 > 0 ? $0 / 127 : 1 }
    var q = [Int8](repeating: 0, count: k * n)
    for r in 0..<k {
      for j in 0..<n { q[r * n + j] = Int8(max(-127, min(127, (w[r * n + j] / scales[j]).rounded()))) }
    }
    values = q
  }

  public init(values: [Int8], scales: [Float]) {
    self.values = values
    self.scales = scales
  }
}

/// Scratch the kernels share within one plan (grown to the largest layer and batch).
final class KernelScratch {
  var bf16: [UInt16] = []
  var u8: [UInt8] = []
  var i32: [Int32] = []

  func reserve(elements inputCount: Int, outputs outputCount: Int) {
    if bf16.count < inputCount { bf16 = [UInt16](repeating: 0, count: inputCount) }
    if u8.count < inputCount { u8 = [UInt8](repeating: 0, count: inputCount) }
    if i32.count < outputCount { i32 = [Int32](repeating: 0, count: outputCount) }
  }
}

/// One matrix product of the network in one precision.
protocol ProductKernel: AnyObject {
  var precision: Precision { get }
  /// K, N
  var inputs: Int { get }
  var outputs: Int { get }
  /// out[M×N] = op(X)[M×K] · W + bias; X stored `[M×K]`, or `[K×M]` when `transposed`.
  func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch)
}

/// out[m, :] = bias for every row.
@inline(__always)
func fillRows(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
  for r in 0..<rows { (out + r * cols).update(from: bias, count: cols) }
}

/// sgemm on the model's fp32 weights.
final class FP32Product: ProductKernel {
  let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>
  let inputs: Int, outputs: Int
  var precision: Precision { .fp32 }

  init(weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int) {
    (self.weight, self.bias, self.inputs, self.outputs) = (weight, bias, inputs, outputs)
  }

  func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    fillRows(out, bias: bias, rows: m, cols: outputs)
    gemm(
      transposed ? .transpose : .none, .none, m: m, n: outputs, k: inputs, a: x, lda: transposed ? m : inputs,
      b: weight, ldb: outputs, beta: 1, c: out, ldc: outputs)
  }
}

/// oneDNN bf16 matmul: weights rounded once, activations per call, fp32 accumulation.
final class BF16Product: ProductKernel {
  let weight: [UInt16]
  let bias: [Float]
  let inputs: Int, outputs: Int
  var precision: Precision { .bf16 }

  init(weight: UnsafePointer<Float>, bias: [Float], inputs: Int, outputs: Int) {
    var w = [UInt16](repeating: 0, count: inputs * outputs)
    w.withUnsafeMutableBufferPointer { convertToBF16(weight, $0.baseAddress!, count: inputs * outputs) }
    (self.weight, self.bias, self.inputs, self.outputs) = (w, bias, inputs, outputs)
  }

  func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    let count = m * inputs
    scratch.bf16.withUnsafeMutableBufferPointer { xb in
      convertToBF16(x, xb.baseAddress!, count: count)
      bias.withUnsafeBufferPointer { fillRows(out, bias: $0.baseAddress!, rows: m, cols: outputs) }
      weight.withUnsafeBufferPointer { w in
        matmulBF16(
          transposed ? .transpose : .none, .none, m: m, n: outputs, k: inputs, a: xb.baseAddress!,
          lda: transposed ? m : inputs, b: w.baseAddress!, ldb: outputs, beta: 1, c: out, ldc: outputs)
      }
    }
  }
}

/// oneDNN u8·s8 → s32 GEMM with per-output-channel weight scales and a calibrated input range.
final class Int8Product: ProductKernel {
  let weights: QuantizedWeights
  let columnSums: [Int32]
  let bias: [Float]
  let input: ActivationQuantization
  let inputs: Int, outputs: Int
  var precision: Precision { .int8 }

  init(weights: QuantizedWeights, bias: [Float], input: ActivationQuantization, inputs: Int, outputs: Int) {
    var sums = [Int32](repeating: 0, count: outputs)
    for r in 0..<inputs { for j in 0..<outputs { sums[j] += Int32(weights.values[r * outputs + j]) } }
    (self.weights, self.columnSums, self.bias, self.input) = (weights, sums, bias, input)
    (self.inputs, self.outputs) = (inputs, outputs)
  }

  func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    let n = outputs, count = m * inputs
    scratch.u8.withUnsafeMutableBufferPointer { q in
      scratch.i32.withUnsafeMutableBufferPointer { acc in
        quantizeU8(q.baseAddress!, x, count: count, input)
        weights.values.withUnsafeBufferPointer { w in
          gemmU8S8S32(
            transposed ? .transpose : .none, .none, m: m, n: n, k: inputs, a: q.baseAddress!,
            lda: transposed ? m : inputs, b: w.baseAddress!, ldb: n, c: acc.baseAddress!, ldc: n)
        }
        let zero = Int32(input.zeroPoint), scale = input.scale
        weights.scales.withUnsafeBufferPointer { ws in
          columnSums.withUnsafeBufferPointer { sums in
            bias.withUnsafeBufferPointer { b in
              for r in 0..<m {
                let a = acc.baseAddress! + r * n, o = out + r * n
                for j in 0..<n { o[j] = scale * ws[j] * Float(a[j] &- zero &* sums[j]) + b[j] }
              }
            }
          }
        }
      }
    }
  }
}

/// q[i] = clamp(round(x[i] / scale) + zeroPoint, 0, 255) (a plain loop the compiler vectorises)
func quantizeU8(_ q: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Float>, count: Int, _ p: ActivationQuantization) {
  let inverse = 1 / p.scale, zero = Float(p.zeroPoint)
  for i in 0..<count {
    let v = (x[i] * inverse + zero).rounded(.toNearestOrEven)
    q[i] = UInt8(Int32(min(255, max(0, v))))
  }
}
