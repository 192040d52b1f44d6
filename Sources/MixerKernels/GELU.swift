// GELU (Hendrycks & Gimpel 2016), fused with the bias add of the Dense layer before it.
// `.tanh` is the approximation the official Mixer uses (`flax.linen.gelu`, approximate=True):
//   gelu(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
// `.erf` is the exact form timm uses: gelu(x) = ½x(1 + erf(x/√2)).
// forward overwrites act and adds the bias into pre in place (pre is kept for backward);
// backward overwrites dinp (which may alias dout).
// The training path uses the fused pair at the end of this file instead: the forward stores
// gelu′ in place of the pre-activation (one tanh per element, shared with the forward value), so
// the backward is a multiply fused with the bias gradient. (bf16 training runs the hidden layers
// without dropout on oneDNN's GELU over bf16 values instead: `BF16Products.hiddenForward`.)

import CMixerVector
import Foundation

/// Which GELU the model uses.
public enum GELUKind: String, Codable, Sendable, CaseIterable {
  case tanh, erf
}

/// Where a bias vector runs in a `[rows, cols]` matrix.
public enum BiasAxis: Sendable {
  /// one bias per row (token-mixing Dense: rows are the D_S hidden tokens)
  case rows
  /// one bias per column (channel-mixing Dense: columns are the D_C hidden channels)
  case columns
}

private let sqrtTwoOverPi: Float = 0.797_884_560_802_865_4
private let geluCubic: Float = 0.044_715

/// pre += bias (along `axis`); act = gelu(pre). Shapes: pre, act `[rows, cols]`.
public func biasGELUForward(
  act: UnsafeMutablePointer<Float>, pre: UnsafeMutablePointer<Float>,
  bias: UnsafePointer<Float>, rows: Int, cols: Int, axis: BiasAxis, kind: GELUKind
) {
  KernelProfile.measure("bias+gelu forward") {
    for r in 0..<rows {
      let h = pre + r * cols
      let g = act + r * cols
      switch axis {
      case .rows:
        let b = bias[r]
        for j in 0..<cols { h[j] += b }
      case .columns:
        for j in 0..<cols { h[j] += bias[j] }
      }
      geluForward(out: g, inp: h, count: cols, kind: kind)
    }
  }
}

/// out = gelu(inp), elementwise over `count` values.
public func geluForward(
  out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, kind: GELUKind
) {
  switch kind {
  case .tanh:
    var i = 0
    while i + 16 <= count {
      let x = load16(inp, i)
      let t = vtanh(sqrtTwoOverPi * (x + geluCubic * x * x * x))
      store16(out, i, 0.5 * x * (1 + t))
      i += 16
    }
    while i < count {
      let x = inp[i]
      out[i] = 0.5 * x * (1 + scalarTanh(sqrtTwoOverPi * (x + geluCubic * x * x * x)))
      i += 1
    }
  case .erf:
    for i in 0..<count {
      let x = inp[i]
      out[i] = 0.5 * x * (1 + Foundation.erf(x * 0.707_106_781_186_547_5))
    }
  }
}

/// dinp = dout · gelu′(inp), elementwise; dinp may be the same buffer as dout.
public func geluBackward(
  dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
  count: Int, kind: GELUKind
) {
  KernelProfile.measure("gelu backward") {
    switch kind {
    case .tanh:
      var i = 0
      while i + 16 <= count {
        let x = load16(inp, i)
        let x2 = x * x
        let t = vtanh(sqrtTwoOverPi * (x + geluCubic * x2 * x))
        let slope = sqrtTwoOverPi * (1 + 3 * geluCubic * x2)
        let d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * slope
        store16(dinp, i, load16(dout, i) * d)
        i += 16
      }
      while i < count {
        let x = inp[i]
        let t = scalarTanh(sqrtTwoOverPi * (x + geluCubic * x * x * x))
        let slope = sqrtTwoOverPi * (1 + 3 * geluCubic * x * x)
        dinp[i] = dout[i] * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * slope)
        i += 1
      }
    case .erf:
      for i in 0..<count {
        let x = inp[i]
        let cdf = 0.5 * (1 + Foundation.erf(x * 0.707_106_781_186_547_5))
        let pdf = Foundation.exp(-0.5 * x * x) * 0.398_942_280_401_432_7
        dinp[i] = dout[i] * (cdf + x * pdf)
      }
    }
  }
}

/// Training forward: h = pre + bias; act = gelu(h); pre is overwritten with gelu′(h), all the
/// backward needs. Shapes: pre, act `[rows, cols]`. With `actBF16` (operand storage of the
/// products, MatrixProducts.swift) act is written there rounded to bf16 instead, act untouched.
public func biasGELUForwardKeepingDerivative(
  act: UnsafeMutablePointer<Float>, actBF16: UnsafeMutablePointer<UInt16>? = nil,
  pre: UnsafeMutablePointer<Float>,
  bias: UnsafePointer<Float>, rows: Int, cols: Int, axis: BiasAxis, kind: GELUKind
) {
  KernelProfile.measure("bias+gelu forward") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      switch kind {
      case .tanh:
        // CMixerVector at the CPU's instruction set (KernelISA)
        mx_bias_gelu_keep(
          act, actBF16, pre, bias, chunk.lowerBound, chunk.upperBound, cols, axis == .rows ? 1 : 0)
      case .erf:
        for r in chunk {
          let h = pre + r * cols
          let g = act + r * cols
          let g16 = actBF16.map { $0 + r * cols }
          for j in 0..<cols {
            let x = h[j] + (axis == .rows ? bias[r] : bias[j])
            let cdf = 0.5 * (1 + Foundation.erf(x * 0.707_106_781_186_547_5))
            if let g16 { g16[j] = bf16Bits(x * cdf) } else { g[j] = x * cdf }
            h[j] = cdf + x * Foundation.exp(-0.5 * x * x) * 0.398_942_280_401_432_7
          }
        }
      }
    }
  }
}

/// Training backward of the fused forward: dinp = dout · gelu′ (dinp may alias dout) and
/// dbias += the sums of dinp along `axis` (per row or per column), in one pass. With `dinpBF16`
/// (operand storage) dinp is written there rounded to bf16 instead (the sums stay fp32).
public func geluBackwardFromDerivative(
  dinp: UnsafeMutablePointer<Float>, dinpBF16: UnsafeMutablePointer<UInt16>? = nil,
  dbias: UnsafeMutablePointer<Float>,
  dout: UnsafePointer<Float>, derivative: UnsafePointer<Float>, rows: Int, cols: Int,
  axis: BiasAxis
) {
  KernelProfile.measure("gelu backward") {
    parallelRowsSummingBias(into: dbias, rows: rows, cols: cols, axis: axis) { sums, chunk in
      mx_gelu_back_deriv(
        dinp, dinpBF16, sums, dout, derivative, chunk.lowerBound, chunk.upperBound, cols,
        axis == .rows ? 1 : 0)
    }
  }
}
