// `mixer-dist eval`: the same totals alone and over 3 ranks on a validation set that does not
// divide by 3 (no sample counted twice or missed); bench --inference prints its figures.

import MixerTestSupport
import XCTest

final class EvalTests: XCTestCase {
  func testEvalTotalsAreExactOverRanks() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir, checkpoint: ck, steps: 8, validationExamples: 67)
    XCTAssertEqual(train.status, 0, train.stderr)
    let alone = try mixerDist(["eval", ck.path, "--json", "--batch", "10"])
    XCTAssertEqual(alone.status, 0, alone.stderr)
    let spread = try mpirunMixerDist(ranks: 3, ["eval", ck.path, "--json", "--batch", "10", "--threads", "1"])
    XCTAssertEqual(spread.status, 0, spread.stderr)
    func parse(_ text: String) throws -> [String: Double] {
      let line = text.split(separator: "\n").last { $0.hasPrefix("{") }!
      return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Double]
    }
    let a = try parse(alone.stdout), b = try parse(spread.stdout)
    XCTAssertEqual(a["count"], 67)
    XCTAssertEqual(b["count"], 67)
    XCTAssertEqual(a["top1"], b["top1"])
    XCTAssertEqual(a["top5"], b["top5"])
    XCTAssertEqual(a["loss"]!, b["loss"]!, accuracy: 1e-9)
    // the run's own final evaluation agrees
    let metrics = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    let evalRecord = try JSONSerialization.jsonObject(with: Data(metrics.split(separator: "\n").last!.utf8)) as! [String: Any]
    XCTAssertEqual(evalRecord["val_top1"] as? Double ?? -1, a["top1"]!, accuracy: 1e-12)
    XCTAssertEqual(evalRecord["val_loss"] as? Double ?? -1, a["loss"]!, accuracy: 1e-9)
  }

  func testEvalErrors() throws {
    let missing = try mixerDist(["eval", "/nonexistent/ck"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("no valid checkpoint"), missing.stderr)
  }

  func testInferenceBenchmark() throws {
    let result = try mixerDist(["bench", "--inference", "--preset", "tiny", "--steps", "2", "--threads", "1"])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stdout.contains("batch-1 latency"), result.stdout)
    XCTAssertTrue(result.stdout.contains("\"images_per_second\""), result.stdout)
  }
}
