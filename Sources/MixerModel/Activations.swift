// The activation arena: every buffer forward saves for backward, and backward's scratch, carved
// out of one allocation sized for one (model, micro-batch). Shapes are in the legend of
// MixerConfig.swift; the residual stream is token-major `[S, B, C]`.

import MixerKernels

/// Saved activations and scratch for a micro-batch of `batch` images.
public final class Activations {
  public let batch: Int
  let storage: UnsafeMutablePointer<Float>
  let storageCount: Int

  let patches: UnsafeMutablePointer<Float>  // [S, B, P·P·3]
  let stream: [UnsafeMutablePointer<Float>]  // L+1 × [S, B, C]: x_0 (stem out) … x_L
  let middle: [UnsafeMutablePointer<Float>]  // L × [S, B, C]: after the token-mixing residual
  let ln0Out, ln1Out: [UnsafeMutablePointer<Float>]  // L × [S, B, C]
  let ln0Mean, ln0Rstd, ln1Mean, ln1Rstd: [UnsafeMutablePointer<Float>]  // L × [S·B]
  let tokenPre, tokenAct: [UnsafeMutablePointer<Float>]  // L × [D_S, B·C]; Pre holds gelu′ after forward
  let channelPre, channelAct: [UnsafeMutablePointer<Float>]  // L × [S·B, D_C]; Pre holds gelu′
  let headNormOut: UnsafeMutablePointer<Float>  // [S, B, C]
  let headMean, headRstd: UnsafeMutablePointer<Float>  // [S·B]
  let keep: [UnsafeMutablePointer<Float>]  // L × [B]: stochastic-depth keep mask (0/1)
  /// the head's outputs, targets and scratch (Head.swift)
  public let head: any HeadBuffers
  // hybrid blocks (empty buffers for blocks of other kinds)
  let qkv: [UnsafeMutablePointer<Float>]  // L × [S, B, 3C]
  let attentionProbabilities: [UnsafeMutablePointer<Float>]  // L × [B, H, S, S]
  let attentionOut: [UnsafeMutablePointer<Float>]  // L × [S, B, C] before the output projection
  let convColumns: [UnsafeMutablePointer<Float>]  // L × [S·B, K·K·C] (im2col)
  // CNN stem, per layer j: im2col, pre-activation and GELU output `[B, h_j/2, w_j/2, c_j]`
  let stemColumns, stemPre, stemAct, stemGrad: [UnsafeMutablePointer<Float>]
  let stemScratch: UnsafeMutablePointer<Float>  // the largest im2col, and the image gradient

  // backward scratch
  let dStream: UnsafeMutablePointer<Float>  // [S, B, C]
  let dNorm: UnsafeMutablePointer<Float>  // [S, B, C]
  let dBranch: UnsafeMutablePointer<Float>  // [S, B, C]
  let dHidden: UnsafeMutablePointer<Float>  // max(D_S·B·C, S·B·D_C)
  let branch: UnsafeMutablePointer<Float>  // [S, B, C]: branch output when stochastic depth is on
  let dAttention: UnsafeMutablePointer<Float>  // [S, B, C]
  let dQKV: UnsafeMutablePointer<Float>  // [S, B, 3C]
  let dScores: UnsafeMutablePointer<Float>  // [S, S]
  let convScratch: UnsafeMutablePointer<Float>  // [S·B, K·K·C]

  // dropout masks (allocated only when dropout is used): L × [D_S·B·C] and L × [S·B·D_C]
  var tokenDropMask: [UnsafeMutablePointer<Float>] = []
  var channelDropMask: [UnsafeMutablePointer<Float>] = []
  private var dropStorage: UnsafeMutablePointer<Float>?

