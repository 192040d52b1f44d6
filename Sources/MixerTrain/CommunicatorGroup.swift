// CommunicatorGroup: a `Communicator` as the checkpoint layer's `CheckpointGroup`, so that
// MixerCheckpoint knows no MPI and only the sharded save's collectives go through the
// communicator (docs/architecture.md, "Module map").

import Foundation
import MixerCheckpoint
import MixerDistributed

/// The collectives of a sharded save, run on a communicator.
public final class CommunicatorGroup: CheckpointGroup {
  public let comm: Communicator

  public init(_ comm: Communicator) { self.comm = comm }

  public var rank: Int { comm.rank }
  public var size: Int { comm.size }
  public func shardRanges(total: Int) -> [Range<Int>] { MixerDistributed.shardRanges(total: total, parts: comm.size) }
  public func broadcast(_ text: String, root: Int) throws -> String { try comm.broadcast(text, root: root) }
  public func failedRanks(_ succeeded: Bool) throws -> [Int] { try comm.allAgree(succeeded).failedRanks }
  public func allReduceSum(_ values: inout [Double]) throws { try comm.allReduceSum(&values) }
}

extension CheckpointStore {
  /// A store whose sharded saves run their collectives on `comm`.
  public init(directory: URL, comm: Communicator) {
    self.init(directory: directory, group: CommunicatorGroup(comm))
  }
}
