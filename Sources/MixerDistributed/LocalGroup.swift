// LocalGroup: N threads of one process acting as the N ranks of a job, sharing memory, with the
// semantics of Communicator. It lets tests exercise distributed logic (sharding, bucketing,
// ZeRO-1, the watchdog) in milliseconds without MPI (STYLE habit 7).
//
// Summation order (documented and fixed): element i of a sum is
// `((x_0 + x_1) + x_2) + ... + x_{N-1}`, x_r being rank r's value, for every element and every
// call, so results are bit-for-bit deterministic. (MPI's order depends on the algorithm it picks
// for the message size; with N = 2 both are `x_0 + x_1`, which is commutative, so bit-identical.)
//
// LocalGroup also checks what MPI cannot: all ranks must call the same collective with the same
// counts and root, else every rank throws `CommunicatorError.mismatch`. A rank whose body throws
// fails the group: the other ranks' collectives throw `peerFailed` instead of waiting forever.
// `abort` fails the group with `aborted`, parks the calling thread forever (it must not return)
// and makes `run` throw; the process goes on, unlike an MPI job.
//
// Each collective: every rank deposits its buffer's address (phase A, a barrier), computes its
// share reading the other ranks' buffers, waits until everyone has read (phase B), writes, and
// for all-reduce waits until everyone has written (phase C).

import Foundation

/// An in-process group of `size` ranks, one thread each.
public final class LocalGroup {
  /// Number of ranks.
  public let size: Int
  /// The ranks' communicators, index = rank.
  public let communicators: [LocalCommunicator]
  let state: LocalGroupState

  /// A group of `size` ranks; `ranksPerNode` (default: all) simulates several nodes for
  /// `localRank` / `localSize`.
  public init(size: Int, ranksPerNode: Int? = nil) {
    precondition(size >= 1, "LocalGroup needs at least one rank")
    let perNode = max(1, min(ranksPerNode ?? size, size))
    self.size = size
    let state = LocalGroupState(size: size)
    self.state = state
    communicators = (0..<size).map { rank in
      let node = rank / perNode
      return LocalCommunicator(
        rank: rank, size: size, localRank: rank % perNode,
        localSize: min(perNode, size - node * perNode), state: state)
    }
  }

  /// Runs `body` on every rank, each on its own thread, and returns the results by rank.
  /// Throws the error of the first rank that failed, or `CommunicatorError.aborted`.
  public func run<T>(_ body: @escaping (LocalCommunicator) throws -> T) throws -> [T] {
    let outcomes = LocalGroupOutcomes<T>(size: size)
    for communicator in communicators {
      let thread = Thread { [state] in
        state.register(rank: communicator.rank)
        do {
          outcomes.set(rank: communicator.rank, .success(try body(communicator)))
        } catch {
          outcomes.set(rank: communicator.rank, .failure(error))
          state.fail(.peerFailed(rank: communicator.rank, reason: "\(error)"))
        }
        state.finished(rank: communicator.rank)
      }
      thread.stackSize = 8 << 20
      thread.start()
    }
    let failure = state.waitUntilAllFinished()
    if let failure, case .aborted = failure { throw failure }
    if case .peerFailed(let rank, _)? = failure, case .failure(let error)? = outcomes.get(rank) {
      throw error
    }
    return try (0..<size).map { rank in
      switch outcomes.get(rank) {
      case .success(let value)?: return value
      case .failure(let error)?: throw error
      case nil: throw failure ?? CommunicatorError.peerFailed(rank: rank, reason: "no result")
      }
    }
  }

  /// Runs `body` on a new group of `size` ranks.
  public static func run<T>(
    size: Int, ranksPerNode: Int? = nil, _ body: @escaping (LocalCommunicator) throws -> T
  ) throws -> [T] {
    try LocalGroup(size: size, ranksPerNode: ranksPerNode).run(body)
  }
}

/// One rank of a `LocalGroup`.
public final class LocalCommunicator: Communicator {
  public let rank: Int
  public let size: Int
  public let localRank: Int
  public let localSize: Int
  private let state: LocalGroupState
  private var finalized = false

