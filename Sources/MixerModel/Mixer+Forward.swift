// The Mixer forward pass (paper §2, official `vit_jax/models_mixer.py`), token-major `[S, B, C]`:
//   x_0 = stem(patches)                                   one sgemm  [S·B, P²3] · [P²3, C]
//   x  += TokenMLP(LN_0(x))  read as  W1ᵀ [D_S×S] · Y [S×B·C]  and  W2ᵀ [S×D_S] · G [D_S×B·C]
//   x  += ChannelMLP(LN_1(x))  as  Y [S·B×C] · W1 [C×D_C]  and  G [S·B×D_C] · W2 [D_C×C]
//   outputs = head(LN_pre(x))   (Heads/: the paper's mean over tokens → Dense, or per-pixel)
// Both mixers are single sgemm calls on the same memory; nothing is transposed.
// Every product goes through `products` (MatrixProducts.swift): fp32 sgemm, or bf16 on oneDNN.

import MixerKernels
import MixerTrace

extension MixerModel {
  /// Runs the network on `images` (`[B, H, W, 3]`, B = `acts.batch`) and leaves the head's
  /// outputs in `acts.head` (logits, or per-pixel logits). `regularization == nil` is evaluation. `sampleIDs[b]` identifies example b
  /// across ranks (its position in the global batch), keying its stochastic-depth and dropout draws.
  public func forward(
    images: UnsafePointer<Float>, acts: Activations, regularization: Regularization? = nil,
    sampleIDs: [Int]? = nil
  ) {
    let cfg = config
    let b = acts.batch, s = cfg.tokens, c = cfg.hidden, sb = s * b
    let w = parameters.pointer

    let stemStart = Timeline.begin()  // (spans of `train --trace`; nothing when it is off)
    products.prepare(weights: w, count: parameters.count)
    cfg.stem.stem.forward(self, images: images, acts: acts)

    let ids = sampleIDs ?? Array(0..<b)
    if let reg = regularization { prepareMasks(acts: acts, regularization: reg, sampleIDs: ids) }
    Timeline.end(stemStart, "stem forward", .forward)
    for i in 0..<cfg.blocks {
      Timeline.span("block \(i) forward", .forward) { blockForward(i, acts: acts, training: regularization) }
    }

    let headStart = Timeline.begin()
    defer { Timeline.end(headStart, "head forward", .forward) }
    let last = acts.stream[cfg.blocks]
    layerNormForward(
      out: acts.headNormOut, mean: acts.headMean, rstd: acts.headRstd, inp: last,
      weight: w + table.offset(OfficialName.scale(OfficialName.preHeadLayerNorm)),
      bias: w + table.offset(OfficialName.bias(OfficialName.preHeadLayerNorm)), rows: sb, channels: c,
      epsilon: cfg.layerNormEpsilon)
    cfg.head.forward(self, acts: acts)
  }

