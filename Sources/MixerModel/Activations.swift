// The activation arena: every buffer forward saves for backward, and backward's scratch, carved
// out of one allocation sized for one (model, micro-batch). Shapes are in the legend of
// MixerConfig.swift; the residual stream is token-major `[S, B, C]`.

import Foundation
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
  let channelPre, channelAct: [UnsafeMutablePointer<Float>]  // L × [S·B, D_C]; Pre holds gelu′
  let headNormOut: UnsafeMutablePointer<Float>  // [S, B, C]
  let headMean, headRstd: UnsafeMutablePointer<Float>  // [S·B]
  let keep: [UnsafeMutablePointer<Float>]  // L × [B]: stochastic-depth keep mask (0/1)
  /// the head's outputs, targets and scratch (Head.swift)
  public let head: any HeadBuffers
  /// each block's token mixers' saved buffers, `[block][mixer][buffer]` (TokenMixers.swift)
  let mixerSaved: [[[UnsafeMutablePointer<Float>]]]
  /// scratch shared by the blocks using one kind of token mixer, by the mixer's type name
  let mixerScratch: [String: [UnsafeMutablePointer<Float>]]
  // CNN stem, per layer j: im2col, pre-activation and GELU output `[B, h_j/2, w_j/2, c_j]`
  let stemColumns, stemPre, stemAct, stemGrad: [UnsafeMutablePointer<Float>]
  let stemScratch: UnsafeMutablePointer<Float>  // the largest im2col, and the image gradient

  // backward scratch
  let dStream: UnsafeMutablePointer<Float>  // [S, B, C]
  let dNorm: UnsafeMutablePointer<Float>  // [S, B, C]
  let dBranch: UnsafeMutablePointer<Float>  // [S, B, C]
  let dHidden: UnsafeMutablePointer<Float>  // max(D_S·B·C, S·B·D_C)
  let branch: UnsafeMutablePointer<Float>  // [S, B, C]: branch output when stochastic depth is on

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
    let mixers = (0..<l).map { config.kind(ofBlock: $0).tokenMixers }
    let savedIndex = mixers.map { blockMixers in blockMixers.map { $0.savedSizes(config, batch: batch).map(take) } }
    var scratchIndex: [String: [Int]] = [:]
    for mixer in mixers.joined() where scratchIndex[Self.name(of: mixer)] == nil {
      scratchIndex[Self.name(of: mixer)] = mixer.scratchSizes(config, batch: batch).map(take)
    }
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
    let channelPreIndex = (0..<l).map { _ in take(channelHidden) }
    let channelActIndex = (0..<l).map { _ in take(channelHidden) }
    let headIndex = [take(sbc), take(s * batch), take(s * batch)]
    let keepIndex = (0..<l).map { _ in take(batch) }
    let backwardIndex = [take(sbc), take(sbc), take(sbc), take(max(tokenHidden, channelHidden)), take(sbc)]
    // 16-float alignment for every buffer
    var offsets: [Int] = []
    var total = 0
    for n in sizes {
      offsets.append(total)
      total += max(16, (n + 15) / 16 * 16)
    }
    storageCount = total
    // fresh anonymous pages: zeroed and untouched until written, so a buffer the model never
    // writes (an fp32 activation stored only as a bf16 operand) costs no resident memory; and
    // page-aligned, so every buffer starts on a cache line (calloc's 16-byte alignment put each
    // one 16 bytes into a line, which made oneDNN's bf16 products on them up to 2x slower)
    let zeroed = mmap(nil, total * MemoryLayout<Float>.stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let zeroed, zeroed != MAP_FAILED else {
      fatalError("cannot allocate \(total * MemoryLayout<Float>.stride) bytes of activations")
    }
    storage = zeroed.bindMemory(to: Float.self, capacity: total)
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
    channelPre = channelPreIndex.map(at)
    channelAct = channelActIndex.map(at)
    headNormOut = at(headIndex[0])
    headMean = at(headIndex[1])
    headRstd = at(headIndex[2])
    keep = keepIndex.map(at)
    head = config.head.makeBuffers(config, batch: batch)
    dStream = at(backwardIndex[0])
    dNorm = at(backwardIndex[1])
    dBranch = at(backwardIndex[2])
    dHidden = at(backwardIndex[3])
    branch = at(backwardIndex[4])
    mixerSaved = savedIndex.map { $0.map { $0.map(at) } }
    mixerScratch = scratchIndex.mapValues { $0.map(at) }
    stemColumns = stemColumnsIndex.map(at)
    stemPre = stemPreIndex.map(at)
    stemAct = stemActIndex.map(at)
    stemGrad = stemGradIndex.map(at)
    stemScratch = at(stemScratchIndex)
  }

  /// The key of a token mixer's shared scratch.
  static func name(of mixer: any TokenMixer) -> String { String(describing: type(of: mixer)) }

  /// The scratch buffers of `mixer`'s kind.
  func scratch(for mixer: any TokenMixer) -> [UnsafeMutablePointer<Float>] { mixerScratch[Self.name(of: mixer)] ?? [] }

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
    munmap(storage, storageCount * MemoryLayout<Float>.stride)
    dropStorage?.deallocate()
  }
}