  init(rank: Int, size: Int, localRank: Int, localSize: Int, state: LocalGroupState) {
    self.rank = rank
    self.size = size
    self.localRank = localRank
    self.localSize = localSize
    self.state = state
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try allReduce(buffer, count: count, operation: "allReduceSum(Float)", combine: +)
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, operation: "allReduceSum(Double)", combine: +)
  }

  public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, operation: "allReduceMax(Double)") { Swift.max($0, $1) }
  }

  public func allReduceMin(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, operation: "allReduceMin(Double)") { Swift.min($0, $1) }
  }

  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    try reduceScatter(buffer, counts: counts, operation: "reduceScatterSum", combine: +)
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Int128>, count: Int) throws {
    try allReduce(buffer, count: count, operation: "allReduceSum(Int128)", combine: &+)
  }

  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Int128>, counts: [Int]) throws {
    try reduceScatter(buffer, counts: counts, operation: "reduceScatterSum(Int128)", combine: &+)
  }

  public func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    let operation = "allGather"
    try checkNotFinalized()
    _ = try validatedTotal(counts: counts, size: size, operation: operation)
    let calls = try exchange(operation, buffer, counts: counts)
    for source in 0..<size where source != rank {
      let block = blockRange(counts: counts, rank: source)
      let from = calls[source].address!.assumingMemoryBound(to: Float.self)
      (buffer + block.lowerBound).update(from: from + block.lowerBound, count: block.count)
    }
    try state.synchronize()  // B: nobody changes its own block before everyone has copied it.
  }

  public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
    try broadcastBytes(
      UnsafeMutableRawPointer(buffer), byteCount: count * MemoryLayout<Float>.stride, root: root,
      operation: "broadcast(Float)", count: count)
  }

  public func broadcast(_ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
    try broadcastBytes(
      bytes, byteCount: byteCount, root: root, operation: "broadcast(bytes)", count: byteCount)
  }

  public func barrier() throws {
    try checkNotFinalized()
    _ = try exchange("barrier", nil, count: 0)
  }

  public func abort(message: String, code: Int32) -> Never {
    printAbortMessage(rank: rank, message: message)
    state.fail(.aborted(rank: rank, message: message, code: code))
    state.parkCurrentThread()
  }

  public func finalize() throws {
    finalized = true
  }

  // MARK: - Helpers

  private func checkNotFinalized() throws {
    if finalized { throw CommunicatorError.finalized }
  }

  /// Phase A: deposit this rank's call, wait for every rank, check they all made the same call.
  private func exchange(
    _ operation: String, _ address: UnsafeMutableRawPointer?, count: Int = 0, counts: [Int] = [],
    root: Int = 0
  ) throws -> [LocalGroupState.Call] {
    let call = LocalGroupState.Call(
      operation: operation, address: address, count: count, counts: counts, root: root)
    let calls = try state.exchange(rank: rank, call: call)
    for (other, theirs) in calls.enumerated() where theirs != calls[0] {
      throw CommunicatorError.mismatch("rank 0 called \(calls[0]), rank \(other) called \(theirs)")
    }
    return calls
  }

  private func allReduce<T>(
    _ buffer: UnsafeMutablePointer<T>, count: Int, operation: String, combine: (T, T) -> T
  ) throws {
    try checkNotFinalized()
    try validate(count: count, size: size, operation: operation)
    let calls = try exchange(operation, UnsafeMutableRawPointer(buffer), count: count)
    let buffers = calls.map { $0.address!.assumingMemoryBound(to: T.self) }
    let mine = shardRanges(total: count, parts: size)[rank]
    let partial = sum(buffers, range: mine, combine: combine)
    try state.synchronize()  // B: every rank has read.
    for target in buffers {
      (target + mine.lowerBound).update(from: partial, count: partial.count)
    }
    try state.synchronize()  // C: every rank has written its share into every buffer.
  }

  private func reduceScatter<T>(
    _ buffer: UnsafeMutablePointer<T>, counts: [Int], operation: String, combine: (T, T) -> T
  ) throws {
    try checkNotFinalized()
    _ = try validatedTotal(counts: counts, size: size, operation: operation)
    let calls = try exchange(operation, UnsafeMutableRawPointer(buffer), counts: counts)
    let sources = calls.map { $0.address!.assumingMemoryBound(to: T.self) }
    let block = blockRange(counts: counts, rank: rank)
    let partial = sum(sources, range: block, combine: combine)
    try state.synchronize()  // B: every rank has read its block of every buffer.
    (buffer + block.lowerBound).update(from: partial, count: partial.count)
  }

  /// `range` of the element-wise reduction of `buffers`, in rank order.
  private func sum<T>(
    _ buffers: [UnsafeMutablePointer<T>], range: Range<Int>, combine: (T, T) -> T
  ) -> [T] {
    var partial = Array(UnsafeBufferPointer(start: buffers[0] + range.lowerBound, count: range.count))
    for source in buffers.dropFirst() {
      let values = source + range.lowerBound
      for index in partial.indices { partial[index] = combine(partial[index], values[index]) }
    }
    return partial
  }

  private func broadcastBytes(
    _ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int, operation: String, count: Int
  ) throws {
    try checkNotFinalized()
    try validate(count: count, root: root, size: size, operation: operation)
    let calls = try exchange(operation, bytes, count: byteCount, root: root)
    if rank != root, byteCount > 0 {
      bytes.copyMemory(from: calls[root].address!, byteCount: byteCount)
    }
    try state.synchronize()  // B: root keeps its buffer until everyone has copied it.
  }
}

