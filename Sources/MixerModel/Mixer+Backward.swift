// The Mixer backward pass: Mixer+Forward.swift read in reverse. Parameter gradients accumulate
// (+=) into `gradients`, so micro-batches add up; the caller zeroes them once per step.
// Gradients are produced from the end of the flat buffer towards the start (head, then the last
// block, …, then the stem): `onReady(offset)` says everything from `offset` on is final, which
// is what the all-reduce bucketer needs to overlap communication with the rest of backward.

import MixerKernels
import MixerTrace

extension MixerModel {
  /// Loss of the micro-batch in `acts` against the targets the caller put in the head's buffers;
  /// returns the sum of per-example losses (the caller divides by the global batch).
  @discardableResult
  public func loss(acts: Activations) -> Double {
    Timeline.span("loss", .loss) { config.head.loss(self, acts: acts) }
  }

  /// Backpropagates `lossScale · Σ_b loss_b` (lossScale = 1/global batch for a mean) after
  /// `forward` and `loss` on the same `acts`.
  public func backward(
    acts: Activations, lossScale: Float, regularization: Regularization? = nil,
    onReady: ((Int) -> Void)? = nil
  ) {
    let cfg = config
    let b = acts.batch, s = cfg.tokens, c = cfg.hidden, sb = s * b
    let w = parameters.pointer, g = gradients.pointer

    let headStart = Timeline.begin()
    cfg.head.backward(self, acts: acts, lossScale: lossScale)
    let scale = table.offset(OfficialName.scale(OfficialName.preHeadLayerNorm))
    acts.dStream.update(repeating: 0, count: sb * c)
    layerNormBackward(
      dinp: acts.dStream, dweight: g + scale, dbias: g + table.offset(OfficialName.bias(OfficialName.preHeadLayerNorm)),
      dout: acts.dNorm, inp: acts.stream[cfg.blocks], weight: w + scale, mean: acts.headMean,
      rstd: acts.headRstd, rows: sb, channels: c)
    Timeline.end(headStart, "head backward", .backward)
    onReady?(scale)

    for i in stride(from: cfg.blocks - 1, through: 0, by: -1) {
      Timeline.span("block \(i) backward", .backward) { blockBackward(i, acts: acts, training: regularization) }
      onReady?(blockOffsets[i].ln0Scale)
    }

    Timeline.span("stem backward", .backward) { cfg.stem.stem.backward(self, acts: acts) }
    onReady?(0)
  }

  /// One MixerBlock backward: channel branch then token branch. On entry `acts.dStream` holds
  /// d/dx_{i+1}; on exit d/dx_i.
  func blockBackward(_ i: Int, acts: Activations, training: Regularization?) {
    let cfg = config
    let o = blockOffsets[i]
    let w = parameters.pointer, g = gradients.pointer
    let b = acts.batch, s = cfg.tokens, c = cfg.hidden, sb = s * b
    let dc = cfg.channelsMLP
    let dx = acts.dStream
    let dropBlock = training.map { $0.dropProbability(block: i, of: cfg.blocks) > 0 } ?? false
    let dropHidden = (training?.dropout ?? 0) > 0
    let dBranch: UnsafeMutablePointer<Float>
    if dropBlock {
      dBranch = acts.dBranch
      residualBackward(dbranch: dBranch, dx: dx, keep: acts.keep[i], tokens: s, batch: b, channels: c)
    } else {
      dBranch = dx
    }

    // channel mixing (each gradient read by two products is rounded once for both)
    biasBackwardColumns(dbias: g + o.chB2, dout: dBranch, rows: sb, cols: c)
    products.sharingOperand(dBranch, count: sb * c) {
      products.gemm(
        .transpose, .none, m: dc, n: c, k: sb, a: acts.channelAct[i], lda: dc, b: dBranch, ldb: c,
        beta: 1, c: g + o.chW2, ldc: c)
      products.hiddenBackward(
        .none, .transpose, m: sb, n: dc, k: c, a: dBranch, lda: c, b: w + o.chW2, ldb: c,
        gradient: acts.dHidden, pre: acts.channelPre[i], dbias: g + o.chB1, axis: .columns, kind: cfg.gelu,
        dropMask: dropHidden ? UnsafePointer(acts.channelDropMask[i]) : nil
      ) {
        products.gemm(
          .transpose, .none, m: c, n: dc, k: sb, a: acts.ln1Out[i], lda: c, b: acts.dHidden, ldb: dc,
          beta: 1, c: g + o.chW1, ldc: dc)
        products.gemm(
          .none, .transpose, m: sb, n: c, k: dc, a: acts.dHidden, lda: dc, b: w + o.chW1, ldb: dc,
          beta: 0, c: acts.dNorm, ldc: c)
      }
    }
    layerNormBackward(
      dinp: dx, dweight: g + o.ln1Scale, dbias: g + o.ln1Bias, dout: acts.dNorm,
      inp: acts.middle[i], weight: w + o.ln1Scale, mean: acts.ln1Mean[i], rstd: acts.ln1Rstd[i],
      rows: sb, channels: c)

    // token mixing (the same memory read as [S, B·C]); every token branch adds into dNorm = dL/dY
    if dropBlock {
      residualBackward(dbranch: dBranch, dx: dx, keep: acts.keep[i], tokens: s, batch: b, channels: c)
    }
    for (j, placed) in blockMixers[i].enumerated() {
      placed.mixer.backward(
        self, block: i, offsets: placed.offsets, saved: acts.mixerSaved[i][j], scratch: acts.scratch(for: placed.mixer),
        acts: acts, dBranch: dBranch, dropHidden: dropHidden, overwrite: j == 0)
    }
    layerNormBackward(
      dinp: dx, dweight: g + o.ln0Scale, dbias: g + o.ln0Bias, dout: acts.dNorm,
      inp: acts.stream[i], weight: w + o.ln0Scale, mean: acts.ln0Mean[i], rstd: acts.ln0Rstd[i],
      rows: sb, channels: c)
  }
}
