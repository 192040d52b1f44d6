// The one training step, as docs/architecture.md draws it: accumulate → reduce → clip → update.
//   accumulate  forward, loss and backward over the micro-batches of this rank's batch; the last
//               micro-batch hands finished gradient buckets to the communication thread
//   reduce      wait for the buckets (all-reduce, or reduce-scatter under ZeRO-1); one small
//               all-reduce of the loss (under ZeRO-1 also the squared gradient norm) that also
//               carries every rank's compute and loader-wait seconds (Stragglers.swift) and
//               whether its batch could be made (`runWithoutBatch`: every rank stops before the
//               update of a step some rank could not load)
//   clip        to the global gradient norm
//   update      the optimizer on this rank's range (and, under --ema, the moving average of that
//               range); under ZeRO-1 the all-gather of parameters
// The trainer and `bench` both call `run`, so the benchmark times exactly what training runs.
//
// Exact (`--exact`, ExactSum): the global batch is cut into micro-batches of `exactMicroBatch`
// images whatever the world size (the sampler gives rank r the contiguous slice r of the global
// batch, so rank r owns micro-batches r·k ..< (r+1)·k, k per rank). Each micro-batch's gradient is
// computed alone (a zeroed float buffer) and moved into 128-bit fixed-point integers; the integers
// of the micro-batches and of the ranks add up in any order to the same bits, and are rounded back
// to floats once. The loss sum and (under ZeRO-1) the squared norm are fixed-point sums as well.
// A micro-batch's gradient must be the same bits on any thread count, and OpenBLAS's one-thread
// and threaded drivers differ, as do the kernels' per-chunk partial sums (LayerNorm and bias
// gradients) with the chunk count: `BLAS.setFixedChunks` cuts products and kernels into a fixed
// number of chunks, each product chunk one single-threaded OpenBLAS call, run by the threads.

import Foundation
import MixerData
import MixerDistributed
import MixerKernels
import MixerModel
import MixerTrace

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
  /// every rank's seconds in forward and backward this step, and in waiting for its loader
  /// (from the same all-reduce; `Stragglers.swift`)
  public var rankComputeSeconds: [Double] = []
  public var rankLoaderSeconds: [Double] = []
}

/// The step of one rank: the model, its optimizer (on this rank's range), the bucketed
/// gradient reduction and one activation arena per micro-batch shape.
public final class TrainingStep {
  public let model: MixerModel
  public let optimizer: Optimizer
  /// the moving average of the parameters over the optimizer's range (`--ema`; nil: off)
  public let average: ExponentialMovingAverage?
  let comm: Communicator
  let bucketer: GradientBucketer
  let task: any TaskHead
  let config: TrainConfig
  let acts: Activations
  /// `--exact`: the fixed-point sum of the micro-batches' gradients (nil otherwise)
  let exact: ExactGradients?
  /// micro-batches of this rank per step
  let microBatches: Int
  /// `exact`: this step's loss sum as a fixed-point integer, and whether it overflowed
  private var lossFixedPoint: Int128 = 0
  private var lossOverflowed = false

  /// Under `exact`, the chunks split kernel work is cut into, whatever the thread count.
  static let exactChunks = 4

  /// seconds slept inside every step's compute (the launch tests' slowed rank)
  var extraComputeSeconds = 0.0

