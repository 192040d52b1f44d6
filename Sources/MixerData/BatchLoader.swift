// A prefetching loader: worker threads assemble the batches of future steps while the consumer
// trains on the current one.
//
// Workers claim steps in order (startStep, startStep + 1, ...) but never more than `depth` steps
// ahead of the consumer, so at most `depth` batches wait in memory. Each batch is a pure function
// of its step (the sampler's indices, the dataset's pixels), and `next()` hands them out strictly
// by step, so the sequence is the same for any number of workers. A failing sample stops further
// claims and is thrown by `next()` when the consumer reaches that step. `stop()` wakes every
// waiting thread and joins the workers; it never waits on a full queue.

import Foundation

/// Worker threads assembling this rank's batches of future steps into a bounded queue.
public final class BatchLoader: @unchecked Sendable {
  private let state: LoaderState

  /// The step the next call of `next()` returns.
  public var nextStep: Int { state.locked { state.consumerStep } }
  /// Total seconds `next()` has spent waiting for a batch.
  public var waitSeconds: Double { state.locked { state.waitSeconds } }
  /// Number of worker threads.
  public var workerCount: Int { state.workerCount }

  /// Starts `workers` threads loading steps `startStep..<endStep` (unbounded when `endStep` is
  /// nil) of `sampler` for its rank, with the `targets` the task learns from, at most `depth`
  /// steps ahead of the consumer.
  public init(
    dataset: any Dataset, targets: BatchTargets, sampler: ShardedSampler, startStep: Int = 0, endStep: Int? = nil,
    workers: Int = 2, depth: Int = 3, mixup: Mixup? = nil
  ) throws {
    guard workers >= 1 else {
      throw DataError.invalidConfiguration("loader needs at least 1 worker, got \(workers)")
    }
    guard depth >= 1 else {
      throw DataError.invalidConfiguration("loader queue depth must be at least 1, got \(depth)")
    }
    guard startStep >= 0 && (endStep ?? startStep) >= startStep else {
      throw DataError.invalidConfiguration(
        "loader steps \(startStep)..<\(endStep.map(String.init) ?? "∞") are not a valid range")
    }
    state = LoaderState(
      dataset: dataset, targets: targets, sampler: sampler, startStep: startStep, endStep: endStep,
      workerCount: workers, depth: depth, mixup: mixup)
    for worker in 0..<workers {
      let state = self.state
      let thread = Thread { state.work() }
      thread.name = "mixer-data-\(worker)"
      thread.start()
    }
  }

  deinit { state.stop() }

  /// The batch of the next step, and whether the call had to wait for it. Throws the error of a
  /// failing sample (`DataError.sampleFailed`), `DataError.endOfData` past `endStep`, or
  /// `DataError.loaderStopped` after `stop()`.
  public func next() throws -> (batch: Batch, waited: Bool) {
    try state.next()
  }

  /// Gives a batch's buffers back for reuse by the workers (optional; saves an allocation).
  public func recycle(_ batch: Batch) {
    state.recycle(batch)
  }

  /// Stops the workers and waits for them to exit; a consumer blocked in `next()` throws
  /// `DataError.loaderStopped`. Idempotent.
  public func stop() {
    state.stop()
  }
}

/// The shared state of a loader, guarded by `condition`; the worker threads hold this, not the
/// loader, so dropping the loader stops them.
final class LoaderState: @unchecked Sendable {
  let dataset: any Dataset
  let targets: BatchTargets
  let sampler: ShardedSampler
  let endStep: Int?
  let workerCount: Int
  let depth: Int
  let mixup: Mixup?

  private let condition = NSCondition()
  /// The step `next()` returns next.
  var consumerStep: Int
  /// The next step a worker will claim.
  private var claimStep: Int
  /// Assembled batches by step.
  private var ready: [Int: Batch] = [:]
  /// The lowest failing step and its error.
  private var failure: (step: Int, error: Error)?
  /// Buffers to reuse.
  private var pool: [Batch] = []
  private var stopped = false
  private var liveWorkers: Int
  var waitSeconds = 0.0

  init(
    dataset: any Dataset, targets: BatchTargets, sampler: ShardedSampler, startStep: Int, endStep: Int?,
    workerCount: Int, depth: Int, mixup: Mixup?
  ) {
    self.mixup = mixup
    self.dataset = dataset
    self.targets = targets
    self.sampler = sampler
    self.endStep = endStep
    self.workerCount = workerCount
    self.depth = depth
    consumerStep = startStep
    claimStep = startStep
    liveWorkers = workerCount
  }

  func locked<T>(_ body: () -> T) -> T {
    condition.lock()
    defer { condition.unlock() }
    return body()
  }

  /// A worker thread's loop: claim the next step within the window, assemble it, publish it.
  func work() {
    condition.lock()
    while !stopped && failure == nil && claimStep < (endStep ?? Int.max) {
      guard claimStep < consumerStep + depth else {
        condition.wait()
        continue
      }
      let step = claimStep
      claimStep += 1
      var batch = pool.popLast() ?? Batch()
      condition.unlock()

      var error: Error?
      do {
        batch.mixup = try fillTrainingBatch(
          &batch, dataset: dataset, targets: targets, sampler: sampler, step: step, mixup: mixup)
      } catch let caught {
        error = caught
      }

      condition.lock()
      if let error {
        if failure == nil || step < failure!.step { failure = (step, error) }
      } else {
        ready[step] = batch
      }
      condition.broadcast()
    }
    liveWorkers -= 1
    condition.broadcast()
    condition.unlock()
  }

  func next() throws -> (batch: Batch, waited: Bool) {
    condition.lock()
    defer { condition.unlock() }
    if stopped { throw DataError.loaderStopped }
    if let endStep, consumerStep >= endStep { throw DataError.endOfData(step: consumerStep) }
    var waited = false
    let start = ContinuousClock.now
    while true {
      if let batch = ready.removeValue(forKey: consumerStep) {
        consumerStep += 1
        condition.broadcast()
        if waited {
          let elapsed = (ContinuousClock.now - start).components
          waitSeconds += Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
        }
        return (batch, waited)
      }
      if let failure, failure.step == consumerStep { throw failure.error }
      if stopped { throw DataError.loaderStopped }
      if liveWorkers == 0 {
        // Unreachable unless a worker exited without publishing the step: fail rather than hang.
        throw DataError.invalidConfiguration("no worker left to load step \(consumerStep)")
      }
      waited = true
      condition.wait()
    }
  }

  func recycle(_ batch: Batch) {
    locked {
      if pool.count < depth + workerCount { pool.append(batch) }
    }
  }

  func stop() {
    condition.lock()
    stopped = true
    condition.broadcast()
    while liveWorkers > 0 { condition.wait() }
    ready.removeAll()
    pool.removeAll()
    condition.unlock()
  }
}
