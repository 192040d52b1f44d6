// Multi-head self-attention (Vaswani et al. 2017) as ViT uses it (Flax
// `nn.MultiHeadDotProductAttention`, no dropout), on token-major activations `[S, B, C]`:
//   qkv = inp·Wqkv + bqkv                      [S, B, 3C]: Q | K | V, each head-major (H heads of D)
//   P_bh = softmax(Q_bh·K_bhᵀ / √D) over keys   [S, S] per (b, h), D = C / H
//   attention[:, b, h·D..<(h+1)·D] = P_bh·V_bh  [S, B, C]: heads concatenated
//   out = attention·Wproj + bproj               [S, B, C]
// Q_bh, K_bh, V_bh are read in place from qkv (row stride B·3C for a fixed b): one small sgemm per
// (b, h), no transposing copies.
// forward overwrites out, qkv, probabilities, attention; backward accumulates into dinp,
// dqkvWeight, dqkvBias, dprojWeight, dprojBias and overwrites its scratch (dattention, dqkv,
// dscores). The products run in `products`' precision (fp32 `gemm` by default).

import Foundation

/// out = MultiHeadAttention(inp). Shapes: out, attention, inp `[S, B, C]`; qkv `[S, B, 3C]`;
/// probabilities `[B, H, S, S]` (row i: query token i, softmax over key tokens);
/// qkvWeight `[C, 3C]`, qkvBias `[3C]`, projWeight `[C, C]`, projBias `[C]`. C must divide by H.
public func attentionForward(
  out: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>,
  probabilities: UnsafeMutablePointer<Float>, attention: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>,
  qkvWeight: UnsafePointer<Float>, qkvBias: UnsafePointer<Float>,
  projWeight: UnsafePointer<Float>, projBias: UnsafePointer<Float>,
  tokens S: Int, batch B: Int, channels C: Int, heads H: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  precondition(H > 0 && C % H == 0, "attention: channels \(C) must divide by heads \(H)")
  let rows = S * B

  // qkv = inp·Wqkv + bqkv
  broadcastColumns(out: qkv, bias: qkvBias, rows: rows, cols: 3 * C)
  products.gemm(
    .none, .none, m: rows, n: 3 * C, k: C, a: inp, lda: C, b: qkvWeight, ldb: 3 * C,
    beta: 1, c: qkv, ldc: 3 * C)

  attentionCoreForward(
    attention: attention, probabilities: probabilities, qkv: qkv, tokens: S, batch: B, channels: C, heads: H,
    products: products)

  // out = attention·Wproj + bproj
  broadcastColumns(out: out, bias: projBias, rows: rows, cols: C)
  products.gemm(
    .none, .none, m: rows, n: C, k: C, a: attention, lda: C, b: projWeight, ldb: C, beta: 1,
    c: out, ldc: C)
}

/// The attention between the two products: per (b, h), P = softmax(Q·Kᵀ / √D) and the head's
/// output P·V. attention `[S, B, C]` and probabilities `[B, H, S, S]` are overwritten; qkv
/// `[S, B, 3C]` is read.
public func attentionCoreForward(
  attention: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
  tokens S: Int, batch B: Int, channels C: Int, heads H: Int, products: any MatrixProducts = FP32Products.shared
) {
  let D = C / H
  let scale = 1 / Float(D).squareRoot()
  let qkvStride = B * 3 * C  // from token s to token s + 1 at a fixed b
  let attentionStride = B * C
  for b in 0..<B {
    for h in 0..<H {
      let q = UnsafePointer(qkv + b * 3 * C + h * D)  // [S, D], row stride B·3C
      let k = q + C
      let v = q + 2 * C
      let p = probabilities + (b * H + h) * S * S  // [S, S]
      // scores = Q·Kᵀ / √D, then softmax over each row in place
      products.gemm(
        .none, .transpose, m: S, n: S, k: D, alpha: scale, a: q, lda: qkvStride, b: k,
        ldb: qkvStride, beta: 0, c: p, ldc: S)
      softmaxRows(p, rows: S, cols: S)
      // attention head h = P·V
      products.gemm(
        .none, .none, m: S, n: D, k: S, a: p, lda: S, b: v, ldb: qkvStride, beta: 0,
        c: attention + b * C + h * D, ldc: attentionStride)
    }
  }
}

