// CheckpointGroup: the few collectives a sharded save needs (rank 0 announces a verdict, every
// rank learns whether every rank wrote its part, a background save exchanges its state), declared
// here so that reading and writing checkpoints needs no MPI. The training layer adapts its
// `Communicator` to it (`CommunicatorGroup` in MixerTrain); a process that is alone uses
// `SingleRankGroup`.

import Foundation

/// The ranks that save one checkpoint together, and the collectives a sharded save calls.
///
/// Every collective must be called by every rank, in the same order (as `Communicator`'s).
public protocol CheckpointGroup: AnyObject {
  /// This rank, in `0..<size`.
  var rank: Int { get }
  /// Number of ranks that save together (the checkpoint's world size).
  var size: Int { get }
  /// The part of a flat buffer of `total` elements that each rank holds (rank `r` holds
  /// element `r`): this rank's optimizer file covers its range.
  func shardRanges(total: Int) -> [Range<Int>]
  /// Rank `root`'s text, on every rank.
  func broadcast(_ text: String, root: Int) throws -> String
  /// The ranks that passed `false`, ascending, on every rank.
  func failedRanks(_ succeeded: Bool) throws -> [Int]
  /// Sums `values` element-wise over every rank, in place.
  func allReduceSum(_ values: inout [Double]) throws
}

/// A group of one rank: a save or load in a process that is alone (no MPI, no collectives).
public final class SingleRankGroup: CheckpointGroup {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func shardRanges(total: Int) -> [Range<Int>] { [0..<total] }
  public func broadcast(_ text: String, root: Int) throws -> String { text }
  public func failedRanks(_ succeeded: Bool) throws -> [Int] { succeeded ? [] : [0] }
  public func allReduceSum(_ values: inout [Double]) throws {}
}