  /// One MixerBlock: token mixing then channel mixing, each a pre-norm residual branch.
  func blockForward(_ i: Int, acts: Activations, training: Regularization?) {
    let cfg = config
    let o = blockOffsets[i]
    let w = parameters.pointer
    let b = acts.batch, s = cfg.tokens, c = cfg.hidden, sb = s * b
    let dc = cfg.channelsMLP
    let xIn = acts.stream[i], xMid = acts.middle[i], xOut = acts.stream[i + 1]
    let dropBlock = training.map { $0.dropProbability(block: i, of: cfg.blocks) > 0 } ?? false
    let dropHidden = (training?.dropout ?? 0) > 0
    let keep: UnsafePointer<Float>? = dropBlock ? UnsafePointer(acts.keep[i]) : nil

    // token mixing: Y = LN_0(x); each of the block's token mixers adds its branch (TokenMixers.swift:
    // the paper's W2ᵀ·gelu(W1ᵀ·Y + b1) + b2 on [S, B·C], self-attention, a token-grid convolution)
    // Y is read by products and, in some mixers, by fp32 kernels: written in the products'
    // operand format when only products read it, else in fp32 and rounded once for the products
    let mixers = blockMixers[i]
    let productsOnly = mixers.allSatisfy { $0.mixer.readsInputOnlyThroughProducts }
    layerNormForward(
      out: acts.ln0Out[i],
      outBF16: productsOnly ? products.operandStorage(for: acts.ln0Out[i], count: sb * c, scoped: false)?.bfloat16 : nil,
      mean: acts.ln0Mean[i], rstd: acts.ln0Rstd[i], inp: xIn,
      weight: w + o.ln0Scale, bias: w + o.ln0Bias, rows: sb, channels: c,
      epsilon: cfg.layerNormEpsilon)
    if !productsOnly { products.shareOperand(acts.ln0Out[i], count: sb * c) }
    // the paper's block (one mixer that adds in place) without stochastic depth: straight into x_mid
    let fused = mixers.count == 1 && mixers[0].mixer.addsInPlace && keep == nil
    let tokenTarget = fused ? xMid : acts.branch
    if fused { copyStream(out: xMid, inp: xIn, count: sb * c) } else { tokenTarget.update(repeating: 0, count: sb * c) }
    for (j, placed) in mixers.enumerated() {
      placed.mixer.forward(
        self, block: i, offsets: placed.offsets, saved: acts.mixerSaved[i][j], scratch: acts.scratch(for: placed.mixer),
        acts: acts, into: tokenTarget, dropHidden: dropHidden)
    }
    if !fused {
      copyStream(out: xMid, inp: xIn, count: sb * c)
      residualForward(x: xMid, branch: acts.branch, keep: keep, tokens: s, batch: b, channels: c)
    }

    // channel mixing: Y = LN_1(x) [S·B, C]; H = Y·W1 + b1 [S·B, D_C]; branch = gelu(H)·W2 + b2
    // (Y and gelu(H) are read only by products: stored in their operand format)
    layerNormForward(
      out: acts.ln1Out[i], outBF16: products.operandStorage(for: acts.ln1Out[i], count: sb * c, scoped: false)?.bfloat16,
      mean: acts.ln1Mean[i], rstd: acts.ln1Rstd[i], inp: xMid,
      weight: w + o.ln1Scale, bias: w + o.ln1Bias, rows: sb, channels: c,
      epsilon: cfg.layerNormEpsilon)
    products.hiddenForward(
      .none, .none, m: sb, n: dc, k: c, a: acts.ln1Out[i], lda: c, b: w + o.chW1, ldb: dc,
      bias: w + o.chB1, axis: .columns, kind: cfg.gelu, pre: acts.channelPre[i], act: acts.channelAct[i],
      dropMask: dropHidden ? UnsafePointer(acts.channelDropMask[i]) : nil)
    let channelTarget = keep == nil ? xOut : acts.branch
    if keep == nil {
      addColumnBias(out: xOut, inp: xMid, bias: w + o.chB2, rows: sb, cols: c)
    } else {
      broadcastColumns(out: channelTarget, bias: w + o.chB2, rows: sb, cols: c)
    }
    products.gemm(
      .none, .none, m: sb, n: c, k: dc, a: acts.channelAct[i], lda: dc, b: w + o.chW2, ldb: c,
      beta: 1, c: channelTarget, ldc: c)
    if let keep {
      copyStream(out: xOut, inp: xMid, count: sb * c)
      residualForward(x: xOut, branch: acts.branch, keep: keep, tokens: s, batch: b, channels: c)
    }
  }

  /// Draws the stochastic-depth keep masks and dropout masks of this step. Every draw is keyed by
  /// (seed, step, block, example id), so the same global batch gets the same masks on any
  /// number of ranks.
  func prepareMasks(acts: Activations, regularization reg: Regularization, sampleIDs: [Int]) {
    let cfg = config
    let b = acts.batch
    for i in 0..<cfg.blocks {
      let p = reg.dropProbability(block: i, of: cfg.blocks)
      for e in 0..<b {
        var rng = CounterRNG(seed: reg.seed, 0x5D, UInt64(reg.step) << 16 | UInt64(i), UInt64(sampleIDs[e]))
        acts.keep[i][e] = p > 0 && rng.uniform() < p ? 0 : 1
      }
    }
    guard reg.dropout > 0 else { return }
    acts.ensureDropoutMasks(config: cfg)
    let scale = 1 / (1 - reg.dropout)
    let c = cfg.hidden, s = cfg.tokens, ds = cfg.tokensMLP, dc = cfg.channelsMLP
    for i in 0..<cfg.blocks {
      // token hidden [D_S, B, C]: row (d, e) has C values
      for d in 0..<ds {
        for e in 0..<b {
          var rng = CounterRNG(seed: reg.seed, 0xD1, UInt64(reg.step) << 16 | UInt64(i), UInt64(sampleIDs[e]))
          rng.counter = UInt64(d * c)
          let row = acts.tokenDropMask[i] + (d * b + e) * c
          for j in 0..<c { row[j] = rng.uniform() < reg.dropout ? 0 : scale }
        }
      }
      // channel hidden [S, B, D_C]: row (t, e) has D_C values
      for t in 0..<s {
        for e in 0..<b {
          var rng = CounterRNG(seed: reg.seed, 0xD2, UInt64(reg.step) << 16 | UInt64(i), UInt64(sampleIDs[e]))
          rng.counter = UInt64(t * dc)
          let row = acts.channelDropMask[i] + (t * b + e) * dc
          for j in 0..<dc { row[j] = rng.uniform() < reg.dropout ? 0 : scale }
        }
      }
    }
  }
}

