// The block-kind abstraction: what mixes the tokens of a block. Every block is pre-norm, Y =
// LN_0(x), followed by the channel MLP; between them, each of its token mixers adds a branch
// computed from Y into the residual stream. A block kind is a list of mixers (registered in
// `BlockKind.tokenMixers`): the paper's block is [TokenMLP], a ViT block [SelfAttention], the
// study's hybrids [TokenConvolution] and [TokenMLP, SelfAttention] (summed). A mixer owns its
// parameters (named in its `describe`, NetworkDescription.swift), its saved activations, forward
// and backward; the parameter table, the arena, FLOP counts and the block's forward and backward
// call these.

import MixerKernels

/// One way to mix tokens in a block.
public protocol TokenMixer: Sendable {
  /// Throws a one-line error when the config cannot use this mixer.
  func validate(_ config: MixerConfig) throws
  /// Forward FLOPs per image of the mixer's products.
  func forwardFLOPsPerImage(_ config: MixerConfig) -> Double
  /// Sizes of the buffers saved per block for backward.
  func savedSizes(_ config: MixerConfig, batch: Int) -> [Int]
  /// Sizes of the scratch buffers all blocks with this mixer share.
  func scratchSizes(_ config: MixerConfig, batch: Int) -> [Int]
  /// True when the mixer's branch can be added straight into the residual stream (the paper's
  /// block without stochastic depth: no branch buffer).
  var addsInPlace: Bool { get }
  /// True when nothing but matrix products reads Y (forward and backward): in bf16, LayerNorm
  /// then writes Y straight in the products' operand format and never in fp32.
  var readsInputOnlyThroughProducts: Bool { get }
  /// Adds the mixer's branch, computed from `acts.ln0Out[block]`, into `target` `[S, B, C]`.
  func forward(_ model: MixerModel, block: Int, offsets: [Int], saved: [UnsafeMutablePointer<Float>],
               scratch: [UnsafeMutablePointer<Float>], acts: Activations, into target: UnsafeMutablePointer<Float>,
               dropHidden: Bool)
  /// From d(branch) `dBranch`: parameter gradients accumulate; dL/dY goes into `acts.dNorm`,
  /// overwriting it when `overwrite`, else added.
  func backward(_ model: MixerModel, block: Int, offsets: [Int], saved: [UnsafeMutablePointer<Float>],
                scratch: [UnsafeMutablePointer<Float>], acts: Activations, dBranch: UnsafeMutablePointer<Float>,
                dropHidden: Bool, overwrite: Bool)
  /// The branch computed from Y `[S, C]` (tokens), written for inference and export
  /// (NetworkDescription.swift).
  func describe<Builder: NetworkBuilder>(_ config: MixerConfig, _ y: Builder.Value, scope: String, into builder: Builder)
    -> Builder.Value
}

extension TokenMixer {
  /// The offsets of the mixer's parameters under `scope` (e.g. block 3's), in the order
  /// `forward` and `backward` read them: each of its products' kernel and bias, as it describes them.
  func offsets(_ config: MixerConfig, _ table: ParameterTable, scope: String) -> [Int] {
    let products = ProductCollector()
    _ = describe(config, products.images, scope: scope, into: products)
    return products.layers.flatMap { [table.offset(OfficialName.kernel($0.name)), table.offset(OfficialName.bias($0.name))] }
  }
}

extension BlockKind {
  /// The token mixers of this kind, in the order their branches are summed.
  public var tokenMixers: [any TokenMixer] {
    switch self {
    case .mixer: return [TokenMLP()]
    case .attention: return [SelfAttention()]
    case .conv: return [TokenConvolution()]
    case .mixerAttention: return [TokenMLP(), SelfAttention()]
    }
  }
}

/// The paper's token-mixing MLP on the same memory read as `[S, B·C]`:
/// branch = W2ᵀ·gelu(W1ᵀ·Y + b1) + b2, two sgemms with no transpose of the activations.
public struct TokenMLP: TokenMixer {
  public init() {}
  public var addsInPlace: Bool { true }
  public var readsInputOnlyThroughProducts: Bool { true }
  public func validate(_ config: MixerConfig) throws {}

