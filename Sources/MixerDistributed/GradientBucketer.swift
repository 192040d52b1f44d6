// GradientBucketer: overlap of backward and gradient communication (docs/architecture.md, "Distributed"). Backward
// produces the flat gradient buffer from its END towards its start (last block first) and says so
// with `markReady(upTo:)`; the buffer is cut into fixed-size buckets aligned from the end, and
// every complete bucket is handed at once to one communication thread, which reduces the buckets
// in order while backward goes on. `finish()` hands over the rest and waits: the time it waits is
// the communication that backward did not hide.
//
// Modes:
// - `.allReduce`: each bucket is summed over the ranks in place (plain data parallelism).
// - `.reduceScatter` (ZeRO-1), overlapped as well: each bucket is reduce-scattered along the
//   standard partition of the WHOLE buffer (`shardRanges(total: count, parts: size)`), i.e. the
//   block counts of a bucket are its intersections with every rank's shard. After `finish()`,
//   `buffer[shard]` holds the summed gradient of this rank's shard; the rest is unspecified.
//
// Precision (`--grad-comm`): with `.bf16` each bucket is rounded to bfloat16 into a scratch
// buffer of one bucket, reduced in bf16 (half the bytes on the wire; see GradientPrecision) and
// widened back in place; `.fp32` reduces the floats themselves.
//
// Exact (`--exact`, see ExactSum): the caller has moved the gradients into an `ExactGradients`
// accumulator of 128-bit fixed-point integers; each bucket's integers are summed over the ranks
// (order-free) and rounded back into the float buffer (under ZeRO-1, this rank's block only).
//
// Without overlap (`overlap: false`), `finish()` reduces the same buckets in the same order on
// the calling thread: identical results, nothing hidden. Use it when a rank has a single core
// (mpirun binds each of up to 2 ranks to one core): MPI's blocking collectives busy-poll, so a
// communication thread then competes with backward for that core and the step gets slower.
//
// Threads: the communication thread is the only one calling the communicator between the first
// `markReady` of a step and `finish()`. Collectives must run in the same order on every rank, and
// the order between two threads is not deterministic, so the caller must not issue collectives of
// its own in that window (MPICommunicator's lock keeps the calls serialized either way).

import Foundation
import MixerTrace
import MixerNumerics

/// Reduces a flat gradient buffer over the ranks in buckets, overlapped with backward.
public final class GradientBucketer {
  /// What is done to each bucket.
  public enum Mode: Sendable {
    /// Sum over the ranks; every rank gets the whole summed buffer.
    case allReduce
    /// Sum over the ranks; each rank gets its shard `shardRanges(total: count, parts: size)[rank]`.
    case reduceScatter
  }

  /// Times of one step, from the first `markReady` to the end of `finish()`.
  public struct Timings: Equatable, Sendable {
    /// Time the communication thread spent inside collectives.
    public var communicationSeconds: Double
    /// Time `finish()` waited: communication not hidden behind backward.
    public var exposedSeconds: Double
    /// Buckets reduced.
    public var buckets: Int
    /// Buckets already complete when `finish()` was called.
    public var bucketsDoneBeforeFinish: Int
    /// Buckets handed to the communication thread while backward was still running (by a
    /// `markReady` with a bound above 0, i.e. before the first gradients were final); 0 without
    /// overlap or with one rank.
    public var bucketsStartedBeforeFinish: Int = 0
  }

  /// Floats in the buffer.
  public let count: Int
  /// Floats per bucket (the first bucket of the buffer may be shorter).
  public let bucketSize: Int
  public let mode: Mode
  /// The format the buckets travel in.
  public let precision: GradientPrecision
  /// The fixed-point accumulator whose integers are reduced instead of the floats (`--exact`).
  public let exact: ExactGradients?
  /// The buckets in the order they are reduced: the end of the buffer first.
  public let buckets: [Range<Int>]
  /// This rank's shard of the buffer (all of it in `.allReduce` mode).
  public let shard: Range<Int>
  /// Totals over every finished step.
  public private(set) var totals = Timings(
    communicationSeconds: 0, exposedSeconds: 0, buckets: 0, bucketsDoneBeforeFinish: 0)

  private let worker: BucketWorker?
  /// Index into `buckets` of the next bucket to hand over (main thread only).
  private var nextBucket = 0
  /// Buckets handed over this step by a `markReady` with a bound above 0 (main thread only).
  private var startedDuringBackward = 0

  /// True when buckets are reduced on a communication thread during backward.
  public let overlap: Bool
  private let buffer: UnsafeMutablePointer<Float>

