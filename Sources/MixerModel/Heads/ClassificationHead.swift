// The paper's head: logits = mean_s(Y) · W + b, one class per image; softmax cross-entropy
// (or, `--loss sigmoid`, sigmoid cross-entropy summed over the classes) against `[B, K]` targets
// (one-hot, label-smoothed or mixed by mixup).

import MixerKernels

/// One class per image (the paper's head).
public struct ClassificationHead: Head {
  public init() {}
  public var task: MixerTask { .classification }
  public var scope: String { OfficialName.head }
  public var note: String? { nil }
  public var losses: [HeadLoss] { [.softmax, .sigmoid] }

  public func outputsPerToken(_ config: MixerConfig) -> Int { config.classes }
  public func parameterCount(_ config: MixerConfig) -> Int { config.hidden * config.classes + config.classes }
  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double { 2 * Double(config.hidden) * Double(config.classes) }

  public func describe<Builder: NetworkBuilder>(_ config: MixerConfig, _ y: Builder.Value, into builder: Builder) -> Builder.Value {
    builder.dense(
      builder.meanOverTokens(y),
      ProductLayer(name: OfficialName.head, inputs: config.hidden, outputs: config.classes, rowsPerImage: 1, kernelRole: .headKernel))
  }
  public func outputsPerImage(_ config: MixerConfig) -> Int { config.classes }
  public func outputs(_ acts: Activations) -> UnsafeMutablePointer<Float> { acts.head(ClassificationBuffers.self).logits }

  public func makeBuffers(_ config: MixerConfig, batch: Int) -> any HeadBuffers {
    ClassificationBuffers(batch: batch, channels: config.hidden, classes: config.classes)
  }

  public func forward(_ model: MixerModel, acts: Activations) {
    let cfg = model.config, out = acts.head(ClassificationBuffers.self)
    let w = model.parameters.pointer
    let b = acts.batch, c = cfg.hidden, k = cfg.classes
    tokenMeanForward(out: out.pooled, inp: acts.headNormOut, tokens: cfg.tokens, batch: b, channels: c)
    broadcastColumns(out: out.logits, bias: w + model.table.offset(OfficialName.bias(OfficialName.head)), rows: b, cols: k)
    model.products.gemm(
      .none, .none, m: b, n: k, k: c, a: out.pooled, lda: c, b: w + model.table.offset(OfficialName.kernel(OfficialName.head)),
      ldb: k, beta: 1, c: out.logits, ldc: k)
  }

  public func loss(_ model: MixerModel, acts: Activations) -> Double {
    let out = acts.head(ClassificationBuffers.self)
    let b = acts.batch
    switch model.config.loss {
    case .softmax:
      softmaxCrossEntropyForward(
        losses: out.losses, probs: out.probabilities, logits: out.logits, targets: out.targets,
        batch: b, classes: model.config.classes)
    case .sigmoid:
      sigmoidCrossEntropyForward(
        losses: out.losses, probs: out.probabilities, logits: out.logits, targets: out.targets,
        batch: b, classes: model.config.classes)
    }
    var total = 0.0
    for e in 0..<b { total += Double(out.losses[e]) }
    return total
  }

  public func backward(_ model: MixerModel, acts: Activations, lossScale: Float) {
    let cfg = model.config, out = acts.head(ClassificationBuffers.self)
    let b = acts.batch, s = cfg.tokens, c = cfg.hidden, k = cfg.classes
    let w = model.parameters.pointer, g = model.gradients.pointer
    switch cfg.loss {
    case .softmax:
      softmaxCrossEntropyBackward(
        dlogits: out.dLogits, probs: out.probabilities, targets: out.targets, batch: b,
        classes: k, scale: lossScale)
    case .sigmoid:
      sigmoidCrossEntropyBackward(
        dlogits: out.dLogits, probs: out.probabilities, targets: out.targets, batch: b,
        classes: k, scale: lossScale)
    }
    let headKernel = model.table.offset(OfficialName.kernel(OfficialName.head)), headBias = model.table.offset(OfficialName.bias(OfficialName.head))
    biasBackwardColumns(dbias: g + headBias, dout: out.dLogits, rows: b, cols: k)
    model.products.gemm(
      .transpose, .none, m: c, n: k, k: b, a: out.pooled, lda: c, b: out.dLogits, ldb: k,
      beta: 1, c: g + headKernel, ldc: k)
    model.products.gemm(
      .none, .transpose, m: b, n: c, k: k, a: out.dLogits, lda: k, b: w + headKernel, ldb: k,
      beta: 0, c: out.dPooled, ldc: c)
    tokenMeanBackward(dinp: acts.dNorm, dout: out.dPooled, tokens: s, batch: b, channels: c)
  }
}

/// The classification head's buffers.
public final class ClassificationBuffers: HeadBuffers {
  private let arena: FloatArena
  /// mean over tokens of Y, `[B, C]`
  let pooled: UnsafeMutablePointer<Float>
  /// `[B, K]`
  public let logits: UnsafeMutablePointer<Float>
  /// softmax (or each sigmoid, `--loss sigmoid`) of the logits after `loss`, `[B, K]`
  public let probabilities: UnsafeMutablePointer<Float>
  /// target distributions, `[B, K]`: set by the caller before `loss`
  public let targets: UnsafeMutablePointer<Float>
  public let losses: UnsafeMutablePointer<Float>  // [B]
  let dPooled: UnsafeMutablePointer<Float>  // [B, C]
  let dLogits: UnsafeMutablePointer<Float>  // [B, K]

  init(batch b: Int, channels c: Int, classes k: Int) {
    arena = FloatArena(sizes: [b * c, b * k, b * k, b * k, b, b * c, b * k])
    pooled = arena[0]
    logits = arena[1]
    probabilities = arena[2]
    targets = arena[3]
    losses = arena[4]
    dPooled = arena[5]
    dLogits = arena[6]
  }

  public var byteCount: Int { arena.count * MemoryLayout<Float>.stride }
}