  /// transpose(W2ᵀ·gelu(W1ᵀ·Y + b1) + b2): the MLP on Yᵀ `[C, S]`, one row per channel
  public func describe<Builder: NetworkBuilder>(
    _ config: MixerConfig, _ y: Builder.Value, scope: String, into builder: Builder
  ) -> Builder.Value {
    let s = config.tokens, c = config.hidden, ds = config.tokensMLP
    let mixed = builder.mlp(
      builder.transpose(y),
      ProductLayer(name: OfficialName.join(scope, OfficialName.tokenMixing, OfficialName.dense0), inputs: s, outputs: ds, rowsPerImage: c),
      ProductLayer(name: OfficialName.join(scope, OfficialName.tokenMixing, OfficialName.dense1), inputs: ds, outputs: s, rowsPerImage: c),
      gelu: config.gelu)
    return builder.transpose(mixed)
  }
  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    2 * 2 * Double(config.tokens) * Double(config.tokensMLP) * Double(config.hidden)
  }
  /// pre-activation (gelu′ after forward) and activation, each `[D_S, B·C]`
  public func savedSizes(_ config: MixerConfig, batch: Int) -> [Int] {
    let n = config.tokensMLP * batch * config.hidden
    return [n, n]
  }
  public func scratchSizes(_ config: MixerConfig, batch: Int) -> [Int] { [] }

  public func forward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, into target: UnsafeMutablePointer<Float>,
    dropHidden: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer
    let s = cfg.tokens, bc = acts.batch * cfg.hidden, ds = cfg.tokensMLP
    let (pre, act) = (saved[0], saved[1])
    model.products.hiddenForward(
      .transpose, .none, m: ds, n: bc, k: s, a: w + o[0], lda: ds, b: acts.ln0Out[i], ldb: bc,
      bias: w + o[1], axis: .rows, kind: cfg.gelu, pre: pre, act: act,
      dropMask: dropHidden ? UnsafePointer(acts.tokenDropMask[i]) : nil)
    addRowBias(target, bias: w + o[3], rows: s, cols: bc)
    model.products.gemm(.transpose, .none, m: s, n: bc, k: ds, a: w + o[2], lda: s, b: act, ldb: bc, beta: 1, c: target, ldc: bc)
  }

  public func backward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, dBranch: UnsafeMutablePointer<Float>,
    dropHidden: Bool, overwrite: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer, g = model.gradients.pointer
    let s = cfg.tokens, bc = acts.batch * cfg.hidden, ds = cfg.tokensMLP
    let (pre, act) = (saved[0], saved[1])
    biasBackwardRows(dbias: g + o[3], dout: dBranch, rows: s, cols: bc)
    // each gradient read by two products is rounded once for both
    let products = model.products
    products.sharingOperand(dBranch, count: s * bc) {
      products.gemm(.none, .transpose, m: ds, n: s, k: bc, a: act, lda: bc, b: dBranch, ldb: bc, beta: 1, c: g + o[2], ldc: s)
      products.hiddenBackward(
        .none, .none, m: ds, n: bc, k: s, a: w + o[2], lda: s, b: dBranch, ldb: bc,
        gradient: acts.dHidden, pre: pre, dbias: g + o[1], axis: .rows, kind: cfg.gelu,
        dropMask: dropHidden ? UnsafePointer(acts.tokenDropMask[i]) : nil
      ) {
        products.gemm(.none, .transpose, m: s, n: ds, k: bc, a: acts.ln0Out[i], lda: bc, b: acts.dHidden, ldb: bc, beta: 1, c: g + o[0], ldc: ds)
        products.gemm(.none, .none, m: s, n: bc, k: ds, a: w + o[0], lda: ds, b: acts.dHidden, ldb: bc, beta: overwrite ? 0 : 1, c: acts.dNorm, ldc: bc)
      }
    }
  }
}

/// ViT multi-head self-attention over the tokens of each image (per-head sgemms on Q/K/V in place).
public struct SelfAttention: TokenMixer {
  public init() {}
  public var addsInPlace: Bool { false }
  /// (its kernel reads Y in fp32)
  public var readsInputOnlyThroughProducts: Bool { false }
  public func validate(_ config: MixerConfig) throws {
    if config.heads <= 0 || config.hidden % config.heads != 0 {
      throw ConfigError("attention needs the width \(config.hidden) to divide into \(config.heads) heads: pass --heads")
    }
  }

