// Ctrl-C, SIGTERM and preemption (issue 16): the job finishes its step, saves a checkpoint, says
// so and exits with status 75, which launch/resilient and the Slurm script read as "resume me";
// the resumed run ends bit-identical to an uninterrupted one. A second Ctrl-C exits at once.

import Foundation
import MixerTestSupport
import XCTest

final class InterruptTests: XCTestCase {
  let small = [
    "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
    "--train-examples", "512", "--val-examples", "32", "--batch", "16", "--threads", "1", "--log-every", "5",
    "--eval-every", "0",
  ]

  func testSIGTERMSavesAndResumeIsBitIdentical() throws {
    let dir = try makeTemporaryDirectory(self)
    // 10,000 steps take 5-7 s here (2,500 took 1.2-2 s and once ended before the signal at 1.5 s)
    let steps = ["--steps", "10000"]
    let straight = try mixerDist(["train"] + small + steps + ["--run-dir", dir.appendingPathComponent("straight").path])
    XCTAssertEqual(straight.status, 0, straight.stderr)

    let run = dir.appendingPathComponent("run")
    let stopped = try mixerDist(["train"] + small + steps + ["--run-dir", run.path], signals: [(1.5, SIGTERM)])
    XCTAssertEqual(stopped.status, 75, stopped.stdout + stopped.stderr)
    XCTAssertTrue(stopped.stdout.contains("SIGTERM: stopped after step"), stopped.stdout)
    XCTAssertTrue(stopped.stdout.contains("continue with --resume auto (exit status 75)"), stopped.stdout)
    let checkpoints = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
    XCTAssertEqual(checkpoints.filter { $0.hasPrefix("step-") }.count, 1, "\(checkpoints)")
    XCTAssertFalse(checkpoints.contains("step-00010000"), "stopped part-way: \(checkpoints)")

    let resumed = try mixerDist(["train"] + small + steps + ["--run-dir", run.path, "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    let a = try Data(contentsOf: run.appendingPathComponent("final-parameters.f32"))
    let b = try Data(contentsOf: dir.appendingPathComponent("straight/final-parameters.f32"))
    XCTAssertEqual(a, b, "stopped by SIGTERM and resumed: bit-identical to the uninterrupted run")
  }

  func testSecondCtrlCExitsAtOnce() throws {
    let dir = try makeTemporaryDirectory(self)
    // the tiny preset at batch 256: a step of about half a second, so the second Ctrl-C comes
    // while the first is still waiting for its step to end
    let result = try mixerDist(
      ["train", "--batch", "256", "--train-examples", "2048", "--val-examples", "32", "--threads", "1",
       "--steps", "100000", "--run-dir", dir.path],
      timeout: 60, signals: [(3, SIGINT), (3.05, SIGINT)])
    XCTAssertFalse(result.timedOut)
    XCTAssertEqual(result.status, 130, result.stdout + result.stderr)
  }
}
