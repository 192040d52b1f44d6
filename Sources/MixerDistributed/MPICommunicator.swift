// MPICommunicator: the Communicator over OpenMPI, and the only code that imports CMPI. Every raw
// MPI call goes through `mpiCheck`, which turns a failure into a thrown `MPIError` carrying
// MPI_Error_string's text (the world communicator is set to MPI_ERRORS_RETURN so failures come
// back instead of killing the job silently).
//
// Threads: MPI is initialized asking for MPI_THREAD_MULTIPLE (MIXER_MPI_THREAD_LEVEL=serialized
// asks for less, to test that level) and needs at least MPI_THREAD_SERIALIZED. Every collective
// takes one lock, so the gradient communication thread and the main thread never call MPI at the
// same time (SERIALIZED is then enough). `abort` is the exception, because the watchdog calls it
// precisely while another thread is blocked inside a collective, holding the lock:
//   * under MULTIPLE it calls MPI_Abort at once, without the lock (any thread may call MPI at any
//     time);
//   * under SERIALIZED calling MPI_Abort then would break the level's contract (two threads in MPI
//     at once), so it waits a bounded time (`abortLockWait`) for the lock: when the collective
//     completes, MPI_Abort runs with the lock held (and never gives it back); when it does not (the
//     hung collective the watchdog fired for), the rank does not touch MPI at all and ends with
//     `_exit(code)`. mpirun then ends the whole job as for MPI_Abort: a rank that exits non-zero
//     without MPI_Finalize aborts the job (orte_abort_on_non_zero_status, on by default).

import CMPI
import Foundation

/// An MPI call that failed: the function, its error code and MPI_Error_string's text.
public struct MPIError: Error, Equatable, CustomStringConvertible {
  /// The MPI function, e.g. "MPI_Allreduce".
  public let function: String
  /// MPI's error code.
  public let code: Int32
  /// MPI_Error_string(code).
  public let message: String

  public var description: String { "\(function) failed with error \(code): \(message)" }
}

/// Runs one raw MPI call and throws `MPIError` unless it returns MPI_SUCCESS.
@inline(__always)
func mpiCheck(_ function: StaticString, _ call: () -> Int32) throws {
  let code = call()
  guard code == cmpi_success() else {
    throw MPIError(function: "\(function)", code: code, message: mpiErrorString(code))
  }
}

