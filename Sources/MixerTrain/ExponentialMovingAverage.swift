// The exponential moving average of the parameters (`train --ema DECAY`; timm's `--model-ema`).
// After optimizer update n (1-based, the run's global step count) every element of the flat
// parameter buffer in this rank's range is averaged in fp32:
//   average ← d_n · average + (1 − d_n) · parameter,   1 − d_n computed in fp32 (exact for d_n ≥ 1/2)
// with d_n as timm's ModelEmaV3 (timm/utils/model_ema.py, `get_decay` with the step it is given):
//   t = n − 1;  d_n = 0 when t = 0 (the first update copies the parameters);
//   otherwise d_n = DECAY, or with --ema-warmup  d_n = min(DECAY, 1 − (1 + t)^(−2/3))
//   (timm's `use_warmup`, warmup_gamma 1, warmup_power 2/3, min_decay 0).
// Every parameter is averaged, LayerNorm scales and biases included: the model keeps no other
// state (no running statistics), so the average is a whole model, as timm's covers its buffers.
// The range is the optimizer's: the whole buffer normally, this rank's 1/N shard under ZeRO-1,
// so the average costs what one Adam moment costs. Elementwise, so the same bits on any number of
// ranks and threads.

import Foundation
import MixerCheckpoint
import MixerDistributed
import MixerKernels
import MixerModel

/// The moving average of `range` of the flat parameter buffer.
public final class ExponentialMovingAverage: ShardedParameterAverage {
  public let decay: Float
  /// timm's warm-up of the decay (`--ema-warmup`)
  public let warmup: Bool
  public let range: Range<Int>
  /// the average of `parameters[range]`, `range.count` floats
  public let values: FlatBuffer
  /// the step the average started from (0, or the step of a checkpoint without one that a run
  /// with --ema resumed)
  public var since = 0
  /// this rank's raw parameters while the averaged ones are swapped in (`withAveragedParameters`)
  private var swapped: FlatBuffer?

  public init(decay: Float, warmup: Bool, range: Range<Int>) {
    self.decay = decay
    self.warmup = warmup
    self.range = range
    values = FlatBuffer(count: range.count)
  }

  /// The decay of update `update` (1-based), as the header says.
  public static func decay(update: Int, decay: Float, warmup: Bool) -> Float {
    let t = update - 1
    guard t > 0 else { return 0 }
    guard warmup else { return decay }
    return min(decay, Float(1 - pow(1 + Double(t), -2.0 / 3.0)))
  }

  /// Starts the average from `parameters[range]`.
  public func reset(from parameters: UnsafePointer<Float>) {
    values.pointer.update(from: parameters + range.lowerBound, count: range.count)
  }

  /// Folds `parameters[range]` after optimizer update `update` (1-based) into the average.
  public func update(parameters: UnsafePointer<Float>, update: Int) {
    let d = Self.decay(update: update, decay: decay, warmup: warmup)
    let c = 1 - d
    let average = values.pointer, p = parameters + range.lowerBound
    parallelElements(range.count) { elements in
      for i in elements { average[i] = d * average[i] + c * p[i] }
    }
  }

  /// Runs `body` with the averaged parameters in `model.parameters` on every rank, then puts the
  /// raw parameters back bit for bit. Every rank calls it: under ZeRO-1 (`sharded`) each rank
  /// writes its shard and the all-gather assembles the rest, and the raw ones come back the same
  /// way (each rank keeps only its own shard of them meanwhile).
  public func withAveragedParameters<T>(
    in model: MixerModel, comm: Communicator, sharded: Bool, _ body: () throws -> T
  ) throws -> T {
    let parameters = model.parameters.pointer, total = model.table.count
    let raw = swapped ?? FlatBuffer(count: range.count)
    swapped = raw
    raw.pointer.update(from: parameters + range.lowerBound, count: range.count)
    (parameters + range.lowerBound).update(from: values.pointer, count: range.count)
    if sharded { try comm.allGather(parameters, counts: comm.shardCounts(ofTotal: total)) }
    let result = Result { try body() }
    (parameters + range.lowerBound).update(from: raw.pointer, count: range.count)
    if sharded { try comm.allGather(parameters, counts: comm.shardCounts(ofTotal: total)) }
    return try result.get()
  }
}
