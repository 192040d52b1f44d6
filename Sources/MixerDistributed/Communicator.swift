// Communicator: the collective operations data-parallel training needs (docs/architecture.md, "Distributed"),
// as one protocol with three implementations: MPICommunicator (the only code that touches MPI),
// SingleProcessCommunicator (size 1, `mixer-dist train` without mpirun) and LocalGroup (N threads
// of one process acting as ranks, for fast tests). Also the shared helpers built on the protocol:
// shard ranges, scalar/array reductions for metrics and the collective error check `allAgree`.

import Foundation
import MixerNumerics

/// The collectives of one group of ranks.
///
/// Every collective must be called by every rank of the group, in the same order, with the same
/// counts (and the same root). Buffers are flat and operated on in place. A rank that cannot go
/// on calls `abort(message:code:)`, which ends every rank of the job.
///
/// Block collectives (`reduceScatterSum`, `allGather`) partition a flat buffer into `size`
/// consecutive blocks: block `r` starts at `counts[0] + ... + counts[r - 1]` and holds `counts[r]`
/// elements; rank `r` owns block `r`. `shardRanges(total:parts:)` gives the standard near-equal
/// partition and the `count:` overloads use it.
public protocol Communicator: AnyObject {
  /// This rank, in `0..<size`.
  var rank: Int { get }
  /// Number of ranks in the job.
  var size: Int { get }
  /// This rank's index among the ranks on the same node (MPI_COMM_TYPE_SHARED).
  var localRank: Int { get }
  /// Number of ranks on this node.
  var localSize: Int { get }

  /// Sums `count` floats over all ranks, in place: on return every rank holds the same sum.
  func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
  /// Sums `count` doubles over all ranks, in place (metrics: loss sums, sample counts).
  func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
  /// Element-wise maximum over all ranks, in place.
  func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
  /// Element-wise minimum over all ranks, in place.
  func allReduceMin(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws

  /// Sums the flat buffer `buffer[0 ..< counts.reduce(0, +)]` over all ranks and leaves block
  /// `rank` of the sum in place, at its own offset. The rest of the buffer is unspecified on
  /// return (it may hold partial sums or this rank's inputs).
  func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws
  /// Sums `count` bfloat16 values (`GradientPrecision.bf16`) over all ranks, in place; every
  /// addition is done in fp32 and rounded once (`addBFloat16`). Half the bytes of fp32.
  func allReduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws
  /// `reduceScatterSum` of bfloat16 values, each addition in fp32 and rounded once.
  func reduceScatterSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, counts: [Int]) throws
  /// Sums `count` 128-bit fixed-point integers (`ExactSum`) over all ranks, in place, wrapping.
  /// Integer addition does not depend on the order, so every algorithm gives the same bits.
  func allReduceSum(_ buffer: UnsafeMutablePointer<Int128>, count: Int) throws
  /// `reduceScatterSum` of 128-bit fixed-point integers (`ExactSum`): exact, order-free.
  func reduceScatterSum(_ buffer: UnsafeMutablePointer<Int128>, counts: [Int]) throws
  /// Gathers in place: each rank contributes its own block `rank` of `buffer`; on return every
  /// rank's buffer holds every block.
  func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws
  /// Copies `count` floats from rank `root` to every rank.
  func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws
  /// Copies `byteCount` raw bytes from rank `root` to every rank.
  func broadcast(_ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws
  /// Returns once every rank has called it.
  func barrier() throws

  /// Prints `mixer-dist: rank R: message` to standard error and ends the whole job with `code`
  /// (MPI_Abort). Safe to call from any thread, also while another thread is inside a collective.
  func abort(message: String, code: Int32) -> Never
  /// Shuts the communicator down; collectives afterwards throw. Call once, at the end, on every rank.
  func finalize() throws
}

/// Errors raised by the communicators themselves; MPI's own errors are `MPIError`.
public enum CommunicatorError: Error, Equatable, CustomStringConvertible {
  /// A bad argument: negative count, root out of range, block counts that do not match the size.
  case invalidArgument(String)
  /// Ranks called different collectives or passed different counts (detected by LocalGroup;
  /// MPI may hang or fail instead).
  case mismatch(String)
  /// Another rank of an in-process group failed, so this collective can never complete.
  case peerFailed(rank: Int, reason: String)
  /// A rank of an in-process group called `abort`: the group is dead, as an MPI job would be.
  case aborted(rank: Int, message: String, code: Int32)
  /// The communicator was finalized.
  case finalized
  /// MPI does not provide the thread support this module needs.
  case insufficientThreadSupport(required: String, provided: String)

