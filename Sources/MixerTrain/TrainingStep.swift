// The one training step, as docs/architecture.md draws it: accumulate → reduce → clip → update.
//   accumulate  forward, loss and backward over the micro-batches of this rank's batch; the last
//               micro-batch hands finished gradient buckets to the communication thread
//   reduce      wait for the buckets (all-reduce, or reduce-scatter under ZeRO-1); one small
//               all-reduce of the loss (and, under ZeRO-1, the squared gradient norm)
//   clip        to the global gradient norm
//   update      the optimizer on this rank's range; under ZeRO-1 the all-gather of parameters
// The trainer and `bench` both call `run`, so the benchmark times exactly what training runs.

import MixerData
import MixerDistributed
import MixerKernels
import MixerModel

/// What one step did.
public struct StepResult {
  /// mean loss over the global batch
  public var loss: Double
  /// global gradient norm before clipping
  public var gradientNorm: Double
  public var learningRate: Float
  /// seconds in forward and loss (all micro-batches)
  public var forwardSeconds: Double
  /// seconds in backward, including the wait for the last gradient buckets
  public var backwardSeconds: Double
  /// seconds in the scalar reduction, clipping, the optimizer and the ZeRO-1 all-gather
  public var updateSeconds: Double
  /// the gradient reduction's timings (communication, the part not hidden by backward)
  public var communication: GradientBucketer.Timings
  /// seconds in ZeRO-1's all-gather of the parameters (part of `updateSeconds`; never hidden)
  public var allGatherSeconds: Double
  /// some rank received SIGINT, SIGTERM or SIGUSR1 before this step's reduction: every rank
  /// learns it from the same all-reduce, so all stop after the same step
  public var stopRequested: Bool
}

/// The step of one rank: the model, its optimizer (on this rank's range), the bucketed
/// gradient reduction and one activation arena per micro-batch shape.
public final class TrainingStep {
  public let model: MixerModel
  public let optimizer: Optimizer
  let comm: Communicator
  let bucketer: GradientBucketer
  let task: any TaskHead
  let config: TrainConfig
  let acts: Activations

  /// `localBatch` images per rank and step, in `config.accumulation` micro-batches.
  public init(
    model: MixerModel, config: TrainConfig, comm: Communicator, localBatch: Int, watchdog: Watchdog? = nil
  ) {
    self.model = model
    self.config = config
    self.comm = comm
    task = model.config.task.training
    let shard = config.zeroStage == 1
      ? shardRanges(total: model.table.count, parts: comm.size)[comm.rank] : 0..<model.table.count
    optimizer = Optimizer(config: config.optimizer, table: model.table, range: shard)
    bucketer = GradientBucketer(
      communicator: comm, buffer: model.gradients.pointer, count: model.table.count,
      bucketSize: config.gradientBucketFloats(worldSize: comm.size), mode: config.zeroStage == 1 ? .reduceScatter : .allReduce,
      overlap: config.overlap, precision: config.gradientCommunication, watchdog: watchdog)
    acts = Activations(config: model.config, batch: localBatch / config.accumulation)
  }

  /// Runs step `step` (0-based) on this rank's `batch`.
  public func run(batch: Batch, step: Int) throws -> StepResult {
    let t0 = monotonicSeconds()
    let (lossSum, forwardSeconds) = accumulateGradients(batch: batch, regularization: config.regularization(step: step))
    let communication = try bucketer.finish()
    let t1 = monotonicSeconds()
    let (loss, norm, lr, stop, allGatherSeconds) = try update(step: step, lossSum: lossSum)
    let t2 = monotonicSeconds()
    return StepResult(
      loss: loss, gradientNorm: norm, learningRate: lr, forwardSeconds: forwardSeconds,
      backwardSeconds: t1 - t0 - forwardSeconds, updateSeconds: t2 - t1, communication: communication,
      allGatherSeconds: allGatherSeconds, stopRequested: stop)
  }

  /// Forward and backward over the micro-batches of one step's batch, gradients accumulating;
  /// returns the summed per-example loss and the seconds spent in forward and loss.
  func accumulateGradients(batch: Batch, regularization: Regularization?) -> (Double, Double) {
    let microBatch = acts.batch
    let pixelsPerImage = batch.pixels.count / max(batch.size, 1)
    model.zeroGradients()
    var lossSum = 0.0, forwardSeconds = 0.0
    for micro in 0..<config.accumulation {
      let offset = micro * microBatch
      let t0 = monotonicSeconds()
      batch.pixels.withUnsafeBufferPointer { pixels in
        model.forward(
          images: pixels.baseAddress! + offset * pixelsPerImage, acts: acts,
          regularization: regularization, sampleIDs: Array(batch.indices[offset..<(offset + microBatch)]))
      }
      task.setTargets(acts: acts, batch: batch, offset: offset, classes: model.config.classes, smoothing: config.labelSmoothing)
      lossSum += model.loss(acts: acts)
      forwardSeconds += monotonicSeconds() - t0
      let last = micro == config.accumulation - 1
      model.backward(
        acts: acts, lossScale: 1 / Float(config.globalBatch), regularization: regularization,
        onReady: last ? { [bucketer] in bucketer.markReady(upTo: $0) } : nil)
    }
    return (lossSum, forwardSeconds)
  }

  /// After the gradients are reduced: the global loss, gradient norm and stop requests (one
  /// small all-reduce), clipping, the optimizer update of this rank's range, and under ZeRO-1 the
  /// all-gather.
  func update(step: Int, lossSum: Double) throws -> (loss: Double, norm: Double, lr: Float, stop: Bool, allGatherSeconds: Double) {
    let total = model.table.count
    let shard = bucketer.shard  // everything, unless ZeRO-1
    let squares = sumOfSquares(model.gradients.pointer, range: shard)
    var scalars = [lossSum, config.zeroStage == 1 ? squares : 0, Interruption.requested ? 1 : 0]
    try comm.allReduceSum(&scalars)
    let loss = scalars[0] / Double(config.globalBatch)
    guard loss.isFinite else {
      throw NonFiniteLossError(loss: loss, step: step)
    }
    let norm = (config.zeroStage == 1 ? scalars[1] : squares).squareRoot()
    clipByGlobalNorm(model.gradients.pointer, range: shard, norm: norm, maxNorm: Double(config.clipNorm))
    let lr = config.schedule.learningRate(step: step)
    optimizer.update(parameters: model.parameters.pointer, gradients: model.gradients.pointer, lr: lr, step: step + 1)
    var allGatherSeconds = 0.0
    if config.zeroStage == 1 {
      let start = monotonicSeconds()
      try comm.allGather(model.parameters.pointer, counts: comm.shardCounts(ofTotal: total))
      allGatherSeconds = monotonicSeconds() - start
    }
    return (loss, norm, lr, scalars[2] > 0, allGatherSeconds)
  }
}
