// `mixer-dist study`: every variant trains with the same data, budget and seed, and the table
// (parameters, FLOPs, images/s, accuracy) is written as Markdown and JSON.

import MixerTestSupport
import XCTest

final class StudyTests: XCTestCase {
  func testStudyWritesATable() throws {
    let dir = try makeTemporaryDirectory(self)
    let spec = dir.appendingPathComponent("study.yaml")
    try """
      output: \(dir.appendingPathComponent("out").path)
      common: {hidden: 32, blocks: 2, tokens-mlp: 8, channels-mlp: 32, patch: 4, steps: 3, batch: 16,
               train-examples: 64, val-examples: 16, threads: 1}
      variants:
        - name: mixer
        - name: cnn-stem
          flags: {stem: cnn}
        - name: alternating
          flags: {block-pattern: "alternate:mixer,attention", heads: 2}
        - name: conv
          flags: {block-pattern: "every:2:conv"}
      """.write(to: spec, atomically: true, encoding: .utf8)
    let result = try mixerDist(["study", spec.path], timeout: 120)
    XCTAssertEqual(result.status, 0, result.stderr)
    let json = try JSONSerialization.jsonObject(
      with: Data(contentsOf: dir.appendingPathComponent("out/study.json"))) as! [[String: Any]]
    XCTAssertEqual(json.map { $0["name"] as? String }, ["mixer", "cnn-stem", "alternating", "conv"])
    let parameters = json.map { $0["parameters"] as! Int }
    XCTAssertEqual(Set(parameters).count, 4, "the variants differ in size: \(parameters)")
    let markdown = try String(contentsOf: dir.appendingPathComponent("out/study.md"), encoding: .utf8)
    XCTAssertTrue(markdown.contains("| alternating |"), markdown)
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/cnn-stem/metrics.jsonl").path))
    // a bad variant is refused before anything trains
    try "variants:\n  - name: x\n    flags: {block-pattern: nope}\n".write(to: spec, atomically: true, encoding: .utf8)
    let bad = try mixerDist(["study", spec.path])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("unknown block kind 'nope'"), bad.stderr)
  }
}
