// Asynchronous checkpoints (`--save-mode async`, the default; issue 29): a process killed while
// its background save is being written leaves the previous checkpoint as the newest valid one, a
// run resumed from a background-written checkpoint ends with the bytes of an uninterrupted
// synchronous run (one process, and 2 ranks with ZeRO-1), and a background write that fails (as a
// full disk would: the hidden --fail-in-save-at-step fault) stops training with the last
// completed step saved, on every rank.

import Foundation
import MixerTestSupport
import XCTest

final class BackgroundSaveTests: XCTestCase {
  let args = ["train"] + failureTestModel + ["--steps", "20", "--save-every", "5", "--seed", "5"]

  /// The final parameters of an uninterrupted synchronous run of `args` (+ `extra`).
  func synchronousParameters(ranks: Int = 1, _ extra: [String] = []) throws -> Data {
    let dir = try makeTemporaryDirectory(self)
    let command = args + extra + ["--save-mode", "sync", "--run-dir", dir.path]
    let result = ranks == 1 ? try mixerDist(command) : try mpirunMixerDist(ranks: ranks, command)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    return try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))
  }

  /// SIGKILL on the writer thread once step 10's files are written, before the commit: step 5 is
  /// the newest checkpoint, `--resume auto` takes it (skipping the `.partial` folder), and the
  /// resumed run ends with the synchronous run's bytes.
  func testKillDuringBackgroundWriteKeepsThePreviousCheckpoint() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("checkpoints")
    let killed = try mixerDist(args + ["--run-dir", dir.path, "--kill-in-save-at-step", "10"])
    XCTAssertEqual(killed.status, SIGKILL, killed.stdout + killed.stderr)
    XCTAssertEqual(checkpointContents(ck), [".partial-step-00000010", "step-00000005"])

    let resumed = try mixerDist(args + ["--run-dir", dir.path, "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from \(ck.path)/step-00000005 (step 5"), resumed.stdout)
    XCTAssertEqual(checkpointContents(ck), ["step-00000005", "step-00000010", "step-00000015", "step-00000020"])
    let final = try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))
    XCTAssertEqual(final, try synchronousParameters())
  }

  /// Every checkpoint of an async run holds the bytes of the sync run's (the later saves reuse
  /// the first one's buffers, overwritten in place).
  func testAsyncAndSyncSavesWriteTheSameFiles() throws {
    var folders: [URL] = []
    for mode in ["async", "sync"] {
      let dir = try makeTemporaryDirectory(self, mode)
      let result = try mixerDist(args + ["--run-dir", dir.path, "--save-mode", mode])
      XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
      folders.append(dir.appendingPathComponent("checkpoints"))
    }
    for step in ["step-00000005", "step-00000010", "step-00000015", "step-00000020"] {
      for file in ["params.safetensors", "optimizer-rank-00000.safetensors"] {
        let a = try Data(contentsOf: folders[0].appendingPathComponent("\(step)/\(file)"))
        let b = try Data(contentsOf: folders[1].appendingPathComponent("\(step)/\(file)"))
        XCTAssertEqual(a, b, "\(step)/\(file)")
      }
    }
  }

  /// Two ranks with ZeRO-1 (each writes its own optimizer shard in the background): killed in
  /// step 10's background write, resumed, the same bytes as the synchronous 2-rank run.
  func testTwoRanksResumeFromABackgroundCheckpoint() throws {
    let zero = ["--zero", "1", "--timeout", "60"]
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("checkpoints")
    let killed = try mpirunMixerDist(ranks: 2, args + zero + ["--run-dir", dir.path, "--kill-in-save-at-step", "10"])
    XCTAssertNotEqual(killed.status, 0, killed.stdout + killed.stderr)
    XCTAssertEqual(checkpointContents(ck).filter { $0.hasPrefix("step-") }, ["step-00000005"])
    let resumed = try mpirunMixerDist(ranks: 2, args + zero + ["--run-dir", dir.path, "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("step-00000005 (step 5, saved by 2 rank(s))"), resumed.stdout)
    let final = try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))
    XCTAssertEqual(final, try synchronousParameters(ranks: 2, zero))
  }

  /// Rank 1's background write of step 10 fails: both ranks learn it at the same step boundary,
  /// save the last completed step together (a complete 2-rank checkpoint) and stop with status 1;
  /// rank 1 names the cause, rank 0 names rank 1; no `.partial` folder is left.
  func testFailedBackgroundWriteStopsWithACheckpoint() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("checkpoints")
    let result = try mpirunMixerDist(ranks: 2, args + [
      "--run-dir", dir.path, "--timeout", "60", "--fail-in-save-at-step", "10", "--fail-rank", "1",
    ])
    let output = result.stdout + result.stderr
    XCTAssertEqual(result.status, 1, output)
    XCTAssertTrue(output.contains("the checkpoint of step 10 was not saved (written in the background)"), output)
    XCTAssertTrue(output.contains("no space left on the device"), output)
    XCTAssertTrue(output.contains("rank 1 could not write its part"), output)
    let saved = try XCTUnwrap(checkpointContents(ck).last)
    let step = try XCTUnwrap(Int(saved.dropFirst("step-".count)))
    XCTAssertGreaterThan(step, 10)
    XCTAssertEqual(checkpointContents(ck), ["step-00000005", saved])
    XCTAssertTrue(output.contains("saved the last completed step \(step) as \(ck.path)/\(saved)"), output)
    let inspect = try mixerDist(["inspect", ck.appendingPathComponent(saved).path])
    XCTAssertTrue(inspect.stdout.contains("saved by 2 rank(s)"), inspect.stdout)
  }
}
