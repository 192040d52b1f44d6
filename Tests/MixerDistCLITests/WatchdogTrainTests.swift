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
}
