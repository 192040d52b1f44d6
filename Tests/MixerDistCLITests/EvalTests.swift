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
    func parse(_ text: String) throws -> ([String: Double], [[Int]]) {
      let line = text.split(separator: "\n").last { $0.hasPrefix("{") }!
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
      return (object.compactMapValues { $0 as? Double }, object["confusion"] as? [[Int]] ?? [])
    }
    let (a, confusionA) = try parse(alone.stdout), (b, confusionB) = try parse(spread.stdout)
    // the confusion matrix: exact over ranks, one row per class, its diagonal the top-1 hits
    XCTAssertEqual(confusionA, confusionB)
    XCTAssertEqual(confusionA.count, 10)
    XCTAssertEqual(confusionA.joined().reduce(0, +), 67)
    XCTAssertEqual(Double((0..<10).map { confusionA[$0][$0] }.reduce(0, +)) / 67, a["top1"]!, accuracy: 1e-12)
    XCTAssertEqual(a["count"], 67)
    XCTAssertEqual(b["count"], 67)
    XCTAssertEqual(a["top1"], b["top1"])
    XCTAssertEqual(a["top5"], b["top5"])
    // the loss sums per-image losses of logits that are the same only to fp32 rounding: OpenBLAS's
    // blocking (so its bits) depends on the batch's row count and the thread count
    XCTAssertEqual(a["loss"]!, b["loss"]!, accuracy: 1e-6 * a["loss"]!)
    // the run's own final evaluation agrees
    let metrics = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    let evalRecord = try JSONSerialization.jsonObject(with: Data(metrics.split(separator: "\n").last!.utf8)) as! [String: Any]
    XCTAssertEqual(evalRecord["val_top1"] as? Double ?? -1, a["top1"]!, accuracy: 1e-12)
    XCTAssertEqual(evalRecord["val_loss"] as? Double ?? -1, a["loss"]!, accuracy: 1e-6 * a["loss"]!)
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
