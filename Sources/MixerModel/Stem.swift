// The stem abstraction: how images `[B, H, W, 3]` become the first tokens x_0 `[S, B, C]`. A stem
// owns its parameters (the first in the flat buffer), forward, backward and FLOP count; model and
// parameter table call these. Kinds are registered in `StemKind` (MixerConfig.swift).

import MixerKernels

/// How images become tokens.
public protocol Stem: Sendable {
  var kind: StemKind { get }
  /// Throws a one-line error when the config cannot use this stem.
  func validate(_ config: MixerConfig) throws
  /// Forward FLOPs per image of the stem's products.
  func forwardFLOPsPerImage(_ config: MixerConfig) -> Double
  /// FLOPs per image of the input-gradient products that backward skips (the image needs none).
  func unneededInputGradientFLOPsPerImage(_ config: MixerConfig) -> Double
  /// x_0 into `acts.stream[0]`.
  func forward(_ model: MixerModel, images: UnsafePointer<Float>, acts: Activations)
  /// Parameter gradients from d/dx_0 in `acts.dStream` (they accumulate).
  func backward(_ model: MixerModel, acts: Activations)
  /// x_0 `[S, C]` from the images, written for inference and export (NetworkDescription.swift).
  func describe<Builder: NetworkBuilder>(_ config: MixerConfig, images: Builder.Value, into builder: Builder) -> Builder.Value
}

/// The paper's stem: non-overlapping P×P patches, one sgemm `[S·B, P²3] · [P²3, C]` + bias
/// (a stride-P convolution, kernel stored HWIO `[P, P, 3, C]`).
public struct LinearStem: Stem {
  public init() {}
  public var kind: StemKind { .linear }
  public func validate(_ config: MixerConfig) throws {}

  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    2 * Double(config.tokens) * Double(config.patchLength) * Double(config.hidden)
  }
  public func unneededInputGradientFLOPsPerImage(_ config: MixerConfig) -> Double { forwardFLOPsPerImage(config) }

  public func describe<Builder: NetworkBuilder>(_ config: MixerConfig, images: Builder.Value, into builder: Builder) -> Builder.Value {
    builder.dense(
      builder.patches(images, patch: config.patch),
      ProductLayer(
        name: OfficialName.stem, inputs: config.patchLength, outputs: config.hidden, rowsPerImage: config.tokens,
        kernelShape: [config.patch, config.patch, 3, config.hidden]))
  }

  public func forward(_ model: MixerModel, images: UnsafePointer<Float>, acts: Activations) {
    let cfg = model.config
    let sb = cfg.tokens * acts.batch, c = cfg.hidden
    let w = model.parameters.pointer
    patchifyForward(
      patches: acts.patches, images: images, batch: acts.batch, height: cfg.imageHeight,
      width: cfg.imageWidth, patch: cfg.patch)
    broadcastColumns(out: acts.stream[0], bias: w + model.table.offset(OfficialName.bias(OfficialName.stem)), rows: sb, cols: c)
    model.products.gemm(
      .none, .none, m: sb, n: c, k: cfg.patchLength, a: acts.patches, lda: cfg.patchLength,
      b: w + model.table.offset(OfficialName.kernel(OfficialName.stem)), ldb: c, beta: 1, c: acts.stream[0], ldc: c)
  }

  public func backward(_ model: MixerModel, acts: Activations) {
    let cfg = model.config
    let sb = cfg.tokens * acts.batch, c = cfg.hidden
    let g = model.gradients.pointer
    biasBackwardColumns(dbias: g + model.table.offset(OfficialName.bias(OfficialName.stem)), dout: acts.dStream, rows: sb, cols: c)
    model.products.gemm(
      .transpose, .none, m: cfg.patchLength, n: c, k: sb, a: acts.patches, lda: cfg.patchLength,
      b: acts.dStream, ldb: c, beta: 1, c: g + model.table.offset(OfficialName.kernel(OfficialName.stem)), ldc: c)
  }
}

/// The CNN stem: stride-2 3×3 convolutions with GELU between them, the last one ending at C
/// channels on the (H/P)×(W/P) grid, then laid out token-major as x_0.
public struct CNNStem: Stem {
  public init() {}
  public var kind: StemKind { .cnn }