/// MPI_Error_string's text for `code` (a call of its own, outside `mpiCheck` because it reports
/// the failure of another).
private func mpiErrorString(_ code: Int32) -> String {
  var text = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
  var length: Int32 = 0
  guard MPI_Error_string(code, &text, &length) == cmpi_success() else {
    return "unknown MPI error"
  }
  return String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The thread support levels of MPI_Init_thread, in increasing order.
public enum MPIThreadLevel: Int, Comparable, CustomStringConvertible, Sendable {
  case single, funneled, serialized, multiple

  init?(mpiValue: Int32) {
    switch mpiValue {
    case cmpi_thread_single(): self = .single
    case cmpi_thread_funneled(): self = .funneled
    case cmpi_thread_serialized(): self = .serialized
    case cmpi_thread_multiple(): self = .multiple
    default: return nil
    }
  }

  var mpiValue: Int32 {
    switch self {
    case .single: return cmpi_thread_single()
    case .funneled: return cmpi_thread_funneled()
    case .serialized: return cmpi_thread_serialized()
    case .multiple: return cmpi_thread_multiple()
    }
  }

  public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

  public var description: String {
    switch self {
    case .single: return "MPI_THREAD_SINGLE"
    case .funneled: return "MPI_THREAD_FUNNELED"
    case .serialized: return "MPI_THREAD_SERIALIZED"
    case .multiple: return "MPI_THREAD_MULTIPLE"
    }
  }
}

/// The communicator of a job started by mpirun (or srun with PMIx), over MPI_COMM_WORLD.
public final class MPICommunicator: Communicator {
  public let rank: Int
  public let size: Int
  public let localRank: Int
  public let localSize: Int
  /// The thread level MPI_Init_thread provided.
  public let threadLevel: MPIThreadLevel

  private let world: MPI_Comm?
  /// Serializes every MPI call; `abort` takes it only under SERIALIZED (see the file header).
  private let lock = NSLock()
  private var finalized = false
  /// The bf16 sum (`addBFloat16`) as a user-defined MPI operation, made at the first use.
  private var bfloat16Sum: MPI_Op?
  /// The 128-bit integer (`ExactSum`) as an MPI datatype of two int64 words and its wrapping sum
  /// as a user-defined operation, made at the first use.
  private var exactType: (type: MPI_Datatype?, sum: MPI_Op?)?

  /// Largest element count passed to one MPI call; longer buffers go in several calls.
  private static let maximumChunk = 1 << 30

  /// Initializes MPI (once per process), asking for `requested` thread support and failing with
  /// `CommunicatorError.insufficientThreadSupport` below `required`.
  public init(requested: MPIThreadLevel = .multiple, required: MPIThreadLevel = .serialized) throws {
    var initialized: Int32 = 0
    try mpiCheck("MPI_Initialized") { MPI_Initialized(&initialized) }
    var provided: Int32 = 0
    if initialized == 0 {
      try mpiCheck("MPI_Init_thread") { MPI_Init_thread(nil, nil, requested.mpiValue, &provided) }
    } else {
      try mpiCheck("MPI_Query_thread") { MPI_Query_thread(&provided) }
    }
    let level = MPIThreadLevel(mpiValue: provided) ?? .single
    guard level >= required else {
      throw CommunicatorError.insufficientThreadSupport(
        required: required.description, provided: level.description)
    }
    threadLevel = level
    let world = cmpi_comm_world()
    self.world = world
    try mpiCheck("MPI_Comm_set_errhandler") { MPI_Comm_set_errhandler(world, cmpi_errors_return()) }

    var value: Int32 = 0
    try mpiCheck("MPI_Comm_rank") { MPI_Comm_rank(world, &value) }
    rank = Int(value)
    let key = value
    try mpiCheck("MPI_Comm_size") { MPI_Comm_size(world, &value) }
    size = Int(value)

    var node: MPI_Comm? = cmpi_comm_null()
    try mpiCheck("MPI_Comm_split_type") {
      MPI_Comm_split_type(world, cmpi_comm_type_shared(), key, cmpi_info_null(), &node)
    }
    try mpiCheck("MPI_Comm_rank") { MPI_Comm_rank(node, &value) }
    localRank = Int(value)
    try mpiCheck("MPI_Comm_size") { MPI_Comm_size(node, &value) }
    localSize = Int(value)
    try mpiCheck("MPI_Comm_free") { MPI_Comm_free(&node) }
  }

  /// True when this process was started by an MPI launcher: OpenMPI's mpirun sets
  /// `OMPI_COMM_WORLD_SIZE`, PMIx launchers (mpirun, `srun --mpi=pmix`) set `PMIX_RANK`.
  public static func isLaunchedByMPI(
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> Bool {
    environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
  }

  /// The communicator for this process: MPI when started by mpirun, otherwise a single-process
  /// communicator (no MPI initialization at all, so `mixer-dist train` runs without mpirun).
  public static func makeDefault(
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> any Communicator {
    if isLaunchedByMPI(environment: environment) {
      // MIXER_MPI_THREAD_LEVEL=serialized: ask MPI for SERIALIZED only (tests abort at that level)
      if environment["MIXER_MPI_THREAD_LEVEL"]?.lowercased() == "serialized" {
        return try MPICommunicator(requested: .serialized)
      }
      return try MPICommunicator()
    }
    return SingleProcessCommunicator()
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try allReduce(buffer, count: count, type: cmpi_float(), op: cmpi_sum(), operation: "allReduceSum")
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, type: cmpi_double(), op: cmpi_sum(), operation: "allReduceSum")
  }

  public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, type: cmpi_double(), op: cmpi_max(), operation: "allReduceMax")
  }

  public func allReduceMin(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, type: cmpi_double(), op: cmpi_min(), operation: "allReduceMin")
  }

  /// MPI_Reduce_scatter with MPI_IN_PLACE reads the whole buffer and writes this rank's block at
  /// the START of the buffer; the block is then moved to its own offset.
  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    let total = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSum")
    let blockCounts = try int32Counts(counts, total: total, operation: "reduceScatterSum")
    guard total > 0 else { return try withLock { try checkNotFinalized() } }
    try withLock {
      try checkNotFinalized()
      try mpiCheck("MPI_Reduce_scatter") {
        MPI_Reduce_scatter(cmpi_in_place(), buffer, blockCounts, cmpi_float(), cmpi_sum(), world)
      }
    }
    let offset = counts[..<rank].reduce(0, +)
    if offset > 0 && counts[rank] > 0 {
      memmove(buffer + offset, buffer, counts[rank] * MemoryLayout<Float>.stride)
    }
  }

  /// bf16 on the wire: MPI_Allreduce of 2-byte elements with a user-defined operation that adds
  /// in fp32 and rounds once (OpenMPI applies it once per rank on the way through its algorithm).
  public func allReduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws {
    try validate(count: count, size: size, operation: "allReduceSumBFloat16")
    try withLock {
      try checkNotFinalized()
      let op = try bfloat16SumOperation()
      var start = 0
      while start < count {
        let length = min(count - start, Self.maximumChunk)
        try mpiCheck("MPI_Allreduce") {
          MPI_Allreduce(cmpi_in_place(), buffer + start, Int32(length), cmpi_uint16(), op, world)
        }
        start += length
      }
    }
  }

  /// bf16 on the wire: MPI_Reduce_scatter with the bf16 sum, the block then moved to its offset.
  public func reduceScatterSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, counts: [Int]) throws {
    let total = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSumBFloat16")
    let blockCounts = try int32Counts(counts, total: total, operation: "reduceScatterSumBFloat16")
    guard total > 0 else { return try withLock { try checkNotFinalized() } }
    try withLock {
      try checkNotFinalized()
      let op = try bfloat16SumOperation()
      try mpiCheck("MPI_Reduce_scatter") {
        MPI_Reduce_scatter(cmpi_in_place(), buffer, blockCounts, cmpi_uint16(), op, world)
      }
    }
    let offset = counts[..<rank].reduce(0, +)
    if offset > 0 && counts[rank] > 0 {
      memmove(buffer + offset, buffer, counts[rank] * MemoryLayout<UInt16>.stride)
    }
  }

  /// Exact sums on the wire: MPI_Allreduce of 16-byte elements with a user-defined operation
  /// adding 128-bit integers (associative, so every algorithm MPI picks gives the same bits).
  public func allReduceSum(_ buffer: UnsafeMutablePointer<Int128>, count: Int) throws {
    try validate(count: count, size: size, operation: "allReduceSum(Int128)")
    try withLock {
      try checkNotFinalized()
      let (type, op) = try exactSumOperation()
      var start = 0
      while start < count {
        let length = min(count - start, Self.maximumChunk)
        try mpiCheck("MPI_Allreduce") {
          MPI_Allreduce(cmpi_in_place(), buffer + start, Int32(length), type, op, world)
        }
        start += length
      }
    }
  }

  /// Exact sums on the wire: MPI_Reduce_scatter of 128-bit integers, the block then moved to its
  /// offset.
  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Int128>, counts: [Int]) throws {
    let total = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSum(Int128)")
    let blockCounts = try int32Counts(counts, total: total, operation: "reduceScatterSum(Int128)")
    guard total > 0 else { return try withLock { try checkNotFinalized() } }
    try withLock {
      try checkNotFinalized()
      let (type, op) = try exactSumOperation()
      try mpiCheck("MPI_Reduce_scatter") {
        MPI_Reduce_scatter(cmpi_in_place(), buffer, blockCounts, type, op, world)
      }
    }
    let offset = counts[..<rank].reduce(0, +)
    if offset > 0 && counts[rank] > 0 {
      memmove(buffer + offset, buffer, counts[rank] * MemoryLayout<Int128>.stride)
    }
  }

  public func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    let total = try validatedTotal(counts: counts, size: size, operation: "allGather")
    let blockCounts = try int32Counts(counts, total: total, operation: "allGather")
    var offsets: [Int32] = []
    offsets.reserveCapacity(size)
    var offset: Int32 = 0
    for count in blockCounts {
      offsets.append(offset)
      offset += count
    }
    try withLock {
      try checkNotFinalized()
      guard total > 0 else { return }
      try mpiCheck("MPI_Allgatherv") {
        MPI_Allgatherv(
          cmpi_in_place(), 0, cmpi_float(), buffer, blockCounts, offsets, cmpi_float(), world)
      }
    }
  }

  public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
    try broadcast(
      UnsafeMutableRawPointer(buffer), count: count, type: cmpi_float(),
      elementSize: MemoryLayout<Float>.stride, root: root)
  }

  public func broadcast(_ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
    try broadcast(bytes, count: byteCount, type: cmpi_byte(), elementSize: 1, root: root)
  }

  public func barrier() throws {
    try withLock {
      try checkNotFinalized()
      try mpiCheck("MPI_Barrier") { MPI_Barrier(world) }
    }
  }

  /// How long `abort` waits for the lock under MPI_THREAD_SERIALIZED (see the file header).
  static let abortLockWait: TimeInterval = 2

  public func abort(message: String, code: Int32) -> Never {
    printAbortMessage(rank: rank, message: message)
    // MPI_Finalized may be called by any thread at any time (MPI 3.1 §8.7), so it needs no lock.
    func abortIfNotFinalized() {
      var finalizedByMPI: Int32 = 0
      if MPI_Finalized(&finalizedByMPI) == cmpi_success() && finalizedByMPI == 0 {
        _ = MPI_Abort(world, code)
      }
    }
    if threadLevel >= .multiple {
      // Another thread may be blocked inside a collective right now; MULTIPLE allows this call.
      abortIfNotFinalized()
    } else if lock.lock(before: Date(timeIntervalSinceNow: Self.abortLockWait)) {
      // SERIALIZED, no other thread in MPI: abort with the lock held (it is never released).
      abortIfNotFinalized()
    } else {
      // SERIALIZED and a collective still holds the lock: no MPI call is allowed from this thread.
      printAbortMessage(
        rank: rank,
        message: "another thread is still inside an MPI call (MPI_THREAD_SERIALIZED): exiting with status \(code) "
          + "without MPI_Abort; mpirun ends the other ranks")
      _exit(code)
    }
    exit(code)
  }

  public func finalize() throws {
    try withLock {
      guard !finalized else { return }
      finalized = true
      try mpiCheck("MPI_Finalize") { MPI_Finalize() }
    }
  }

  // MARK: - Helpers

  /// The user-defined MPI operation of the bf16 sum, created once (call with the lock held).
  private func bfloat16SumOperation() throws -> MPI_Op? {
    if let bfloat16Sum { return bfloat16Sum }
    var op: MPI_Op? = cmpi_op_null()
    // commutative (1): MPI may combine in any order, as it does for MPI_SUM on floats
    try mpiCheck("MPI_Op_create") { MPI_Op_create(bfloat16SumFunction, 1, &op) }
    bfloat16Sum = op
    return op
  }

  /// The 16-byte datatype and the 128-bit integer sum, created once (call with the lock held).
  private func exactSumOperation() throws -> (MPI_Datatype?, MPI_Op?) {
    if let exactType { return exactType }
    var type: MPI_Datatype? = cmpi_byte()
    try mpiCheck("MPI_Type_contiguous") { MPI_Type_contiguous(2, cmpi_int64(), &type) }
    try mpiCheck("MPI_Type_commit") { MPI_Type_commit(&type) }
    var op: MPI_Op? = cmpi_op_null()
    // commutative (1): integer addition is, and associative, so any order gives the same bits
    try mpiCheck("MPI_Op_create") { MPI_Op_create(exactSumFunction, 1, &op) }
    exactType = (type, op)
    return (type, op)
  }

  private func withLock<T>(_ body: () throws -> T) rethrows -> T {
    lock.lock()
    defer { lock.unlock() }
    return try body()
  }

  private func checkNotFinalized() throws {
    if finalized { throw CommunicatorError.finalized }
  }

  private func allReduce<T>(
    _ buffer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype?, op: MPI_Op?,
    operation: String
  ) throws {
    try validate(count: count, size: size, operation: operation)
    try withLock {
      try checkNotFinalized()
      var start = 0
      while start < count {
        let length = min(count - start, Self.maximumChunk)
        try mpiCheck("MPI_Allreduce") {
          MPI_Allreduce(cmpi_in_place(), buffer + start, Int32(length), type, op, world)
        }
        start += length
      }
    }
  }

  /// Broadcasts `count` elements of `elementSize` bytes each.
  private func broadcast(
    _ buffer: UnsafeMutableRawPointer, count: Int, type: MPI_Datatype?, elementSize: Int, root: Int
  ) throws {
    try validate(count: count, root: root, size: size, operation: "broadcast")
    try withLock {
      try checkNotFinalized()
      var start = 0
      while start < count {
        let length = min(count - start, Self.maximumChunk)
        try mpiCheck("MPI_Bcast") {
          MPI_Bcast(buffer + start * elementSize, Int32(length), type, Int32(root), world)
        }
        start += length
      }
    }
  }

  /// Block counts as MPI's `int`s; the total must fit too (it is the largest displacement).
  private func int32Counts(_ counts: [Int], total: Int, operation: String) throws -> [Int32] {
    guard total <= Int(Int32.max) else {
      throw CommunicatorError.invalidArgument(
        "\(operation): \(total) elements exceed MPI's int counts; split the buffer")
    }
    return counts.map { Int32($0) }
  }
}

/// MPI's callback for the bf16 sum: `inout[i] = bf16(float(in[i]) + float(inout[i]))`.
private let bfloat16SumFunction: @convention(c) (
  UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<MPI_Datatype?>?
) -> Void = { input, accumulator, length, _ in
  guard let input, let accumulator, let length else { return }
  addBFloat16(
    accumulator.assumingMemoryBound(to: UInt16.self), input.assumingMemoryBound(to: UInt16.self),
    count: Int(length.pointee))
}

/// MPI's callback for the exact sum: `inout[i] &+= in[i]` over 128-bit integers.
private let exactSumFunction: @convention(c) (
  UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<MPI_Datatype?>?
) -> Void = { input, accumulator, length, _ in
  guard let input, let accumulator, let length else { return }
  // MPI's own buffers need not be 16-byte aligned: unaligned loads and stores
  for offset in stride(from: 0, to: Int(length.pointee) * 16, by: 16) {
    let sum = accumulator.loadUnaligned(fromByteOffset: offset, as: Int128.self)
      &+ input.loadUnaligned(fromByteOffset: offset, as: Int128.self)
    accumulator.storeBytes(of: sum, toByteOffset: offset, as: Int128.self)
  }
}