  /// out(attention(qkv(Y)))
  public func describe<Builder: NetworkBuilder>(
    _ config: MixerConfig, _ y: Builder.Value, scope: String, into builder: Builder
  ) -> Builder.Value {
    let s = config.tokens, c = config.hidden, p = scope + "/MultiHeadDotProductAttention_0"
    let qkv = builder.dense(y, ProductLayer(name: p + "/qkv", inputs: c, outputs: 3 * c, rowsPerImage: s))
    let attention = builder.attention(qkv, heads: config.heads)
    return builder.dense(attention, ProductLayer(name: p + "/out", inputs: c, outputs: c, rowsPerImage: s))
  }
  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    let s = Double(config.tokens), c = Double(config.hidden)
    return 2 * s * c * 3 * c + 2 * 2 * s * s * c + 2 * s * c * c
  }
  /// qkv `[S, B, 3C]`, probabilities `[B, H, S, S]`, attention output `[S, B, C]`
  public func savedSizes(_ config: MixerConfig, batch: Int) -> [Int] {
    let sbc = config.tokens * batch * config.hidden
    return [3 * sbc, batch * config.heads * config.tokens * config.tokens, sbc]
  }
  /// d(attention) `[S, B, C]`, d(qkv) `[S, B, 3C]`, d(scores) `[S, S]`
  public func scratchSizes(_ config: MixerConfig, batch: Int) -> [Int] {
    let sbc = config.tokens * batch * config.hidden
    return [sbc, 3 * sbc, config.tokens * config.tokens]
  }

  public func forward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, into target: UnsafeMutablePointer<Float>,
    dropHidden: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer
    let n = cfg.tokens * acts.batch * cfg.hidden
    attentionForward(
      out: acts.dNorm, qkv: saved[0], probabilities: saved[1], attention: saved[2], inp: acts.ln0Out[i],
      qkvWeight: w + o[0], qkvBias: w + o[1], projWeight: w + o[2], projBias: w + o[3], tokens: cfg.tokens,
      batch: acts.batch, channels: cfg.hidden, heads: cfg.heads, products: model.products)
    for j in 0..<n { target[j] += acts.dNorm[j] }
  }

  public func backward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, dBranch: UnsafeMutablePointer<Float>,
    dropHidden: Bool, overwrite: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer, g = model.gradients.pointer
    if overwrite { acts.dNorm.update(repeating: 0, count: cfg.tokens * acts.batch * cfg.hidden) }
    attentionBackward(
      dinp: acts.dNorm, dqkvWeight: g + o[0], dqkvBias: g + o[1], dprojWeight: g + o[2], dprojBias: g + o[3],
      dout: dBranch, qkv: saved[0], probabilities: saved[1], attention: saved[2], inp: acts.ln0Out[i],
      qkvWeight: w + o[0], projWeight: w + o[2], tokens: cfg.tokens, batch: acts.batch, channels: cfg.hidden,
      heads: cfg.heads, dattention: scratch[0], dqkv: scratch[1], dscores: scratch[2], products: model.products)
  }
}

/// A K×K convolution over the (H/P)×(W/P) token grid (im2col + one sgemm), C to C channels.
public struct TokenConvolution: TokenMixer {
  public init() {}
  public var addsInPlace: Bool { false }
  /// (its kernel reads Y in fp32)
  public var readsInputOnlyThroughProducts: Bool { false }
  public func validate(_ config: MixerConfig) throws {
    if config.kernel <= 0 || config.kernel % 2 == 0 {
      throw ConfigError("the conv kernel must be odd and positive, got \(config.kernel)")
    }
  }

  /// conv(Y) on the token grid, stride 1
  public func describe<Builder: NetworkBuilder>(
    _ config: MixerConfig, _ y: Builder.Value, scope: String, into builder: Builder
  ) -> Builder.Value {
    let k = config.kernel, c = config.hidden
    return builder.convolution(
      y, ProductLayer(name: scope + "/Conv_0", inputs: k * k * c, outputs: c, rowsPerImage: config.tokens, kernelShape: [k, k, c, c]),
      kernel: k,
      stride: 1, grid: (config.gridHeight, config.gridWidth))
  }
  public func forwardFLOPsPerImage(_ config: MixerConfig) -> Double {
    2 * Double(config.tokens) * Double(config.kernel * config.kernel) * Double(config.hidden) * Double(config.hidden)
  }
  /// im2col columns `[S·B, K·K·C]`
  public func savedSizes(_ config: MixerConfig, batch: Int) -> [Int] {
    [config.tokens * batch * config.kernel * config.kernel * config.hidden]
  }
  public func scratchSizes(_ config: MixerConfig, batch: Int) -> [Int] {
    [config.tokens * batch * config.kernel * config.kernel * config.hidden]
  }

  public func forward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, into target: UnsafeMutablePointer<Float>,
    dropHidden: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer
    let n = cfg.tokens * acts.batch * cfg.hidden
    tokenConvForward(
      out: acts.dNorm, columns: saved[0], inp: acts.ln0Out[i], weight: w + o[0], bias: w + o[1],
      gridHeight: cfg.gridHeight, gridWidth: cfg.gridWidth, batch: acts.batch, inChannels: cfg.hidden,
      outChannels: cfg.hidden, kernel: cfg.kernel, products: model.products)
    for j in 0..<n { target[j] += acts.dNorm[j] }
  }

  public func backward(
    _ model: MixerModel, block i: Int, offsets o: [Int], saved: [UnsafeMutablePointer<Float>],
    scratch: [UnsafeMutablePointer<Float>], acts: Activations, dBranch: UnsafeMutablePointer<Float>,
    dropHidden: Bool, overwrite: Bool
  ) {
    let cfg = model.config, w = model.parameters.pointer, g = model.gradients.pointer
    if overwrite { acts.dNorm.update(repeating: 0, count: cfg.tokens * acts.batch * cfg.hidden) }
    tokenConvBackward(
      dinp: acts.dNorm, dweight: g + o[0], dbias: g + o[1], dout: dBranch, columns: saved[0], weight: w + o[0],
      scratch: scratch[0], gridHeight: cfg.gridHeight, gridWidth: cfg.gridWidth, batch: acts.batch,
      inChannels: cfg.hidden, outChannels: cfg.hidden, kernel: cfg.kernel, products: model.products)
  }
}