  /// `localBatch` images per rank and step, in `config.accumulation` micro-batches (under `exact`,
  /// in micro-batches of `config.exactMicroBatch` images).
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
    average = config.keepsAverage
      ? ExponentialMovingAverage(decay: config.emaDecay, warmup: config.emaWarmup, range: shard) : nil
    average?.reset(from: model.parameters.pointer)
    exact = config.exact ? ExactGradients(count: model.table.count) : nil
    BLAS.setFixedChunks(config.exact ? Self.exactChunks : nil)
    microBatches = config.exact ? localBatch / config.exactMicroBatch : config.accumulation
    bucketer = GradientBucketer(
      communicator: comm, buffer: model.gradients.pointer, count: model.table.count,
      bucketSize: config.gradientBucketFloats(worldSize: comm.size), mode: config.zeroStage == 1 ? .reduceScatter : .allReduce,
      overlap: config.overlap, precision: config.gradientCommunication, exact: exact, watchdog: watchdog)
    acts = Activations(config: model.config, batch: localBatch / microBatches)
  }

  /// Runs step `step` (0-based) on this rank's `batch`; `loaderWaitSeconds` is how long the
  /// step waited for it (shared with the other ranks in the scalar all-reduce).
  public func run(batch: Batch, step: Int, loaderWaitSeconds: Double = 0) throws -> StepResult {
    let t0 = monotonicSeconds()
    let (lossSum, forwardSeconds) = accumulateGradients(batch: batch, regularization: config.regularization(step: step))
    if extraComputeSeconds > 0 {  // (the slowed rank's extra work, as a trace shows compute)
      Timeline.span("slowed on purpose (--slow-ms)", .backward) { Thread.sleep(forTimeInterval: extraComputeSeconds) }
    }
    var times = RankTimes(compute: monotonicSeconds() - t0, loaderWait: loaderWaitSeconds)
    let communication = try bucketer.finish()
    let t1 = monotonicSeconds()
    let (loss, norm, lr, stop, allGatherSeconds) = try update(step: step, lossSum: lossSum, times: &times)
    let t2 = monotonicSeconds()
    var result = StepResult(
      loss: loss, gradientNorm: norm, learningRate: lr, forwardSeconds: forwardSeconds,
      backwardSeconds: t1 - t0 - forwardSeconds, updateSeconds: t2 - t1, communication: communication,
      allGatherSeconds: allGatherSeconds, stopRequested: stop)
    result.rankComputeSeconds = times.computeByRank
    result.rankLoaderSeconds = times.loaderWaitByRank
    return result
  }

  /// Step `step` on a rank whose batch could not be made (`failure`): takes part in the step's
  /// collectives with a zero gradient and the failure in the scalar all-reduce, so that every rank
  /// learns of it at the same point and none applies the update. Always throws: `PeerBatchFailure`
  /// on every rank (the caller of the failed rank throws its own error instead).
  public func runWithoutBatch(step: Int, failure: BatchFailureKind) throws -> Never {
    model.zeroGradients()
    exact?.clearOverflow()
    lossFixedPoint = 0
    lossOverflowed = false
    exact?.add(moving: model.gradients.pointer, range: 0..<model.table.count, replace: true)
    _ = try bucketer.finish()  // hands over every bucket
    var times = RankTimes(compute: 0, loaderWait: 0, failure: failure)
    _ = try update(step: step, lossSum: 0, times: &times)
    fatalError("update(step:) went on after a rank's batch failure")
  }

  /// Forward and backward over the micro-batches of one step's batch, gradients accumulating;
  /// returns the summed per-example loss and the seconds spent in forward and loss. Under `exact`
  /// the loss sum is a fixed-point integer (`n · 2^-64`) carried in `lossFixedPoint`.
  func accumulateGradients(batch: Batch, regularization: Regularization?) -> (Double, Double) {
    let microBatch = acts.batch
    let pixelsPerImage = batch.pixels.count / max(batch.size, 1)
    model.zeroGradients()
    exact?.clearOverflow()
    lossFixedPoint = 0
    var lossSum = 0.0, forwardSeconds = 0.0
    for micro in 0..<microBatches {
      let offset = micro * microBatch
      let t0 = monotonicSeconds()
      batch.pixels.withUnsafeBufferPointer { pixels in
        model.forward(
          images: pixels.baseAddress! + offset * pixelsPerImage, acts: acts,
          regularization: regularization, sampleIDs: Array(batch.indices[offset..<(offset + microBatch)]))
      }
      task.setTargets(acts: acts, batch: batch, offset: offset, classes: model.config.classes, smoothing: config.labelSmoothing)
      let microLoss = model.loss(acts: acts)
      lossSum += microLoss
      if exact != nil { lossFixedPoint &+= exactScalarFixedPoint(microLoss, overflow: &lossOverflowed) }
      forwardSeconds += monotonicSeconds() - t0
      let last = micro == microBatches - 1
      var onReady: ((Int) -> Void)? = last ? { [bucketer] in bucketer.markReady(upTo: $0) } : nil
      if let exact {
        // each micro-batch's gradient alone, moved into the integers as backward finishes it
        // (the float buffer is left zeroed for the next micro-batch)
        let gradients = model.gradients.pointer, count = model.table.count
        var finished = count
        onReady = { [bucketer] lowerBound in
          guard lowerBound < finished else { return }
          exact.add(moving: gradients, range: lowerBound..<finished, replace: micro == 0)
          finished = lowerBound
          if last { bucketer.markReady(upTo: lowerBound) }
        }
      }
      model.backward(
        acts: acts, lossScale: 1 / Float(config.globalBatch), regularization: regularization, onReady: onReady)
    }
    return (lossSum, forwardSeconds)
  }

  /// After the gradients are reduced: the global loss, gradient norm and stop requests (one
  /// small all-reduce), clipping, the optimizer update of this rank's range, and under ZeRO-1 the
  /// all-gather.
  func update(step: Int, lossSum: Double, times: inout RankTimes) throws
    -> (loss: Double, norm: Double, lr: Float, stop: Bool, allGatherSeconds: Double)
  {
    let total = model.table.count
    let shard = bucketer.shard  // everything, unless ZeRO-1
    // (a slower rank makes the others wait here: the span is a wait)
    let (loss, squares, stop) = try Timeline.span("loss, norm and stop all-reduce", .wait) {
      exact != nil
        ? try exactScalars(shard: shard, times: &times) : try scalars(shard: shard, lossSum: lossSum, times: &times)
    }
    if let failed = times.failureByRank.firstIndex(where: { $0 != .none }) {
      throw PeerBatchFailure(rank: failed, kind: times.failureByRank[failed], step: step)
    }
    guard loss.isFinite else {
      throw NonFiniteLossError(loss: loss, step: step)
    }
    let norm = squares.squareRoot()
    let schedule = config.schedule
    let lr = schedule.learningRate(step: step)
    Timeline.span("clip and optimizer", .optimizer) {
      clipByGlobalNorm(model.gradients.pointer, range: shard, norm: norm, maxNorm: Double(config.clipNorm))
      optimizer.update(
        parameters: model.parameters.pointer, gradients: model.gradients.pointer, lr: lr, step: step + 1,
        scheduleFactor: Float(schedule.factor(step: step)))
    }
    if let average {
      Timeline.span("moving average (--ema)", .optimizer) { average.update(parameters: model.parameters.pointer, update: step + 1) }
    }
    var allGatherSeconds = 0.0
    if config.zeroStage == 1 {
      let start = monotonicSeconds()
      try Timeline.span("parameter all-gather", .communication) {
        try comm.allGather(model.parameters.pointer, counts: comm.shardCounts(ofTotal: total))
      }
      allGatherSeconds = monotonicSeconds() - start
    }
    return (loss, norm, lr, stop, allGatherSeconds)
  }

  /// The mean loss, the global squared gradient norm and the stop request, from one all-reduce
  /// of doubles (the squares summed over the ranks under ZeRO-1 only); every rank's times ride
  /// along in their own slots.
  private func scalars(shard: Range<Int>, lossSum: Double, times: inout RankTimes) throws -> (Double, Double, Bool) {
    let squares = sumOfSquares(model.gradients.pointer, range: shard)
    var scalars = [lossSum, config.zeroStage == 1 ? squares : 0, Interruption.requested ? 1 : 0]
    let n = comm.size
    if n > 1 {
      scalars += Array(repeating: 0, count: 3 * n)
      scalars[3 + comm.rank] = times.compute
      scalars[3 + n + comm.rank] = times.loaderWait
      scalars[3 + 2 * n + comm.rank] = Double(times.failure.rawValue)
    }
    try comm.allReduceSum(&scalars)
    if n > 1 {
      times.computeByRank = Array(scalars[3..<(3 + n)])
      times.loaderWaitByRank = Array(scalars[(3 + n)..<(3 + 2 * n)])
      times.failureByRank = scalars[(3 + 2 * n)...].map { BatchFailureKind(rawValue: Int($0)) ?? .other }
    }
    return (scalars[0] / Double(config.globalBatch), config.zeroStage == 1 ? scalars[1] : squares, scalars[2] > 0)
  }

  /// `scalars` under `exact`: the same sums as fixed-point integers, so they do not depend on
  /// the world size either; a gradient or loss beyond the fixed point's range (or not finite)
  /// on any rank gives a NaN loss, which stops the run.
  private func exactScalars(shard: Range<Int>, times: inout RankTimes) throws -> (Double, Double, Bool) {
    var overflow = lossOverflowed || exact!.overflowed
    let squares = exactSumOfSquares(model.gradients.pointer, range: shard, overflow: &overflow)
    var words: [Int128] = [
      lossFixedPoint, config.zeroStage == 1 ? squares : 0, Interruption.requested ? 1 : 0, overflow ? 1 : 0,
    ]
    // the times in microseconds, each rank in its own slot
    let n = comm.size
    if n > 1 {
      words += Array(repeating: 0, count: 3 * n)
      words[4 + comm.rank] = Int128(times.compute * 1e6)
      words[4 + n + comm.rank] = Int128(times.loaderWait * 1e6)
      words[4 + 2 * n + comm.rank] = Int128(times.failure.rawValue)
    }
    try comm.allReduceSum(&words)
    if n > 1 {
      times.computeByRank = words[4..<(4 + n)].map { Double($0) * 1e-6 }
      times.loaderWaitByRank = words[(4 + n)..<(4 + 2 * n)].map { Double($0) * 1e-6 }
      times.failureByRank = words[(4 + 2 * n)...].map { BatchFailureKind(rawValue: Int($0)) ?? .other }
    }
    lossOverflowed = false
    let loss = words[3] != 0
      ? Double.nan : doubleFromFixedPoint(words[0], fractionBits: exactScalarFractionBits) / Double(config.globalBatch)
    let sumOfSquares = doubleFromFixedPoint(config.zeroStage == 1 ? words[1] : squares, fractionBits: exactScalarFractionBits)
    return (loss, sumOfSquares, words[2] != 0)
  }
}

/// One rank's compute and loader-wait seconds of a step and whether its batch failed, and every
/// rank's after the all-reduce.
struct RankTimes {
  var compute: Double
  var loaderWait: Double
  var failure: BatchFailureKind = .none
  var computeByRank: [Double] = []
  var loaderWaitByRank: [Double] = []
  var failureByRank: [BatchFailureKind] = []
}
