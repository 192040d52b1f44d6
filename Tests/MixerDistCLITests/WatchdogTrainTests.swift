// A stalled rank (a stuck disk, a hung peer) never hangs the job: the watchdog aborts it after
// --timeout seconds, naming the step.

import MixerTestSupport
import XCTest

final class WatchdogTrainTests: XCTestCase {
  func testStalledRankIsAbortedByTheWatchdog() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try mpirunMixerDist(ranks: 2, [
      "train", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
      "--train-examples", "256", "--val-examples", "32", "--batch", "16", "--steps", "20", "--threads", "1",
      "--run-dir", dir.path, "--stall-at-step", "5", "--fail-rank", "1", "--timeout", "3",
    ], timeout: 60)
    XCTAssertFalse(result.timedOut, "the job hung")
    XCTAssertNotEqual(result.status, 0)
    XCTAssertLessThan(result.seconds, 30)
    XCTAssertTrue(result.stderr.contains("watchdog: 'training step 5'"), result.stderr)
    XCTAssertTrue(result.stderr.contains("has not completed after 3.0 s"), result.stderr)
  }

  /// MPI_THREAD_SERIALIZED (asked for with MIXER_MPI_THREAD_LEVEL): rank 1 is frozen (SIGSTOP, its
  /// own watchdog included) while rank 0 waits for it inside a collective, holding the MPI lock.
  /// Rank 0's watchdog must not call MPI_Abort next to that call: it waits 2 s for the lock,
  /// then exits without MPI, and mpirun ends the frozen rank.
  func testWatchdogAbortUnderSerializedDoesNotEnterMPI() throws {
    guard let mpirun = which("mpirun") else { throw XCTSkip("mpirun is not on the PATH") }
    let dir = try makeTemporaryDirectory(self)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: mpirun)
    process.arguments = ["-n", "2", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1", try mixerDistBinary(),
      "train", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
      "--train-examples", "256", "--val-examples", "32", "--batch", "16", "--steps", "100000", "--threads", "1",
      "--log-every", "1", "--run-dir", dir.path, "--timeout", "3"]
    process.environment = childEnvironment(["MIXER_MPI_THREAD_LEVEL": "serialized"])
    let errors = dir.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
    process.standardError = try FileHandle(forWritingTo: errors)
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    // rank 1: the mixer-dist process of this run whose environment says so
    var frozen: Int32?
    let deadline = Date().addingTimeInterval(60)
    while frozen == nil && Date() < deadline && process.isRunning {
      let metrics = (try? String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
      if metrics.contains("\"step\":5,") {
        for pid in ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap({ Int32($0) }) {
          guard (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("mixer-dist") == true,
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
            String(decoding: cmdline, as: UTF8.self).contains(dir.path),
            let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
            String(decoding: environ, as: UTF8.self).split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=1")
          else { continue }
          kill(pid, SIGSTOP)
          frozen = pid
        }
      }
      Thread.sleep(forTimeInterval: 0.02)
    }
    XCTAssertNotNil(frozen, "rank 1 was not found")
    let stopped = Date()
    while process.isRunning && Date().timeIntervalSince(stopped) < 60 { Thread.sleep(forTimeInterval: 0.1) }
    XCTAssertFalse(process.isRunning, "the job hung")
    let seconds = Date().timeIntervalSince(stopped)
    let text = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
    XCTAssertNotEqual(process.terminationStatus, 0)
    XCTAssertLessThan(seconds, 30, text)
    XCTAssertTrue(text.contains("mixer-dist: rank 0: watchdog:"), text)
    XCTAssertTrue(text.contains("mixer-dist: rank 0: another thread is still inside an MPI call (MPI_THREAD_SERIALIZED)"), text)
    // rank 0 never entered MPI_Abort (rank 1 may: mpirun sends SIGCONT before its SIGTERM, and
    // rank 1's own watchdog can fire in between)
    XCTAssertFalse(text.contains("MPI_ABORT was invoked on rank 0 "), text)
  }
}