/// The gradient of `attentionForward`, its steps read in reverse:
///   dprojBias += Σ dout, dprojWeight += attentionᵀ·dout, dattention = dout·Wprojᵀ;
///   per (b, h): dP = dA·Vᵀ, dV = Pᵀ·dA, dscores = P ⊙ (dP − rowsum(dP ⊙ P)),
///   dQ = dscores·K / √D, dK = dscoresᵀ·Q / √D;
///   dqkvBias += Σ dqkv, dqkvWeight += inpᵀ·dqkv, dinp += dqkv·Wqkvᵀ.
/// Shapes as the forward; scratch (overwritten): dattention `[S, B, C]`, dqkv `[S, B, 3C]`,
/// dscores `[S, S]`.
public func attentionBackward(
  dinp: UnsafeMutablePointer<Float>,
  dqkvWeight: UnsafeMutablePointer<Float>, dqkvBias: UnsafeMutablePointer<Float>,
  dprojWeight: UnsafeMutablePointer<Float>, dprojBias: UnsafeMutablePointer<Float>,
  dout: UnsafePointer<Float>,
  qkv: UnsafePointer<Float>, probabilities: UnsafePointer<Float>,
  attention: UnsafePointer<Float>,
  inp: UnsafePointer<Float>,
  qkvWeight: UnsafePointer<Float>, projWeight: UnsafePointer<Float>,
  tokens S: Int, batch B: Int, channels C: Int, heads H: Int,
  dattention: UnsafeMutablePointer<Float>, dqkv: UnsafeMutablePointer<Float>,
  dscores: UnsafeMutablePointer<Float>,
  products: any MatrixProducts = FP32Products.shared
) {
  precondition(H > 0 && C % H == 0, "attention: channels \(C) must divide by heads \(H)")
  let D = C / H
  let rows = S * B
  let scale = 1 / Float(D).squareRoot()
  let qkvStride = B * 3 * C
  let attentionStride = B * C

  // out = attention·Wproj + bproj
  biasBackwardColumns(dbias: dprojBias, dout: dout, rows: rows, cols: C)
  products.gemm(
    .transpose, .none, m: C, n: C, k: rows, a: attention, lda: C, b: dout, ldb: C, beta: 1,
    c: dprojWeight, ldc: C)
  products.gemm(
    .none, .transpose, m: rows, n: C, k: C, a: dout, lda: C, b: projWeight, ldb: C, beta: 0,
    c: dattention, ldc: C)

  for b in 0..<B {
    for h in 0..<H {
      let q = qkv + b * 3 * C + h * D  // [S, D], row stride B·3C
      let k = q + C
      let v = q + 2 * C
      let dq = dqkv + b * 3 * C + h * D
      let dk = dq + C
      let dv = dq + 2 * C
      let p = probabilities + (b * H + h) * S * S  // [S, S]
      let da = UnsafePointer(dattention + b * C + h * D)  // [S, D], row stride B·C
      // attention head h = P·V
      products.gemm(
        .none, .transpose, m: S, n: S, k: D, a: da, lda: attentionStride, b: v, ldb: qkvStride,
        beta: 0, c: dscores, ldc: S)
      products.gemm(
        .transpose, .none, m: S, n: D, k: S, a: p, lda: S, b: da, ldb: attentionStride, beta: 0,
        c: dv, ldc: qkvStride)
      // P = softmax(scores)
      softmaxRowsBackward(dscores, probabilities: p, rows: S, cols: S)
      // scores = Q·Kᵀ / √D
      products.gemm(
        .none, .none, m: S, n: D, k: S, alpha: scale, a: dscores, lda: S, b: k, ldb: qkvStride,
        beta: 0, c: dq, ldc: qkvStride)
      products.gemm(
        .transpose, .none, m: S, n: D, k: S, alpha: scale, a: dscores, lda: S, b: q,
        ldb: qkvStride, beta: 0, c: dk, ldc: qkvStride)
    }
  }

  // qkv = inp·Wqkv + bqkv
  biasBackwardColumns(dbias: dqkvBias, dout: dqkv, rows: rows, cols: 3 * C)
  products.gemm(
    .transpose, .none, m: C, n: 3 * C, k: rows, a: inp, lda: C, b: dqkv, ldb: 3 * C, beta: 1,
    c: dqkvWeight, ldc: 3 * C)
  products.gemm(
    .none, .transpose, m: rows, n: C, k: 3 * C, a: dqkv, lda: 3 * C, b: qkvWeight, ldb: 3 * C,
    beta: 1, c: dinp, ldc: C)
}

/// Softmax of each row of `[rows, cols]` in place, the row maximum subtracted first so large
/// scores cannot overflow.
private func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
  KernelProfile.measure("attention softmax forward") {
    for r in 0..<rows {
      let row = x + r * cols
      var maximum = -Float.infinity
      for j in 0..<cols { maximum = max(maximum, row[j]) }
      var sum: Float = 0
      for j in 0..<cols {
        row[j] = exp(row[j] - maximum)
        sum += row[j]
      }
      let inverse = 1 / sum
      for j in 0..<cols { row[j] *= inverse }
    }
  }
}

/// The softmax gradient in place: dx[r, j] = p[r, j]·(dp[r, j] − Σ_k dp[r, k]·p[r, k]).
private func softmaxRowsBackward(
  _ d: UnsafeMutablePointer<Float>, probabilities p: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("attention softmax backward") {
    for r in 0..<rows {
      let dRow = d + r * cols
      let pRow = p + r * cols
      let inner = vdot(dRow, pRow, cols)
      for j in 0..<cols { dRow[j] = pRow[j] * (dRow[j] - inner) }
    }
  }
}