  public func validate(_ config: MixerConfig) throws {
    guard config.patch >= 2, config.patch & (config.patch - 1) == 0 else {
      throw ConfigError("the CNN stem needs a power-of-two patch (total stride), got \(config.patch)")
    }
  }

  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    config.cnnStemLayers.reduce(0.0) { total, layer in
      total + 2 * Double(layer.height / 2 * (layer.width / 2)) * 9 * Double(layer.inChannels * layer.outChannels)
    }
  }
  public func unneededInputGradientFLOPsPerImage(_ config: MixerConfig) -> Double { 0 }

  public func describe<Builder: NetworkBuilder>(_ config: MixerConfig, images: Builder.Value, into builder: Builder) -> Builder.Value {
    let layers = config.cnnStemLayers
    var x = images
    for (j, layer) in layers.enumerated() {
      let product = ProductLayer(
        name: OfficialName.join(OfficialName.stem, "Conv_\(j)"), inputs: 9 * layer.inChannels, outputs: layer.outChannels,
        rowsPerImage: layer.height / 2 * (layer.width / 2), kernelShape: [3, 3, layer.inChannels, layer.outChannels])
      x = builder.convolution(x, product, kernel: 3, stride: 2, grid: nil)
      if j < layers.count - 1 { x = builder.gelu(x, kind: config.gelu) }
    }
    return builder.mapToTokens(x)
  }

  public func forward(_ model: MixerModel, images: UnsafePointer<Float>, acts: Activations) {
    let cfg = model.config
    let w = model.parameters.pointer
    let layers = cfg.cnnStemLayers
    var input = images
    for (j, layer) in layers.enumerated() {
      let n = acts.batch * (layer.height / 2) * (layer.width / 2) * layer.outChannels
      imageConvForward(
        out: acts.stemPre[j], columns: acts.stemColumns[j], inp: input,
        weight: w + model.table.offset(OfficialName.kernel(OfficialName.join(OfficialName.stem, "Conv_\(j)"))), bias: w + model.table.offset(OfficialName.bias(OfficialName.join(OfficialName.stem, "Conv_\(j)"))),
        batch: acts.batch, height: layer.height, width: layer.width, inChannels: layer.inChannels,
        outChannels: layer.outChannels, kernel: 3, stride: 2, products: model.products)
      if j < layers.count - 1 {
        geluForward(out: acts.stemAct[j], inp: acts.stemPre[j], count: n, kind: cfg.gelu)
        input = UnsafePointer(acts.stemAct[j])
      }
    }
    imageToTokens(
      tokens: acts.stream[0], map: acts.stemPre[layers.count - 1], batch: acts.batch,
      gridHeight: cfg.gridHeight, gridWidth: cfg.gridWidth, channels: cfg.hidden)
  }

  public func backward(_ model: MixerModel, acts: Activations) {
    let cfg = model.config
    let w = model.parameters.pointer, g = model.gradients.pointer
    let layers = cfg.cnnStemLayers
    let last = layers.count - 1
    tokensToImage(
      map: acts.stemGrad[last], tokens: acts.dStream, batch: acts.batch, gridHeight: cfg.gridHeight,
      gridWidth: cfg.gridWidth, channels: cfg.hidden)
    for j in stride(from: last, through: 0, by: -1) {
      let layer = layers[j]
      if j < last {  // through the GELU after layer j
        let n = acts.batch * (layer.height / 2) * (layer.width / 2) * layer.outChannels
        geluBackward(dinp: acts.stemGrad[j], dout: acts.stemGrad[j], inp: acts.stemPre[j], count: n, kind: cfg.gelu)
      }
      // the image's own gradient is not needed: layer 0 writes it to scratch
      let dinp = j > 0 ? acts.stemGrad[j - 1] : acts.stemScratch
      dinp.update(repeating: 0, count: acts.batch * layer.height * layer.width * layer.inChannels)
      let kernel = model.table.offset(OfficialName.kernel(OfficialName.join(OfficialName.stem, "Conv_\(j)")))
      imageConvBackward(
        dinp: dinp, dweight: g + kernel, dbias: g + model.table.offset(OfficialName.bias(OfficialName.join(OfficialName.stem, "Conv_\(j)"))),
        dout: acts.stemGrad[j], columns: acts.stemColumns[j], weight: w + kernel,
        scratch: j == 0 ? acts.stemColumns[0] : acts.stemScratch, batch: acts.batch,
        height: layer.height, width: layer.width, inChannels: layer.inChannels,
        outChannels: layer.outChannels, kernel: 3, stride: 2, products: model.products)
    }
  }
}
