// What a run leaves for a person: metrics.jsonl, a TensorBoard event file with the train and eval
// scalars, and `mixer-dist report` turning the folder into a self-contained HTML page.

import MixerTestSupport
import XCTest

final class RunFolderTests: XCTestCase {
  func testRunFolderHasTensorBoardEventsAndAReport() throws {
    let dir = try makeTemporaryDirectory(self)
    let train = try mixerDist([
      "train", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
      "--train-examples", "128", "--val-examples", "32", "--batch", "16", "--steps", "6", "--log-every", "2",
      "--eval-every", "3", "--threads", "1", "--run-dir", dir.path,
    ])
    XCTAssertEqual(train.status, 0, train.stderr)
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
    let events = try XCTUnwrap(names.first { $0.hasPrefix("events.out.tfevents.") })
    let bytes = try Data(contentsOf: dir.appendingPathComponent(events))
    XCTAssertGreaterThan(bytes.count, 200)
    for tag in ["train/loss", "train/lr", "train/images_per_second", "eval/top1", "eval/top5", "eval/loss"] {
      XCTAssertNotNil(bytes.range(of: Data(tag.utf8)), "event file lacks \(tag)")
    }
    let report = try mixerDist(["report", dir.path])
    XCTAssertEqual(report.status, 0, report.stderr)
    let html = try String(contentsOf: dir.appendingPathComponent("report.html"), encoding: .utf8)
    XCTAssertGreaterThanOrEqual(html.components(separatedBy: "<svg").count - 1, 4)
    XCTAssertTrue(html.contains("model.hidden"), "the config table")
    let missing = try mixerDist(["report", dir.appendingPathComponent("nope").path])
    XCTAssertNotEqual(missing.status, 0)
  }
}
