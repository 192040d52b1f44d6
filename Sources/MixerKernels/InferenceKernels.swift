// The per-layer matrix-product kernels of inference, one type per precision:
//   out[M×N] = op(X)[M×K] · W[K×N] + bias[N]        X fp32, out fp32 (overwritten)
// op(X) is X as stored `[M×K]`, or X stored `[K×M]` and read transposed (the token-mixing MLP
// reads the token-major LayerNorm output `[S, B·C]` this way). Weights are prepared once, when
// the plan is built:
//   fp32  OpenBLAS sgemm on the model's own parameters
//   bf16  weights rounded to bfloat16 and reordered once (`BF16Matmul`); X rounded per call;
//         oneDNN matmul, fp32 accumulation, the bias in the kernel
//   int8  weights s8 with one scale per output column (absmax/127); X quantized per call to u8
//         with the layer's calibrated scale and zero point; a oneDNN int8 matmul primitive per
//         row count (`Int8Matmul`: AMX or VNNI brgemm, weights reordered once, exact int32 sums):
//         out = s_x · s_w[n] · Σ_k (q_x − z_x)·q_w + bias[n]
//         with q_x = clamp(round(x / s_x) + z_x, 0, 255) as ONNX QuantizeLinear computes it
//         The plan can also hand an int8 layer its input already quantized (from LayerNorm or from
//         the previous product) and ask for its output as the next layer's u8 input, GELU applied
//         (`runQuantized`), so an MLP's hidden activation never exists in fp32.

/// The affine u8 quantization of one layer's input: q = clamp(round(x / scale) + zeroPoint, 0, 255).
public struct ActivationQuantization: Codable, Equatable, Sendable {
  public var scale: Float
  public var zeroPoint: Int

  public init(scale: Float, zeroPoint: Int) {
    self.scale = scale
    self.zeroPoint = zeroPoint
  }

  /// The u8 quantization covering [low, high] (widened to include 0, so zero is exact) in `steps`
  /// steps (255: the whole u8 range).
  public init(low: Float, high: Float, steps: Int = 255) {
    let lo = min(low, 0), hi = max(high, 0)
    let scale = max(hi - lo, 1e-8) / Float(steps)
    self.scale = scale
    self.zeroPoint = Int(min(255, max(0, (-lo / scale).rounded())))
  }

  /// The u8 quantization covering [low, high] on a grid where the values of `samples` do not sit
  /// on rounding boundaries. Inputs that take a few exact values do: 8-bit pixels normalised as
  /// (p − 127.5) / 127.5 with the range [−1, 1] give x / scale = p − 127.5, a half for every
  /// pixel, so each quantized pixel depends on the last bit of x and a normalisation rounded
  /// differently by one ulp (numpy's `x / 127.5 - 1` before an ONNX runtime) moves every pixel by a
  /// step. When more than 1% of the samples lie within 1/1000 of a step of a half, the range is
  /// spread over 254 steps (253, … at most 8 tries) instead of 255: for those pixels x / scale =
  /// (2p − 255)·127/255, never nearer a half than 1/510 of a step.
  public init(low: Float, high: Float, avoidingTiesIn samples: [Float]) {
    self.init(low: low, high: high)
    guard !samples.isEmpty else { return }
    for steps in stride(from: 255, through: 248, by: -1) {
      let candidate = ActivationQuantization(low: low, high: high, steps: steps)
      if candidate.tieFraction(samples) <= 0.01 {
        self = candidate
        return
      }
    }
  }

  /// The fraction of `samples` whose quotient by the scale lies within 1/1000 of a half.
  public func tieFraction(_ samples: [Float]) -> Double {
    var near = 0
    for x in samples {
      let t = x / scale
      if abs(t - t.rounded(.down) - 0.5) < 1e-3 { near += 1 }
    }
    return Double(near) / Double(max(1, samples.count))
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

/// The precision of one product layer in inference, with its int8 calibration when int8: the
/// input's quantization and, from a quantized checkpoint, the weights as stored.
public struct LayerSetting: Sendable {
  public var precision: Precision
  public var input: ActivationQuantization?
  public var weights: QuantizedWeights?

  public init(precision: Precision, input: ActivationQuantization? = nil, weights: QuantizedWeights? = nil) {
    self.precision = precision
    self.input = input
    self.weights = weights
  }
}

/// Scratch the kernels share within one plan (grown to the largest layer and batch).
public final class KernelScratch {
  public var bf16: [UInt16] = []
  public var u8: [UInt8] = []
  public var floats: [Float] = []

  public init() {}

  public func reserve(elements inputCount: Int) {
    if bf16.count < inputCount { bf16 = [UInt16](repeating: 0, count: inputCount) }
    if u8.count < inputCount { u8 = [UInt8](repeating: 0, count: inputCount) }
    if floats.count < inputCount { floats = [Float](repeating: 0, count: inputCount) }
  }
}

/// One matrix product of the network in one precision.
public protocol ProductKernel: AnyObject {
  var precision: Precision { get }
  /// K, N
  var inputs: Int { get }
  var outputs: Int { get }
  /// out[M×N] = op(X)[M×K] · W + bias; X stored `[M×K]`, or `[K×M]` when `transposed`.
  func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch)
}

/// out[m, :] = bias for every row.
@inline(__always)
public func fillRows(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
  for r in 0..<rows { (out + r * cols).update(from: bias, count: cols) }
}

/// sgemm on the model's fp32 weights.
public final class FP32Product: ProductKernel {
  public let weight: UnsafePointer<Float>, bias: UnsafePointer<Float>
  public let inputs: Int, outputs: Int
  public var precision: Precision { .fp32 }

