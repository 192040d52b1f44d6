// `train --trace DIR` (issue 29): on 3 ranks, one slowed on purpose (the hidden --slow-rank/--slow-ms
// fault: 30 ms of extra work per step), every rank's timeline is written and merged into a
// Chrome trace-event file that passes a check of the format (read here with JSONSerialization,
// independently of the product's own reader), holds the spans the issue lists, and `trace
// summary` names the slowed rank; without the slowed rank it names none, and tracing changes no
// bit of the weights. `trace merge` rebuilds trace.json from the ranks' files.

import Foundation
import MixerTestSupport
import XCTest

final class TraceTests: XCTestCase {
  let args = ["train"] + tinyModelFlags + [
    "--blocks", "2", "--train-examples", "256", "--val-examples", "24", "--batch", "24", "--threads", "1",
    "--steps", "30", "--eval-every", "10", "--save-every", "10", "--timeout", "60",
  ]

  func run(_ dir: URL, trace: Bool, slow: Bool) throws -> RunResult {
    var command = args + ["--run-dir", dir.appendingPathComponent("run").path]
    if trace { command += ["--trace", dir.appendingPathComponent("trace").path] }
    if slow { command += ["--slow-rank", "1", "--slow-ms", "30"] }
    let result = try mpirunMixerDist(ranks: 3, command)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    return result
  }

  /// The trace-event format's rules for what the file holds: a `traceEvents` list of complete
  /// ("X") events with name, cat, pid, tid, ts and dur >= 0, and metadata ("M") events with args.
  func checkFormat(_ url: URL) throws -> [[String: Any]] {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
    let events = try XCTUnwrap(object?["traceEvents"] as? [[String: Any]], "no traceEvents list")
    for event in events {
      let phase = try XCTUnwrap(event["ph"] as? String)
      XCTAssertNotNil(event["name"] as? String, "\(event)")
      XCTAssertNotNil(event["pid"] as? Int, "\(event)")
      XCTAssertNotNil(event["tid"] as? Int, "\(event)")
      if phase == "X" {
        XCTAssertNotNil(event["cat"] as? String, "\(event)")
        XCTAssertGreaterThanOrEqual(event["ts"] as? Double ?? -1, 0, "\(event)")
        XCTAssertGreaterThanOrEqual(event["dur"] as? Double ?? -1, 0, "\(event)")
      } else {
        XCTAssertEqual(phase, "M", "\(event)")
        XCTAssertNotNil(event["args"] as? [String: Any], "\(event)")
      }
    }
    return events
  }

  func testTraceNamesTheSlowRank() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try run(dir, trace: true, slow: true)
    let merged = dir.appendingPathComponent("trace/trace.json")
    XCTAssertTrue(result.stdout.contains("trace: \(merged.path) (3 rank(s)"), result.stdout)
    let events = try checkFormat(merged)
    XCTAssertEqual(Set(events.compactMap { $0["pid"] as? Int }), [0, 1, 2])
    let host = ProcessInfo.processInfo.hostName
    for rank in 0..<3 {
      XCTAssertTrue(
        events.contains { $0["name"] as? String == "process_name" && $0["pid"] as? Int == rank
          && (($0["args"] as? [String: Any])?["name"] as? String) == "rank \(rank) (\(host))" }, "rank \(rank)'s name")
    }
    let names = events.compactMap { $0["name"] as? String }
    for expected in [
      "block 0 forward", "block 1 backward", "bucket 1/", "wait for the gradient buckets", "wait for the batch",
      "clip and optimizer", "checkpoint copy (step 10)", "checkpoint write (step 10)", "evaluation (step 10)", "step 30",
    ] {
      XCTAssertTrue(names.contains { $0.hasPrefix(expected) }, "no '\(expected)' span")
    }
    XCTAssertEqual(events.filter { $0["cat"] as? String == "step" }.count, 3 * 30)

    let summary = try mixerDist(["trace", "summary", merged.path])
    XCTAssertEqual(summary.status, 0, summary.stderr)
    XCTAssertTrue(summary.stdout.contains("straggler: rank 1 (\(host))"), summary.stdout)
    XCTAssertFalse(summary.stdout.contains("straggler: rank 0"), summary.stdout)
    XCTAssertFalse(summary.stdout.contains("straggler: rank 2"), summary.stdout)

    // merged again from the ranks' files: the same events
    try FileManager.default.removeItem(at: merged)
    let merge = try mixerDist(["trace", "merge", dir.appendingPathComponent("trace").path])
    XCTAssertEqual(merge.status, 0, merge.stderr)
    XCTAssertEqual(try checkFormat(merged).count, events.count)
  }

  func testWithoutASlowRankNoneIsNamedAndTheBitsDoNotChange() throws {
    let traced = try makeTemporaryDirectory(self, "traced")
    _ = try run(traced, trace: true, slow: false)
    let summary = try mixerDist(["trace", "summary", traced.appendingPathComponent("trace").path])
    XCTAssertEqual(summary.status, 0, summary.stderr)
    XCTAssertTrue(summary.stdout.contains("stragglers: none"), summary.stdout)
    let plain = try makeTemporaryDirectory(self, "plain")
    _ = try run(plain, trace: false, slow: false)
    XCTAssertEqual(
      try Data(contentsOf: traced.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: plain.appendingPathComponent("run/final-parameters.f32")))
  }
}
