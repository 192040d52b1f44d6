// SingleProcessCommunicator: the communicator of a job of one rank (`mixer-dist train` started
// without mpirun). Every collective is the identity: the sum over one rank is the rank's value.

import Foundation

/// A job of exactly one rank; collectives validate their arguments and leave buffers unchanged.
public final class SingleProcessCommunicator: Communicator {
  public let rank = 0
  public let size = 1
  public let localRank = 0
  public let localSize = 1
  private var finalized = false

  public init() {}

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try check(count: count, operation: "allReduceSum")
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try check(count: count, operation: "allReduceSum")
  }

  public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try check(count: count, operation: "allReduceMax")
  }

  public func allReduceMin(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try check(count: count, operation: "allReduceMin")
  }

  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    try check(count: 0, operation: "reduceScatterSum")
    _ = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSum")
  }

  public func allReduceSum(_ buffer: UnsafeMutablePointer<Int128>, count: Int) throws {
    try check(count: count, operation: "allReduceSum")
  }

  public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Int128>, counts: [Int]) throws {
    try check(count: 0, operation: "reduceScatterSum")
    _ = try validatedTotal(counts: counts, size: size, operation: "reduceScatterSum")
  }

  public func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
    try check(count: 0, operation: "allGather")
    _ = try validatedTotal(counts: counts, size: size, operation: "allGather")
  }

  public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
    try check(count: count, root: root, operation: "broadcast")
  }

  public func broadcast(_ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
    try check(count: byteCount, root: root, operation: "broadcast")
  }

  public func barrier() throws {
    try check(count: 0, operation: "barrier")
  }

  public func abort(message: String, code: Int32) -> Never {
    printAbortMessage(rank: rank, message: message)
    exit(code)
  }

  public func finalize() throws {
    finalized = true
  }

  private func check(count: Int, root: Int? = nil, operation: String) throws {
    if finalized { throw CommunicatorError.finalized }
    try validate(count: count, root: root, size: size, operation: operation)
  }
}