  public init(weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int) {
    (self.weight, self.bias, self.inputs, self.outputs) = (weight, bias, inputs, outputs)
  }

  public func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    fillRows(out, bias: bias, rows: m, cols: outputs)
    gemm(
      transposed ? .transpose : .none, .none, m: m, n: outputs, k: inputs, a: x, lda: transposed ? m : inputs,
      b: weight, ldb: outputs, beta: 1, c: out, ldc: outputs)
  }
}

/// oneDNN bf16 matmul: weights rounded and reordered once per row count (`BF16Matmul`), the
/// activations rounded per call (and transposed in the same pass when stored `[K×M]`, since a
/// transposed source sends oneDNN to a slower kernel), fp32 accumulation, the bias in the kernel.
public final class BF16Product: ProductKernel {
  public let weight: UnsafePointer<Float>
  public let bias: [Float]
  public let inputs: Int, outputs: Int
  public var precision: Precision { .bf16 }
  /// one primitive per row count (batch sizes differ between calls), made on first use
  private var matmuls: [Int: BF16Matmul] = [:]

  public init(weight: UnsafePointer<Float>, bias: [Float], inputs: Int, outputs: Int) {
    (self.weight, self.bias, self.inputs, self.outputs) = (weight, bias, inputs, outputs)
  }

  public func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    let matmul: BF16Matmul
    if let cached = matmuls[m] {
      matmul = cached
    } else {
      matmul = bias.withUnsafeBufferPointer {
        BF16Matmul(m: m, n: outputs, k: inputs, weights: weight, bias: $0.baseAddress!)
      }
      matmuls[m] = matmul
    }
    let k = inputs
    scratch.bf16.withUnsafeMutableBufferPointer { xb in
      let dst = xb.baseAddress!
      if transposed {
        // x is [K×M]: dst[i, kk] = bf16(x[kk, i]), in tiles so both sides stay in cache
        KernelProfile.measure("bf16 round transposed input") {
          let tile = 64
          for i0 in stride(from: 0, to: m, by: tile) {
            for k0 in stride(from: 0, to: k, by: tile) {
              for i in i0..<min(m, i0 + tile) {
                for kk in k0..<min(k, k0 + tile) { dst[i * k + kk] = bf16Bits(x[kk * m + i]) }
              }
            }
          }
        }
      } else {
        KernelProfile.measure("bf16 round input") { convertToBF16(x, dst, count: m * k) }
      }
      matmul.run(src: dst, dst: out)
    }
  }
}

/// An int8 product: per-output-channel weight scales, a calibrated input range, oneDNN int8
/// matmul primitives (one per row count and epilogue, made on first use).
public final class Int8Product: ProductKernel {
  public let weights: QuantizedWeights
  public let bias: [Float]
  public let input: ActivationQuantization
  public let inputs: Int, outputs: Int
  public var precision: Precision { .int8 }
  /// s_x · s_w[n]
  private let scales: [Float]
  private struct Key: Hashable {
    let rows: Int
    let epilogue: Int8MatmulEpilogue
  }
  private var matmuls: [Key: Int8Matmul] = [:]
  /// the weights as fp32 for the portable kernels, widened once for every row count
  private var widened: PortableInt8Weights?

  public init(weights: QuantizedWeights, bias: [Float], input: ActivationQuantization, inputs: Int, outputs: Int) {
    (self.weights, self.bias, self.input) = (weights, bias, input)
    (self.inputs, self.outputs) = (inputs, outputs)
    scales = weights.scales.map { $0 * input.scale }
  }

  /// The primitive for `rows` rows and this epilogue (created once).
  public func matmul(rows m: Int, _ epilogue: Int8MatmulEpilogue) -> Int8Matmul {
    let key = Key(rows: m, epilogue: epilogue)
    if let cached = matmuls[key] { return cached }
    let made = weights.values.withUnsafeBufferPointer { w in
      if Precision.int8.usesPortableKernels && widened == nil {
        widened = PortableInt8Weights(k: inputs, n: outputs, weights: w.baseAddress!)
      }
      return Int8Matmul(
        m: m, n: outputs, k: inputs, srcZeroPoint: input.zeroPoint, weights: w.baseAddress!, scales: scales, bias: bias,
        epilogue: epilogue, widened: widened)
    }
    matmuls[key] = made
    return made
  }