  /// A bucketer over `buffer[0..<count]`. With `overlap`, a communication thread reduces buckets
  /// as they complete; without, `finish()` reduces them all. `watchdog`, when given, watches
  /// every bucket's collective (named with its index and range). With `exact`, the buckets of
  /// its integers are reduced and rounded into `buffer` (`precision` must then be fp32).
  public init(
    communicator: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketSize: Int,
    mode: Mode = .allReduce, overlap: Bool = true, precision: GradientPrecision = .fp32,
    exact: ExactGradients? = nil, watchdog: Watchdog? = nil
  ) {
    precondition(
      count >= 0 && bucketSize >= 1, "GradientBucketer(count: \(count), bucketSize: \(bucketSize))")
    precondition(exact == nil || (exact!.count == count && precision == .fp32), "GradientBucketer: exact sums need fp32 and \(count) elements")
    self.exact = exact
    self.buffer = buffer
    self.count = count
    self.bucketSize = bucketSize
    self.mode = mode
    self.precision = precision
    self.overlap = overlap
    var buckets: [Range<Int>] = []
    var upper = count
    while upper > 0 {
      let lower = max(0, upper - bucketSize)
      buckets.append(lower..<upper)
      upper = lower
    }
    self.buckets = buckets
    let shards = shardRanges(total: count, parts: communicator.size)
    shard = mode == .allReduce ? 0..<count : shards[communicator.rank]
    if communicator.size == 1 || buckets.isEmpty {
      worker = nil
    } else {
      let blockCounts: [[Int]] = buckets.map { bucket in
        shards.map { max(0, min(bucket.upperBound, $0.upperBound) - max(bucket.lowerBound, $0.lowerBound)) }
      }
      let worker = BucketWorker(
        communicator: communicator, buffer: buffer, buckets: buckets,
        blockCounts: mode == .reduceScatter ? blockCounts : nil, precision: precision,
        exact: exact, rank: communicator.rank, watchdog: watchdog)
      if overlap {
        let thread = Thread { [worker] in worker.loop() }
        thread.name = "mixer-dist gradient communication"
        thread.stackSize = 1 << 20
        thread.start()
      }
      self.worker = worker
    }
  }

  deinit { worker?.stop() }

  /// Backward has finished `buffer[lowerBound..<count]`: every bucket inside it starts reducing.
  /// `lowerBound` goes down during a step; a larger one than before changes nothing.
  public func markReady(upTo lowerBound: Int) {
    precondition((0...count).contains(lowerBound), "markReady(upTo: \(lowerBound)) outside 0...\(count)")
    let before = nextBucket
    while nextBucket < buckets.count && buckets[nextBucket].lowerBound >= lowerBound {
      nextBucket += 1
    }
    if nextBucket != before && overlap, let worker {
      worker.handOver(upTo: nextBucket)
      if lowerBound > 0 { startedDuringBackward = nextBucket }
    }
  }

  /// Hands over the remaining buckets, waits until every bucket is reduced and returns the step's
  /// timings. Rethrows the first error of the communication thread. The next step starts fresh.
  @discardableResult
  public func finish() throws -> Timings {
    let started = startedDuringBackward
    nextBucket = 0
    startedDuringBackward = 0
    guard let worker else {
      exact?.round(into: buffer, range: 0..<count)  // one rank: the sum is its own
      let timings = Timings(
        communicationSeconds: 0, exposedSeconds: 0, buckets: buckets.count,
        bucketsDoneBeforeFinish: buckets.count)
      totals.buckets += timings.buckets
      totals.bucketsDoneBeforeFinish += timings.bucketsDoneBeforeFinish
      return timings
    }
    let waitStart = Timeline.begin()
    var (timings, error) = overlap ? worker.waitAndReset() : worker.reduceAll()
    Timeline.end(waitStart, overlap ? "wait for the gradient buckets" : "gradient reduction", overlap ? .wait : .communication)
    timings.bucketsStartedBeforeFinish = started
    totals.bucketsStartedBeforeFinish += started
    totals.communicationSeconds += timings.communicationSeconds
    totals.exposedSeconds += timings.exposedSeconds
    totals.buckets += timings.buckets
    totals.bucketsDoneBeforeFinish += timings.bucketsDoneBeforeFinish
    if let error { throw error }
    return timings
  }
}

/// The communication thread's state (separate so the thread does not keep the bucketer alive).
private final class BucketWorker {
  private let communicator: Communicator
  private let buffer: UnsafeMutablePointer<Float>
  private let buckets: [Range<Int>]
  /// Per bucket, the reduce-scatter block counts; nil in all-reduce mode.
  private let blockCounts: [[Int]]?
  private let watchdog: Watchdog?
  private let precision: GradientPrecision
  private let exact: ExactGradients?
  private let rank: Int
  /// bf16 only: one bucket of bfloat16 values, the buffer MPI sends and receives.
  private let scratch: UnsafeMutablePointer<UInt16>?
  private let condition = NSCondition()
  private var handedOver = 0
  private var completed = 0
  private var communicationSeconds = 0.0
  private var error: Error?
  private var stopped = false