/// Block `rank` of a partition given by consecutive block counts.
func blockRange(counts: [Int], rank: Int) -> Range<Int> {
  let start = counts[..<rank].reduce(0, +)
  return start..<(start + counts[rank])
}

/// The shared state of a LocalGroup: the deposited calls and a reusable barrier.
final class LocalGroupState {
  /// What one rank passed to a collective.
  struct Call: Equatable, CustomStringConvertible {
    var operation: String
    var address: UnsafeMutableRawPointer?
    var count: Int
    var counts: [Int]
    var root: Int

    /// Equal when the collective and its arguments match (addresses differ by rank).
    static func == (lhs: Call, rhs: Call) -> Bool {
      lhs.operation == rhs.operation && lhs.count == rhs.count && lhs.counts == rhs.counts
        && lhs.root == rhs.root
    }

    var description: String {
      "\(operation)(count: \(count)\(counts.isEmpty ? "" : ", counts: \(counts)"), root: \(root))"
    }
  }

  let size: Int
  private let condition = NSCondition()
  private var calls: [Call]
  private var completedCalls: [Call] = []
  private var arrived = 0
  private var generation = 0
  private var failure: CommunicatorError?
  private var threads: [pthread_t?]
  private var finishedRanks = 0

  init(size: Int) {
    self.size = size
    calls = Array(repeating: Call(operation: "", address: nil, count: 0, counts: [], root: 0), count: size)
    threads = Array(repeating: nil, count: size)
  }

  /// Deposits `call`, waits for every rank and returns every rank's call. The snapshot is taken
  /// by the last rank to arrive, so a fast rank depositing its next call cannot change it.
  func exchange(rank: Int, call: Call) throws -> [Call] {
    condition.lock()
    defer { condition.unlock() }
    if let failure { throw failure }
    calls[rank] = call
    try arriveAndWait()
    return completedCalls
  }

  /// A barrier over all ranks.
  func synchronize() throws {
    condition.lock()
    defer { condition.unlock() }
    if let failure { throw failure }
    try arriveAndWait()
  }

  /// Called with the lock held.
  private func arriveAndWait() throws {
    let myGeneration = generation
    arrived += 1
    if arrived == size {
      arrived = 0
      completedCalls = calls
      generation &+= 1
      condition.broadcast()
      return
    }
    while generation == myGeneration && failure == nil { condition.wait() }
    if generation == myGeneration, let failure { throw failure }
  }

  /// Marks the group failed (the first failure wins) and wakes every waiting rank.
  func fail(_ error: CommunicatorError) {
    condition.lock()
    if failure == nil { failure = error }
    condition.broadcast()
    condition.unlock()
  }

  func register(rank: Int) {
    condition.lock()
    threads[rank] = pthread_self()
    condition.unlock()
  }

  func finished(rank: Int) {
    condition.lock()
    finishedRanks += 1
    condition.broadcast()
    condition.unlock()
  }

  /// Waits until every rank's thread has finished or parked; returns the group's failure.
  func waitUntilAllFinished() -> CommunicatorError? {
    condition.lock()
    defer { condition.unlock() }
    while finishedRanks < size { condition.wait() }
    finishedRanks = 0
    return failure
  }

  /// Blocks the calling thread forever (`abort` must not return). A rank thread that parks
  /// counts as finished for `run`.
  func parkCurrentThread() -> Never {
    condition.lock()
    let me = pthread_self()
    if threads.contains(where: { $0.map { pthread_equal($0, me) != 0 } ?? false }) {
      finishedRanks += 1
      condition.broadcast()
    }
    condition.unlock()
    let never = DispatchSemaphore(value: 0)
    while true { never.wait() }
  }
}

/// Results of the ranks of one `LocalGroup.run`, written by the rank threads.
private final class LocalGroupOutcomes<T> {
  private let lock = NSLock()
  private var outcomes: [Result<T, Error>?]

  init(size: Int) { outcomes = Array(repeating: nil, count: size) }

  func set(rank: Int, _ outcome: Result<T, Error>) {
    lock.lock()
    outcomes[rank] = outcome
    lock.unlock()
  }

  func get(_ rank: Int) -> Result<T, Error>? {
    lock.lock()
    defer { lock.unlock() }
    return outcomes[rank]
  }
}