  public var description: String {
    switch self {
    case .invalidArgument(let text): return "invalid argument: \(text)"
    case .mismatch(let text): return "ranks disagree on a collective: \(text)"
    case .peerFailed(let rank, let reason): return "rank \(rank) failed: \(reason)"
    case .aborted(let rank, let message, let code):
      return "rank \(rank) aborted the job (code \(code)): \(message)"
    case .finalized: return "the communicator was finalized"
    case .insufficientThreadSupport(let required, let provided):
      return
        "MPI provides thread level \(provided) but mixer-dist needs at least \(required) "
        + "(the gradient communication thread calls MPI): use an MPI built with thread support"
    }
  }
}

/// Splits `0..<total` into `parts` contiguous ranges, in order, whose lengths differ by at most
/// one (the first `total % parts` ranges are one longer). Rank `r` owns range `r`.
public func shardRanges(total: Int, parts: Int) -> [Range<Int>] {
  precondition(total >= 0 && parts >= 1, "shardRanges(total: \(total), parts: \(parts))")
  let base = total / parts
  let longer = total % parts
  var ranges: [Range<Int>] = []
  ranges.reserveCapacity(parts)
  var start = 0
  for part in 0..<parts {
    let length = base + (part < longer ? 1 : 0)
    ranges.append(start..<(start + length))
    start += length
  }
  return ranges
}

/// The outcome of `allAgree`: which ranks reported failure.
public struct Agreement: Equatable, CustomStringConvertible {
  /// Ranks that passed `false`, ascending.
  public let failedRanks: [Int]
  /// True when every rank passed `true`.
  public var allSucceeded: Bool { failedRanks.isEmpty }

  public init(failedRanks: [Int]) { self.failedRanks = failedRanks }

  public var description: String {
    allSucceeded
      ? "all ranks succeeded" : "failed on rank(s) \(failedRanks.map(String.init).joined(separator: ", "))"
  }
}

extension Communicator {
  /// The bf16 all-reduce of communicators that move no bytes (in-process): widen to fp32, sum
  /// in fp32, round once. MPICommunicator sends bf16 on the wire instead.
  public func allReduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws {
    try validate(count: count, size: size, operation: "allReduceSumBFloat16")
    var values = [Float](repeating: 0, count: max(count, 1))
    try values.withUnsafeMutableBufferPointer { floats in
      let base = floats.baseAddress!
      convertFromBF16(buffer, base, count: count)
      try allReduceSum(base, count: count)
      convertToBF16(base, buffer, count: count)
    }
  }

  /// The bf16 reduce-scatter of in-process communicators: widen, reduce-scatter in fp32, round
  /// this rank's block once.
  public func reduceScatterSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, counts: [Int]) throws {
    let total = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSumBFloat16")
    var values = [Float](repeating: 0, count: max(total, 1))
    try values.withUnsafeMutableBufferPointer { floats in
      let base = floats.baseAddress!
      convertFromBF16(buffer, base, count: total)
      try reduceScatterSum(base, counts: counts)
      let block = blockRange(counts: counts, rank: rank)
      convertToBF16(base + block.lowerBound, buffer + block.lowerBound, count: block.count)
    }
  }

  /// True on rank 0, the rank that owns side effects (logging, checkpoint manifests).
  public var isRankZero: Bool { rank == 0 }

  /// This rank's range of a flat buffer of `total` elements, `shardRanges(total:parts:)[rank]`.
  public func shard(ofTotal total: Int) -> Range<Int> {
    shardRanges(total: total, parts: size)[rank]
  }

  /// Block counts of the standard partition of `total` elements over the ranks.
  public func shardCounts(ofTotal total: Int) -> [Int] {
    shardRanges(total: total, parts: size).map(\.count)
  }

