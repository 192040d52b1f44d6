// The MLP-Mixer network (Tolstikhin et al. 2021) on flat buffers: parameters and gradients are
// one `[Float]` each, laid out by `ParameterTable`; activations live in an `Activations` arena
// sized once per micro-batch. Forward and backward are in Mixer+Forward.swift and
// Mixer+Backward.swift, the backward reading as the forward in reverse.

import MixerKernels

/// Offsets of one block's LayerNorms and channel MLP in the flat buffer; its token mixers keep
/// their own (`MixerModel.blockMixers`).
struct BlockOffsets {
  let ln0Scale, ln0Bias, ln1Scale, ln1Bias, chW1, chB1, chW2, chB2: Int

  init(_ table: ParameterTable, _ i: Int, _ kind: BlockKind) {
    let p = kind.scope(i) + "/"
    func at(_ name: String) -> Int { table.offset(p + name) }
    typealias N = OfficialName
    ln0Scale = at(N.scale(N.layerNorm0))
    ln0Bias = at(N.bias(N.layerNorm0))
    ln1Scale = at(N.scale(N.layerNorm1))
    ln1Bias = at(N.bias(N.layerNorm1))
    chW1 = at(N.kernel(N.join(N.channelMixing, N.dense0)))
    chB1 = at(N.bias(N.join(N.channelMixing, N.dense0)))
    chW2 = at(N.kernel(N.join(N.channelMixing, N.dense1)))
    chB2 = at(N.bias(N.join(N.channelMixing, N.dense1)))
  }
}

/// A token mixer of one block with its parameter offsets.
struct PlacedMixer {
  let mixer: any TokenMixer
  let offsets: [Int]
}

/// Training-time regularisers; `nil` in place of this means evaluation (both are identity).
public struct Regularization: Sendable {
  /// stochastic depth rate s: block i drops with probability i/(L−1)·s, one draw per example
  public var stochasticDepth: Float
  /// dropout rate on the hidden activations of both MLPs (after GELU), inverted scaling
  public var dropout: Float
  public var seed: UInt64
  public var step: Int

  public init(stochasticDepth: Float = 0, dropout: Float = 0, seed: UInt64 = 0, step: Int = 0) {
    self.stochasticDepth = stochasticDepth
    self.dropout = dropout
    self.seed = seed
    self.step = step
  }

  /// Drop probability of block i of L (big_vision: linear in depth, 0 for the first block).
  public func dropProbability(block i: Int, of blocks: Int) -> Float {
    blocks > 1 ? Float(i) / Float(blocks - 1) * stochasticDepth : 0
  }
}

/// An MLP-Mixer: config, parameter table, flat parameters and gradients.
public final class MixerModel {
  public let config: MixerConfig
  public let table: ParameterTable
  /// every parameter, flat, in `table` order
  public let parameters: FlatBuffer
  /// d(loss)/d(parameters), same layout; backward accumulates into it
  public let gradients: FlatBuffer
  let blockOffsets: [BlockOffsets]
  /// each block's token mixers, in the order their branches are summed
  let blockMixers: [[PlacedMixer]]
  /// the precision of every matrix product (fp32 `gemm` unless set, e.g. from
  /// `Precision.makeProducts()`); parameters, gradients and everything else stay fp32
  public var products: any MatrixProducts = FP32Products.shared

  /// A model with the official initialisation drawn from `seed`.
  public init(config: MixerConfig, seed: UInt64) throws {
    try config.validate()
    self.config = config
    let table = ParameterTable(config: config)
    self.table = table
    parameters = FlatBuffer(count: table.count)
    gradients = FlatBuffer(count: table.count)
    blockOffsets = (0..<config.blocks).map { BlockOffsets(table, $0, config.kind(ofBlock: $0)) }
    blockMixers = (0..<config.blocks).map { i in
      let kind = config.kind(ofBlock: i)
      return kind.tokenMixers.map { PlacedMixer(mixer: $0, offsets: $0.offsets(config, table, scope: kind.scope(i))) }
    }
    initialize(seed: seed)
  }

  /// The official Flax initialisers: kernels lecun-normal (normal truncated to ±2σ, scaled by
  /// sqrt(1/fan_in)/0.8796…), biases 0, LayerNorm scales 1, head kernel 0. Tensor i draws from
  /// its own counter-based stream, so the values do not depend on thread or rank count.
  public func initialize(seed: UInt64) {
    for (i, view) in table.views.enumerated() {
      switch view.role {
      case .kernel:
        var rng = CounterRNG(seed: seed, 0x1417, UInt64(i))
        let std = (1.0 / Double(view.fanIn)).squareRoot() / 0.879_625_661_034_239_78
        for j in view.range { parameters[j] = Float(rng.truncatedNormal() * std) }
      case .headKernel, .bias:
        for j in view.range { parameters[j] = 0 }
      case .scale:
        for j in view.range { parameters[j] = 1 }
      }
    }
  }

  /// Sets every gradient to zero (start of a step).
  public func zeroGradients() {
    gradients.fill(0)
  }

  /// Copies one named tensor into the flat buffer; throws on unknown name or shape mismatch.
  public func setParameter(_ name: String, shape: [Int], values: [Float]) throws {
    guard let view = table[name] else { throw ConfigError("unknown parameter '\(name)'") }
    guard view.shape == shape, values.count == view.count else {
      throw ConfigError("parameter '\(name)' has shape \(shape), the model expects \(view.shape)")
    }
    parameters.copy(from: values, at: view.offset)
  }

  /// The values of one named tensor.
  public func parameter(_ name: String) -> [Float]? {
    table[name].map { parameters.array($0.range) }
  }

  /// The gradient of one named tensor.
  public func gradient(_ name: String) -> [Float]? {
    table[name].map { gradients.array($0.range) }
  }
}
