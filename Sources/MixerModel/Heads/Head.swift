// The head abstraction: what the network predicts from the pre-head-normalised tokens
// Y = LN_pre(x_L) `[S, B, C]`. A head owns its parameters (appended after the pre-head LayerNorm),
// its buffers in the activation arena, its forward, loss and backward. Model, arena and parameter
// table call these and never ask which task they serve; the training side of a task (targets,
// evaluation, predict) is in MixerTrain's `TaskHead`. A new task is one type here, one there, and
// a case in `MixerTask`.

import MixerKernels

/// The model side of a task.
public protocol Head: Sendable {
  /// The task this head implements.
  var task: MixerTask { get }
  /// Parameter-name scope of the head's tensors (`head`, `segmentation_head`).
  var scope: String { get }
  /// What `describe` says of the head after the model's shape; nil for the paper's head.
  var note: String? { get }
  /// Outputs per token of the head's Dense (K, or P·P·K).
  func outputsPerToken(_ config: MixerConfig) -> Int
  /// Parameters of the head.
  func parameterCount(_ config: MixerConfig) -> Int
  /// Forward FLOPs per image of the head's products.
  func forwardFLOPsPerImage(_ config: MixerConfig) -> Double
  /// The head's buffers for a micro-batch of `batch` images.
  func makeBuffers(_ config: MixerConfig, batch: Int) -> any HeadBuffers
  /// Outputs from `acts.headNormOut` (Y) into the head's buffers.
  func forward(_ model: MixerModel, acts: Activations)
  /// The losses the head can train with (`MixerConfig.loss`; the first is the default).
  var losses: [HeadLoss] { get }
  /// Loss (`model.config.loss`) against the targets in the head's buffers: the sum of
  /// per-example losses.
  func loss(_ model: MixerModel, acts: Activations) -> Double
  /// Backpropagates `lossScale · Σ_b loss_b` through the head: parameter gradients accumulate,
  /// dL/dY is left in `acts.dNorm` `[S, B, C]`.
  func backward(_ model: MixerModel, acts: Activations, lossScale: Float)
  /// The outputs from Y `[S, C]`, written for inference and export (NetworkDescription.swift).
  func describe<Builder: NetworkBuilder>(_ config: MixerConfig, _ y: Builder.Value, into builder: Builder) -> Builder.Value
  /// Outputs per image (K logits, or H·W·K per-pixel logits), `classes` of them per prediction.
  func outputsPerImage(_ config: MixerConfig) -> Int
  /// Where the forward leaves the outputs in `acts` (`[B, outputsPerImage]`).
  func outputs(_ acts: Activations) -> UnsafeMutablePointer<Float>
}

/// A head's outputs, targets and scratch for one micro-batch.
public protocol HeadBuffers: AnyObject {
  /// per-example loss `[B]` after `loss`
  var losses: UnsafeMutablePointer<Float> { get }
  /// Bytes held.
  var byteCount: Int { get }
}

/// Float buffers carved out of one zeroed, 16-float-aligned allocation, freed with it.
public final class FloatArena {
  public let base: UnsafeMutablePointer<Float>
  public let count: Int
  private var offsets: [Int] = []

  /// One buffer per size, in order.
  public init(sizes: [Int]) {
    var total = 0
    for n in sizes {
      offsets.append(total)
      total += max(16, (n + 15) / 16 * 16)
    }
    count = total
    base = UnsafeMutablePointer<Float>.allocate(capacity: total)
    base.initialize(repeating: 0, count: total)
  }

  /// Buffer i.
  public subscript(i: Int) -> UnsafeMutablePointer<Float> { base + offsets[i] }

  deinit { base.deallocate() }
}

extension Activations {
  /// The head's buffers as the type the head made (a head asks for its own).
  public func head<Buffers: HeadBuffers>(_ type: Buffers.Type) -> Buffers {
    guard let buffers = head as? Buffers else {
      preconditionFailure("activations of a \(Swift.type(of: head)) head read as \(Buffers.self)")
    }
    return buffers
  }
}