  init(
    communicator: Communicator, buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>],
    blockCounts: [[Int]]?, precision: GradientPrecision, exact: ExactGradients?, rank: Int,
    watchdog: Watchdog?
  ) {
    self.exact = exact
    self.communicator = communicator
    self.buffer = buffer
    self.buckets = buckets
    self.blockCounts = blockCounts
    self.precision = precision
    self.rank = rank
    self.watchdog = watchdog
    let largest = buckets.map(\.count).max() ?? 0
    scratch = precision == .bf16 ? UnsafeMutablePointer<UInt16>.allocate(capacity: max(largest, 1)) : nil
  }

  deinit { scratch?.deallocate() }

  func handOver(upTo bucket: Int) {
    condition.lock()
    handedOver = bucket
    condition.broadcast()
    condition.unlock()
  }

  func stop() {
    condition.lock()
    stopped = true
    condition.broadcast()
    condition.unlock()
  }

  /// Hands over every remaining bucket, waits until all are done, then resets for the next step.
  func waitAndReset() -> (GradientBucketer.Timings, Error?) {
    let start = monotonicSeconds()
    condition.lock()
    defer { condition.unlock() }
    let doneBefore = completed
    handedOver = buckets.count
    condition.broadcast()
    while completed < handedOver { condition.wait() }
    let timings = GradientBucketer.Timings(
      communicationSeconds: communicationSeconds, exposedSeconds: monotonicSeconds() - start,
      buckets: completed, bucketsDoneBeforeFinish: doneBefore)
    let failure = error
    handedOver = 0
    completed = 0
    communicationSeconds = 0
    error = nil
    return (timings, failure)
  }

  /// Reduces every bucket on the calling thread (no overlap); stops at the first error.
  func reduceAll() -> (GradientBucketer.Timings, Error?) {
    let start = monotonicSeconds()
    var failure: Error?
    for index in buckets.indices {
      do { try reduce(bucket: index) } catch {
        failure = error
        break
      }
    }
    let seconds = monotonicSeconds() - start
    let timings = GradientBucketer.Timings(
      communicationSeconds: seconds, exposedSeconds: seconds, buckets: buckets.count,
      bucketsDoneBeforeFinish: 0)
    return (timings, failure)
  }

  func loop() {
    condition.lock()
    while true {
      while completed == handedOver && !stopped { condition.wait() }
      if stopped { break }
      let index = completed
      let failedBefore = error != nil
      condition.unlock()

      let start = monotonicSeconds()
      var failure: Error?
      if !failedBefore {  // After a failure the step is lost: skip the remaining buckets.
        do {
          try Timeline.span("bucket \(index + 1)/\(buckets.count)", .communication, thread: .communication) {
            try reduce(bucket: index)
          }
        } catch { failure = error }
      }
      let seconds = monotonicSeconds() - start

      condition.lock()
      completed += 1
      communicationSeconds += seconds
      if error == nil, let failure { error = failure }
      condition.broadcast()
    }
    condition.unlock()
  }

  private func reduce(bucket index: Int) throws {
    let bucket = buckets[index]
    let start = buffer + bucket.lowerBound
    let operation: () throws -> Void
    let name: String
    let format = exact != nil ? " (exact)" : precision == .bf16 ? " (bf16)" : ""
    if let blockCounts {
      name =
        "reduce-scatter of gradient bucket \(index + 1)/\(buckets.count) [\(bucket.lowerBound)..<\(bucket.upperBound)]\(format)"
      if let exact {
        operation = {
          try self.communicator.reduceScatterSum(exact.sum + bucket.lowerBound, counts: blockCounts[index])
          let block = blockRange(counts: blockCounts[index], rank: self.rank)
          exact.round(into: self.buffer, range: (bucket.lowerBound + block.lowerBound)..<(bucket.lowerBound + block.upperBound))
        }
      } else if let scratch {
        operation = {
          convertToBF16(start, scratch, count: bucket.count)
          try self.communicator.reduceScatterSumBFloat16(scratch, counts: blockCounts[index])
          let block = blockRange(counts: blockCounts[index], rank: self.rank)
          convertFromBF16(scratch + block.lowerBound, start + block.lowerBound, count: block.count)
        }
      } else {
        operation = { try self.communicator.reduceScatterSum(start, counts: blockCounts[index]) }
      }
    } else {
      name =
        "all-reduce of gradient bucket \(index + 1)/\(buckets.count) [\(bucket.lowerBound)..<\(bucket.upperBound)]\(format)"
      if let exact {
        operation = {
          try self.communicator.allReduceSum(exact.sum + bucket.lowerBound, count: bucket.count)
          exact.round(into: self.buffer, range: bucket)
        }
      } else if let scratch {
        operation = {
          convertToBF16(start, scratch, count: bucket.count)
          try self.communicator.allReduceSumBFloat16(scratch, count: bucket.count)
          convertFromBF16(scratch, start, count: bucket.count)
        }
      } else {
        operation = { try self.communicator.allReduceSum(start, count: bucket.count) }
      }
    }
    if let watchdog {
      try watchdog.watch(name, operation)
    } else {
      try operation()
    }
  }
}
