// A per-pixel head: every token of Y `[S·B, C]` through one Dense to its P·P·K patch of logits,
// reassembled into `[B, H, W, K]`; the loss is each image's mean pixel cross-entropy over its
// labelled pixels (label smoothing optional, `SegmentationMask.ignore` pixels left out).

import MixerKernels

/// One class per pixel.
public struct SegmentationHead: Head {
  public init() {}
  public var task: MixerTask { .segmentation }
  public var scope: String { "segmentation_head" }
  public var note: String? { "segmentation head" }
  /// per-pixel softmax only: a per-pixel sigmoid loss is not implemented (MixerConfig.validate
  /// refuses `--loss sigmoid` with this task)
  public var losses: [HeadLoss] { [.softmax] }

  public func outputsPerToken(_ config: MixerConfig) -> Int { config.patch * config.patch * config.classes }
  public func parameterCount(_ config: MixerConfig) -> Int {
    let n = outputsPerToken(config)
    return config.hidden * n + n
  }
  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    2 * Double(config.tokens) * Double(config.hidden) * Double(outputsPerToken(config))
  }

  public func describe<Builder: NetworkBuilder>(_ config: MixerConfig, _ y: Builder.Value, into builder: Builder) -> Builder.Value {
    let product = ProductLayer(
      name: "segmentation_head", inputs: config.hidden, outputs: outputsPerToken(config), rowsPerImage: config.tokens,
      kernelRole: .headKernel)
    return builder.tokensToPixels(builder.dense(y, product), patch: config.patch, classes: config.classes)
  }
  public func outputsPerImage(_ config: MixerConfig) -> Int { config.imageHeight * config.imageWidth * config.classes }
  public func outputs(_ acts: Activations) -> UnsafeMutablePointer<Float> { acts.head(SegmentationBuffers.self).pixelLogits }

  public func makeBuffers(_ config: MixerConfig, batch: Int) -> any HeadBuffers {
    SegmentationBuffers(
      batch: batch, tokenOutputs: config.tokens * batch * outputsPerToken(config),
      pixels: config.imageHeight * config.imageWidth, classes: config.classes)
  }

  public func forward(_ model: MixerModel, acts: Activations) {
    let cfg = model.config, out = acts.head(SegmentationBuffers.self)
    let w = model.parameters.pointer
    let sb = cfg.tokens * acts.batch, n = outputsPerToken(cfg)
    broadcastColumns(out: out.tokenLogits, bias: w + model.table.offset("segmentation_head/bias"), rows: sb, cols: n)
    model.products.gemm(
      .none, .none, m: sb, n: n, k: cfg.hidden, a: acts.headNormOut, lda: cfg.hidden,
      b: w + model.table.offset("segmentation_head/kernel"), ldb: n, beta: 1, c: out.tokenLogits, ldc: n)
    tokensToPixelsForward(
      pixels: out.pixelLogits, tokens: out.tokenLogits, batch: acts.batch, height: cfg.imageHeight,
      width: cfg.imageWidth, patch: cfg.patch, channels: cfg.classes)
  }

  public func loss(_ model: MixerModel, acts: Activations) -> Double {
    let cfg = model.config, out = acts.head(SegmentationBuffers.self)
    let b = acts.batch
    pixelCrossEntropyForward(
      losses: out.losses, probs: out.pixelProbabilities, validCounts: out.validPixels,
      logits: out.pixelLogits, labels: out.masks, batch: b,
      pixels: cfg.imageHeight * cfg.imageWidth, classes: cfg.classes, smoothing: out.labelSmoothing,
      ignore: -1)
    var total = 0.0
    for e in 0..<b { total += Double(out.losses[e]) }
    return total
  }

  public func backward(_ model: MixerModel, acts: Activations, lossScale: Float) {
    let cfg = model.config, out = acts.head(SegmentationBuffers.self)
    let b = acts.batch, c = cfg.hidden, sb = cfg.tokens * b, n = outputsPerToken(cfg)
    let w = model.parameters.pointer, g = model.gradients.pointer
    let dPixels = out.pixelProbabilities  // in place: the probabilities are not needed after this
    pixelCrossEntropyBackward(
      dlogits: dPixels, probs: dPixels, validCounts: out.validPixels,
      labels: out.masks, batch: b, pixels: cfg.imageHeight * cfg.imageWidth, classes: cfg.classes,
      smoothing: out.labelSmoothing, scale: lossScale, ignore: -1)
    let dTokens = out.tokenLogits  // the patch logits are not needed any more
    tokensToPixelsBackward(
      dtokens: dTokens, dpixels: dPixels, batch: b, height: cfg.imageHeight,
      width: cfg.imageWidth, patch: cfg.patch, channels: cfg.classes)
    let kernel = model.table.offset("segmentation_head/kernel")
    biasBackwardColumns(dbias: g + model.table.offset("segmentation_head/bias"), dout: dTokens, rows: sb, cols: n)
    model.products.gemm(
      .transpose, .none, m: c, n: n, k: sb, a: acts.headNormOut, lda: c, b: dTokens, ldb: n,
      beta: 1, c: g + kernel, ldc: n)
    model.products.gemm(
      .none, .transpose, m: sb, n: c, k: n, a: dTokens, lda: n, b: w + kernel, ldb: n,
      beta: 0, c: acts.dNorm, ldc: c)
  }
}

/// The segmentation head's buffers.
public final class SegmentationBuffers: HeadBuffers {
  private let arena: FloatArena
  /// `[S, B, P·P·K]`; its gradient in backward
  let tokenLogits: UnsafeMutablePointer<Float>
  /// per-pixel logits `[B, H, W, K]`
  public let pixelLogits: UnsafeMutablePointer<Float>
  /// per-pixel softmax `[B, H, W, K]` after `loss`; backward turns it into the logits' gradient
  public let pixelProbabilities: UnsafeMutablePointer<Float>
  /// labelled pixels per image `[B]` after `loss`
  public let validPixels: UnsafeMutablePointer<Float>
  public let losses: UnsafeMutablePointer<Float>  // [B]
  /// the class of every pixel `[B, H, W]`, or `SegmentationMask.ignore` (-1): set by the caller
  /// before `loss`
  public let masks: UnsafeMutablePointer<Int32>
  private let maskCount: Int
  /// label smoothing of the pixel loss
  public var labelSmoothing: Float = 0

  init(batch b: Int, tokenOutputs: Int, pixels: Int, classes k: Int) {
    arena = FloatArena(sizes: [tokenOutputs, b * pixels * k, b * pixels * k, b, b])
    tokenLogits = arena[0]
    pixelLogits = arena[1]
    pixelProbabilities = arena[2]
    validPixels = arena[3]
    losses = arena[4]
    maskCount = max(1, b * pixels)
    masks = UnsafeMutablePointer<Int32>.allocate(capacity: maskCount)
    masks.initialize(repeating: -1, count: maskCount)
  }

  public var byteCount: Int { arena.count * MemoryLayout<Float>.stride + maskCount * 4 }

  deinit { masks.deallocate() }
}
