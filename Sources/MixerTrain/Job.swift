// The lifetime of one job on one rank, in one place: MPI start (or a single process without
// mpirun), abort of every rank when this one fails (naming it), finalize on success; and the
// OpenBLAS thread policy (`--threads`, else OPENBLAS_NUM_THREADS, else cores per node / ranks per
// node).

import Foundation
import MixerCheckpoint
import MixerDistributed
import MixerKernels

/// Starting, failing and ending a job.
public enum Job {
  /// Runs `body` with this process's communicator: MPI's under mpirun, a single process
  /// otherwise. An error in `body` aborts every rank of a multi-rank job (with this rank's message)
  /// and is rethrown; success finalizes MPI.
  public static func run<T>(_ body: (Communicator) throws -> T) throws -> T {
    let comm = try MPICommunicator.makeDefault()
    let value: T
    do {
      value = try body(comm)
    } catch {
      if comm.size > 1 { comm.abort(message: describeError(error), code: (error as? ExitStatusError)?.exitStatus ?? 1) }
      throw error
    }
    try comm.finalize()
    return value
  }

  /// For launch/mpirun's start-up deadline (it sets MIXER_LAUNCH_MARKER=1 on several nodes): rank
  /// 0 says on stderr that it runs, whatever the command. mpirun starts the ranks only once every
  /// node's daemon has reported, so the line proves the launch is past the point where a host lost
  /// meanwhile leaves mpirun waiting for good; launch/mpirun swallows it.
  public static func announceStart(environment: [String: String] = ProcessInfo.processInfo.environment) {
    guard environment["MIXER_LAUNCH_MARKER"] == "1" else { return }
    let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK"].lazy.compactMap { environment[$0] }.first
    guard rank == "0" else { return }
    FileHandle.standardError.write(Data("mixer-dist: launch: rank 0 started\n".utf8))
  }

  /// Sets and returns the OpenBLAS threads of this rank: `requested`, else a positive
  /// OPENBLAS_NUM_THREADS, else cores per node / ranks on this node.
  @discardableResult
  public static func setBLASThreads(requested: Int?, comm: Communicator = SingleProcessCommunicator()) -> Int {
    let environment = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap { Int($0) }
    let threads = requested ?? environment.flatMap { $0 > 0 ? $0 : nil }
      ?? defaultThreadsPerRank(coresPerNode: onlineCPUCount(), localSize: comm.localSize)
    BLAS.setThreads(threads)
    return threads
  }
}