  public init(config: MixerConfig, batch: Int) {
    self.batch = batch
    let s = config.tokens, c = config.hidden, l = config.blocks
    let sbc = s * batch * c
    let tokenHidden = config.tokensMLP * batch * c
    let channelHidden = s * batch * config.channelsMLP
    var sizes: [Int] = []
    func take(_ n: Int) -> Int { sizes.append(n); return sizes.count - 1 }
    let patchesIndex = take(s * batch * config.patchLength)
    let streamIndex = (0...l).map { _ in take(sbc) }
    let middleIndex = (0..<l).map { _ in take(sbc) }
    let ln0OutIndex = (0..<l).map { _ in take(sbc) }
    let ln1OutIndex = (0..<l).map { _ in take(sbc) }
    let statsIndex = (0..<(4 * l)).map { _ in take(s * batch) }
    let kinds = (0..<l).map { config.kind(ofBlock: $0) }
    let tokenPreIndex = kinds.map { take($0.usesMixer ? tokenHidden : 0) }
    let tokenActIndex = kinds.map { take($0.usesMixer ? tokenHidden : 0) }
    let h = config.heads, columns = s * batch * config.kernel * config.kernel * c
    let qkvIndex = kinds.map { take($0.usesAttention ? 3 * sbc : 0) }
    let probabilitiesIndex = kinds.map { take($0.usesAttention ? batch * h * s * s : 0) }
    let attentionOutIndex = kinds.map { take($0.usesAttention ? sbc : 0) }
    let columnsIndex = kinds.map { take($0 == .conv ? columns : 0) }
    let anyAttention = kinds.contains { $0.usesAttention }, anyConv = kinds.contains(.conv)
    let stemLayers = config.cnnStemLayers
    let stemColumnSizes = stemLayers.map {
      imageConvColumnsCount(batch: batch, height: $0.height, width: $0.width, inChannels: $0.inChannels, kernel: 3, stride: 2)
    }
    let stemOutSizes = stemLayers.map { batch * ($0.height / 2) * ($0.width / 2) * $0.outChannels }
    let stemColumnsIndex = stemColumnSizes.map(take)
    let stemPreIndex = stemOutSizes.map(take)
    let stemActIndex = stemOutSizes.map(take)
    let stemGradIndex = stemOutSizes.map(take)
    let stemScratchIndex = take(max(stemColumnSizes.max() ?? 0, batch * config.imageHeight * config.imageWidth * 3))
    let hybridScratchIndex = [
      take(anyAttention ? sbc : 0), take(anyAttention ? 3 * sbc : 0), take(anyAttention ? s * s : 0),
      take(anyConv ? columns : 0),
    ]
    let channelPreIndex = (0..<l).map { _ in take(channelHidden) }
    let channelActIndex = (0..<l).map { _ in take(channelHidden) }
    let headIndex = [take(sbc), take(s * batch), take(s * batch)]
    let keepIndex = (0..<l).map { _ in take(batch) }
    let scratchIndex = [take(sbc), take(sbc), take(sbc), take(max(tokenHidden, channelHidden)), take(sbc)]
    // 16-float alignment for every buffer
    var offsets: [Int] = []
    var total = 0
    for n in sizes {
      offsets.append(total)
      total += max(16, (n + 15) / 16 * 16)
    }
    storageCount = total
    storage = UnsafeMutablePointer<Float>.allocate(capacity: total)
    storage.initialize(repeating: 0, count: total)
    let base = storage
    func at(_ i: Int) -> UnsafeMutablePointer<Float> { base + offsets[i] }
    patches = at(patchesIndex)
    stream = streamIndex.map(at)
    middle = middleIndex.map(at)
    ln0Out = ln0OutIndex.map(at)
    ln1Out = ln1OutIndex.map(at)
    ln0Mean = (0..<l).map { at(statsIndex[4 * $0]) }
    ln0Rstd = (0..<l).map { at(statsIndex[4 * $0 + 1]) }
    ln1Mean = (0..<l).map { at(statsIndex[4 * $0 + 2]) }
    ln1Rstd = (0..<l).map { at(statsIndex[4 * $0 + 3]) }
    tokenPre = tokenPreIndex.map(at)
    tokenAct = tokenActIndex.map(at)
    channelPre = channelPreIndex.map(at)
    channelAct = channelActIndex.map(at)
    headNormOut = at(headIndex[0])
    headMean = at(headIndex[1])
    headRstd = at(headIndex[2])
    keep = keepIndex.map(at)
    head = config.head.makeBuffers(config, batch: batch)
    dStream = at(scratchIndex[0])
    dNorm = at(scratchIndex[1])
    dBranch = at(scratchIndex[2])
    dHidden = at(scratchIndex[3])
    branch = at(scratchIndex[4])
    qkv = qkvIndex.map(at)
    attentionProbabilities = probabilitiesIndex.map(at)
    attentionOut = attentionOutIndex.map(at)
    convColumns = columnsIndex.map(at)
    stemColumns = stemColumnsIndex.map(at)
    stemPre = stemPreIndex.map(at)
    stemAct = stemActIndex.map(at)
    stemGrad = stemGradIndex.map(at)
    stemScratch = at(stemScratchIndex)
    dAttention = at(hybridScratchIndex[0])
    dQKV = at(hybridScratchIndex[1])
    dScores = at(hybridScratchIndex[2])
    convScratch = at(hybridScratchIndex[3])
  }

  /// Allocates the dropout masks on first use.
  func ensureDropoutMasks(config: MixerConfig) {
    guard dropStorage == nil else { return }
    let l = config.blocks
    let tokenHidden = config.tokensMLP * batch * config.hidden
    let channelHidden = config.tokens * batch * config.channelsMLP
    let p = UnsafeMutablePointer<Float>.allocate(capacity: l * (tokenHidden + channelHidden))
    dropStorage = p
    tokenDropMask = (0..<l).map { p + $0 * tokenHidden }
    channelDropMask = (0..<l).map { p + l * tokenHidden + $0 * channelHidden }
  }

  /// Bytes held by this arena and the head's buffers.
  public var byteCount: Int { storageCount * MemoryLayout<Float>.stride + head.byteCount }

  deinit {
    storage.deallocate()
    dropStorage?.deallocate()
  }
}