  public func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    scratch.u8.withUnsafeMutableBufferPointer { q in
      if transposed {
        quantizeU8Transposed(q.baseAddress!, x, rows: m, cols: inputs, input)
      } else {
        quantizeU8(q.baseAddress!, x, count: m * inputs, input)
      }
      runQuantized(dst: UnsafeMutableRawPointer(out), q: q.baseAddress!, rows: m, epilogue: .float)
    }
  }

  /// The product on an input already quantized with `input` (`q` `[M×K]` u8), writing what
  /// `epilogue` says into `dst` (`[M×N]`, fp32 or u8).
  public func runQuantized(dst: UnsafeMutableRawPointer, q: UnsafePointer<UInt8>, rows m: Int, epilogue: Int8MatmulEpilogue) {
    matmul(rows: m, epilogue).run(src: q, dst: dst)
  }

  /// The epilogue that writes this layer's quantized input from the previous product, GELU applied.
  public func inputEpilogue(gelu: GELUKind) -> Int8MatmulEpilogue {
    .u8(scale: input.scale, zeroPoint: input.zeroPoint, gelu: gelu)
  }
}

/// q[i] = clamp(round(x[i] / scale) + zeroPoint, 0, 255), rounding half to even: ONNX
/// QuantizeLinear's formula, operation for operation (the division, not a product with the
/// reciprocal, and the zero point added after rounding), so ONNX Runtime quantizes an fp32 value
/// to the same byte. A plain loop the compiler vectorises.
public func quantizeU8(_ q: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Float>, count: Int, _ p: ActivationQuantization) {
  KernelProfile.measure("quantize u8") {
    let scale = p.scale, zero = Float(p.zeroPoint)
    parallelElements(count) { range in
      for i in range {
        let v = (x[i] / scale).rounded(.toNearestOrEven) + zero
        q[i] = UInt8(Int32(min(255, max(0, v))))
      }
    }
  }
}

/// q[r, t] = quantized x[t, r]: x stored `[cols, rows]`, q `[rows, cols]` (the token-mixing input
/// read transposed).
public func quantizeU8Transposed(
  _ q: UnsafeMutablePointer<UInt8>, _ x: UnsafePointer<Float>, rows: Int, cols: Int, _ p: ActivationQuantization
) {
  KernelProfile.measure("quantize u8 transposed") {
    let scale = p.scale, zero = Float(p.zeroPoint), tile = 64
    // blocks of 64 rows of q, split over the kernel threads (each byte is its own)
    parallelRows((rows + tile - 1) / tile, elementsPerRow: tile * cols) { _, tiles in
      for r0 in stride(from: tiles.lowerBound * tile, to: min(rows, tiles.upperBound * tile), by: tile) {
        let r1 = min(r0 + tile, rows)
        for t in 0..<cols {
          let xt = x + t * rows
          for r in r0..<r1 {
            let v = (xt[r] / scale).rounded(.toNearestOrEven) + zero
            q[r * cols + t] = UInt8(Int32(min(255, max(0, v))))
          }
        }
      }
    }
  }
}

/// An int8 layer computed in fp32 on its dequantized operands: X quantized to u8 exactly as
/// `Int8Product` quantizes it and back, (q − z)·s, times W = q_w·s_w, plus the bias. This is what
/// the QDQ form of the ONNX export computes, and what `Int8Product`'s exact integer sums give up to
/// fp32 rounding; tests use it as the int8 reference on a CPU without int8 instructions
/// (`InferencePlan(model:settings:dequantizedInt8:)`).
public final class DequantizedInt8Product: ProductKernel {
  public let weights: [Float]
  public let bias: [Float]
  public let input: ActivationQuantization
  public let inputs: Int, outputs: Int
  public var precision: Precision { .int8 }

  public init(weights q: QuantizedWeights, bias: [Float], input: ActivationQuantization, inputs: Int, outputs: Int) {
    weights = q.values.indices.map { Float(q.values[$0]) * q.scales[$0 % outputs] }
    (self.bias, self.input, self.inputs, self.outputs) = (bias, input, inputs, outputs)
  }

  public func run(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, transposed: Bool, rows m: Int, scratch: KernelScratch) {
    let k = inputs, n = outputs
    scratch.u8.withUnsafeMutableBufferPointer { q in
      if transposed {
        quantizeU8Transposed(q.baseAddress!, x, rows: m, cols: k, input)
      } else {
        quantizeU8(q.baseAddress!, x, count: m * k, input)
      }
      scratch.floats.withUnsafeMutableBufferPointer { xd in
        let zero = Float(input.zeroPoint)
        for i in 0..<(m * k) { xd[i] = (Float(q[i]) - zero) * input.scale }
        bias.withUnsafeBufferPointer { fillRows(out, bias: $0.baseAddress!, rows: m, cols: n) }
        gemm(.none, .none, m: m, n: n, k: k, a: xd.baseAddress!, lda: k, b: weights, ldb: n, beta: 1, c: out, ldc: n)
      }
    }
  }
}