  /// Reduce-scatter over the standard partition: on return `buffer[shard(ofTotal: count)]` holds
  /// the sum over ranks; the rest of the buffer is unspecified.
  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try reduceScatterSum(buffer, counts: shardCounts(ofTotal: count))
  }

  /// All-gather over the standard partition: each rank contributes `buffer[shard(ofTotal: count)]`.
  public func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try allGather(buffer, counts: shardCounts(ofTotal: count))
  }

  /// Sums an array of floats over all ranks, in place.
  public func allReduceSum(_ values: inout [Float]) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: count) }
  }

  /// Sums an array of 128-bit fixed-point integers over all ranks, in place.
  public func allReduceSum(_ values: inout [Int128]) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: count) }
  }

  /// Sums an array of doubles over all ranks, in place.
  public func allReduceSum(_ values: inout [Double]) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: count) }
  }

  /// Element-wise maximum of an array of doubles over all ranks, in place.
  public func allReduceMax(_ values: inout [Double]) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer { try allReduceMax($0.baseAddress!, count: count) }
  }

  /// Element-wise minimum of an array of doubles over all ranks, in place.
  public func allReduceMin(_ values: inout [Double]) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer { try allReduceMin($0.baseAddress!, count: count) }
  }

  /// The sum of `value` over all ranks.
  public func allReduceSum(_ value: Double) throws -> Double {
    var values = [value]
    try allReduceSum(&values)
    return values[0]
  }

  /// The maximum of `value` over all ranks.
  public func allReduceMax(_ value: Double) throws -> Double {
    var values = [value]
    try allReduceMax(&values)
    return values[0]
  }

  /// The minimum of `value` over all ranks.
  public func allReduceMin(_ value: Double) throws -> Double {
    var values = [value]
    try allReduceMin(&values)
    return values[0]
  }

  /// Broadcasts an array of floats from `root`; every rank must pass an array of the same length.
  public func broadcast(_ values: inout [Float], root: Int) throws {
    let count = values.count
    try values.withUnsafeMutableBufferPointer {
      try broadcast($0.baseAddress!, count: count, root: root)
    }
  }

  /// Broadcasts a byte string of any length from `root` (the length goes first); other ranks'
  /// `bytes` are ignored. Returns root's bytes on every rank.
  public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
    var length = Int64(rank == root ? bytes.count : 0)
    try broadcast(&length, byteCount: MemoryLayout<Int64>.size, root: root)
    var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length))
    if length > 0 {
      try result.withUnsafeMutableBytes {
        try broadcast($0.baseAddress!, byteCount: Int(length), root: root)
      }
    }
    return result
  }

  /// Broadcasts a string from `root` (a run directory name, a config file's text).
  public func broadcast(_ text: String, root: Int) throws -> String {
    String(decoding: try broadcast(Array(text.utf8), root: root), as: UTF8.self)
  }

  /// The collective error check: every rank says whether it succeeded and every rank learns
  /// which ranks failed, so all can stop together (or abort with a message naming the ranks)
  /// instead of some waiting forever in the next collective.
  public func allAgree(_ succeeded: Bool) throws -> Agreement {
    var failed = [Double](repeating: 0, count: size)
    if !succeeded { failed[rank] = 1 }
    try allReduceMax(&failed)
    return Agreement(failedRanks: failed.indices.filter { failed[$0] != 0 })
  }
}

/// Checks the block counts of a reduce-scatter or all-gather; returns their total.
func validatedTotal(counts: [Int], size: Int, operation: String) throws -> Int {
  guard counts.count == size else {
    throw CommunicatorError.invalidArgument(
      "\(operation): \(counts.count) block counts for \(size) ranks")
  }
  guard counts.allSatisfy({ $0 >= 0 }) else {
    throw CommunicatorError.invalidArgument("\(operation): negative block count in \(counts)")
  }
  return counts.reduce(0, +)
}

/// Checks a count and a root rank.
func validate(count: Int, root: Int? = nil, size: Int, operation: String) throws {
  guard count >= 0 else {
    throw CommunicatorError.invalidArgument("\(operation): negative count \(count)")
  }
  if let root, !(0..<size).contains(root) {
    throw CommunicatorError.invalidArgument("\(operation): root \(root) is not in 0..<\(size)")
  }
}

/// Writes one `mixer-dist: rank R: message` line to standard error, unbuffered.
func printAbortMessage(rank: Int, message: String) {
  let line = "mixer-dist: rank \(rank): \(message)\n"
  fputs(line, stderr)
  fflush(stderr)
}
