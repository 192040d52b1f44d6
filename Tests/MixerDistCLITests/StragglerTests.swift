// A slow rank is named on the console (issue 29): under real mpirun with 3 ranks, rank 1 sleeps
// 30 ms in every step's compute (the hidden --slow-rank/--slow-ms fault); rank 0 names it from the
// per-rank times the step's scalar all-reduce already carries. The same run without the fault
// names no rank, and the slowed rank does not change the weights.

import Foundation
import MixerTestSupport
import XCTest

final class StragglerTests: XCTestCase {
  func testSlowedRankIsNamedAndTheWeightsDoNotChange() throws {
    let arguments = ["train"] + tinyModelFlags + [
      "--train-examples", "240", "--val-examples", "24", "--batch", "24", "--steps", "40", "--warmup", "4",
      "--log-every", "5", "--eval-every", "0", "--threads", "1",
    ]
    let slowed = try makeTemporaryDirectory(self), plain = try makeTemporaryDirectory(self)
    let slow = try mpirunMixerDist(ranks: 3, arguments + ["--run-dir", slowed.path, "--slow-rank", "1", "--slow-ms", "30"])
    XCTAssertEqual(slow.status, 0, slow.stderr)
    let named = slow.stdout.split(separator: "\n").filter { $0.contains(" is slow: ") }
    XCTAssertEqual(named.count, 1, slow.stdout)
    XCTAssertTrue(named.first?.hasPrefix("warning: rank 1 (host \(ProcessInfo.processInfo.hostName)) is slow: compute 3") == true, slow.stdout)
    let normal = try mpirunMixerDist(ranks: 3, arguments + ["--run-dir", plain.path])
    XCTAssertEqual(normal.status, 0, normal.stderr)
    XCTAssertFalse(normal.stdout.contains(" is slow: "), normal.stdout)
    XCTAssertEqual(
      try Data(contentsOf: slowed.appendingPathComponent("final-parameters.f32")),
      try Data(contentsOf: plain.appendingPathComponent("final-parameters.f32")))
  }
}
