// tools/scaling_model.py, the fitter of launch/scaling's measurements: given runs generated from a
// known model (per-message latency, link efficiency, unshaped bandwidth, hidden fraction), it must
// find those parameters again and predict every run; given runs it cannot fit, it must say why in
// one line. (The sweep itself, launch/scaling, takes minutes and is not part of the suite.)

import Foundation
import MixerDistributed
import MixerTestSupport
import XCTest

final class ScalingModelTests: XCTestCase {
  let script = packageRoot.appendingPathComponent("tools/scaling_model.py").path

  /// One bench JSON line as launch/scaling writes it, from the model with the given parameters.
  func syntheticRun(
    hosts: Int, rate: String, overlap: Bool, zero: Int, buckets: Int, gradientBytes: Int,
    alpha: Double, eta: Double, unshapedBits: Double, hidden: Double
  ) -> [String: Any] {
    let batch = 32
    let perImage = 0.004 * Double(hosts) * (overlap ? 1.1 : 1)  // compute slows as hosts share cores
    let compute = perImage * Double(batch)
    let backward = 0.6 * compute
    let rates = ["100mbit": 1e8, "1gbit": 1e9]
    let bandwidth = rates[rate].map { $0 * eta } ?? unshapedBits
    let volume = 2 * Double(hosts - 1) / Double(hosts) * Double(gradientBytes) * 8
    let total = hosts == 1 ? 0 : Double(2 * (hosts - 1) * buckets) * alpha + volume / bandwidth
    let gather = zero == 1 && hosts > 1 ? Double(hosts - 1) * alpha + volume / 2 / bandwidth : 0
    let started = overlap ? buckets - 1 : 0
    let share = Double(started) / Double(buckets)
    let exposed = hosts == 1 ? 0 : overlap ? (total - gather) - min(share * (total - gather), hidden * backward) + gather : total
    let step = compute + exposed
    return [
      "hosts": hosts, "rate": rate, "overlap": overlap, "zero": zero, "grad_comm": "fp32",
      "buckets": buckets, "gradient_bytes": gradientBytes, "batch": batch, "ranks": hosts,
      "seconds_per_step": step, "exposed_seconds": exposed, "all_gather_seconds": gather,
      "backward_seconds": backward + exposed - gather, "communication_seconds": total,
      "images_per_second": Double(batch * hosts) / step, "buckets_started_before_backward_end": started,
    ]
  }

  func write(_ runs: [[String: Any]], to url: URL) throws {
    let lines = try runs.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
    try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
  }

  func testFitRecoversTheParametersOfItsOwnModel() throws {
    let python = try XCTUnwrap(which("python3"), "python3 is needed (launch/test installs numpy)")
    let (alpha, eta, unshaped, hidden) = (2e-4, 0.9, 4e9, 0.5)
    var runs: [[String: Any]] = [
      syntheticRun(hosts: 1, rate: "none", overlap: true, zero: 0, buckets: 5, gradientBytes: 2_279_976,
                   alpha: alpha, eta: eta, unshapedBits: unshaped, hidden: hidden)
    ]
    for hosts in [2, 4] {
      for rate in ["100mbit", "1gbit", "none"] {
        for overlap in [true, false] {
          for zero in [0, 1] {
            for buckets in [5, 70] {
              runs.append(syntheticRun(
                hosts: hosts, rate: rate, overlap: overlap, zero: zero, buckets: buckets, gradientBytes: 2_279_976,
                alpha: alpha, eta: eta, unshapedBits: unshaped, hidden: hidden))
            }
          }
        }
      }
    }
    let file = try makeTemporaryDirectory(self).appendingPathComponent("runs.jsonl")
    try write(runs, to: file)
    let result = try MixerDistCLITests.run(python, [script, file.path, "--json"], timeout: 60)
    XCTAssertEqual(result.status, 0, result.stderr)
    let fitted = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    let value = { (key: String) in fitted[key] as? Double ?? .nan }
    XCTAssertEqual(value("alpha"), alpha, accuracy: alpha * 1e-3, result.stdout)
    XCTAssertEqual(value("eta"), eta, accuracy: eta * 1e-3, result.stdout)
    XCTAssertEqual(value("unshaped_bits"), unshaped, accuracy: unshaped * 1e-3, result.stdout)
    XCTAssertEqual(value("hidden"), hidden, accuracy: 0.011, result.stdout)
    XCTAssertLessThan(value("worst_error"), 0.005, result.stdout)
    XCTAssertEqual((fitted["predicted"] as? [Double])?.count, runs.count)

    // the full report: the prediction table and the B/16 table, and an SVG
    let svg = file.deletingLastPathComponent().appendingPathComponent("scaling.svg")
    let report = try MixerDistCLITests.run(python, [script, file.path, "--svg", svg.path], timeout: 60)
    XCTAssertEqual(report.status, 0, report.stderr)
    XCTAssertTrue(report.stdout.contains("| 512 | 8 |"), report.stdout)
    XCTAssertTrue(try String(contentsOf: svg, encoding: .utf8).hasPrefix("<svg"))
  }

  /// Six synthetic runs (1, 2 and 4 hosts at 1 Gbit/s, with and without overlap) of B/16's
  /// gradient size class, written as a runs file.
  func writeB16LikeRuns() throws -> URL {
    var runs: [[String: Any]] = []
    for hosts in [1, 2, 4] {
      for overlap in [true, false] {
        runs.append(syntheticRun(
          hosts: hosts, rate: "1gbit", overlap: overlap, zero: 0, buckets: 5, gradientBytes: 2_279_976,
          alpha: 1e-5, eta: 0.65, unshapedBits: 4e9, hidden: 0.2))
      }
    }
    let file = try makeTemporaryDirectory(self).appendingPathComponent("runs.jsonl")
    try write(runs, to: file)
    return file
  }

  /// The B/16 prediction with the default bucket rule (its bucket column the same as
  /// BucketSizeRule's) beats the old fixed default (457 buckets) at every node count and link.
  func testDefaultBucketRuleImprovesTheB16Prediction() throws {
    let python = try XCTUnwrap(which("python3"), "python3 is needed (launch/test installs numpy)")
    let file = try writeB16LikeRuns()
    let report = try MixerDistCLITests.run(python, [script, file.path], timeout: 60)
    XCTAssertEqual(report.status, 0, report.stderr)
    // the tables of the assumed 1,000 images/s node: rule first, then the old default
    let tables = report.stdout.components(separatedBy: "\n\n").filter { $0.contains("a node at 1,000 images/s") }
    XCTAssertEqual(tables.count, 2, report.stdout)
    func rows(_ heading: String) -> [[String]] {
      report.stdout.components(separatedBy: heading).dropFirst().first.map { text in
        text.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| nodes") }.prefix(7)
          .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
      } ?? []
    }
    let rule = rows("the default rule's buckets"), old = rows("457 buckets (the old default")
    XCTAssertEqual(rule.count, 7, report.stdout)
    XCTAssertEqual(old.count, 7, report.stdout)
    let b16 = 59_880_472
    for (r, o) in zip(rule, old) {
      let nodes = Int(r[0])!
      XCTAssertEqual(Int(r[2]), BucketSizeRule.buckets(parameterCount: b16, worldSize: nodes), "nodes \(nodes)")
      XCTAssertEqual(o[2], "457")
      for column in 3...5 {
        let value = { (cell: String) in Double(cell.split(separator: " ")[0].replacingOccurrences(of: ",", with: ""))! }
        XCTAssertGreaterThan(value(r[column]), value(o[column]), "nodes \(nodes), column \(column): \(r) vs \(o)")
      }
    }
  }

  /// `--recipe-images N`: a recipe's hours are N over the images/s the B/16 table predicts on
  /// that many nodes, and its node-hours those hours times the nodes.
  func testRecipeCostIsItsImagesOverThePredictedRate() throws {
    let python = try XCTUnwrap(which("python3"), "python3 is needed (launch/test installs numpy)")
    let file = try writeB16LikeRuns()
    let images = 380.5e6
    let report = try MixerDistCLITests.run(
      python, [script, file.path, "--recipe-images", "380.5e6", "--recipe-label", "the 300-epoch run"], timeout: 60)
    XCTAssertEqual(report.status, 0, report.stderr)
    func rows(after heading: String) -> [[String]] {
      report.stdout.components(separatedBy: heading).dropFirst().first.map { text in
        text.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| nodes") }.prefix(7)
          .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
      } ?? []
    }
    let number = { (cell: Substring) in Double(cell.replacingOccurrences(of: ",", with: ""))! }
    let rates = rows(after: "a node at 1,000 images/s (assumed), the default rule's buckets")
    let costs = rows(after: "Cost of the 300-epoch run (380,500,000 training images)")
    XCTAssertEqual(rates.count, 7, report.stdout)
    XCTAssertEqual(costs.count, 7, report.stdout)
    for (rate, cost) in zip(rates, costs) {
      let nodes = Double(rate[0])!
      XCTAssertEqual(cost[0], rate[0])
      for column in 1...3 {
        let cell = cost[column].split(separator: " ")
        let hours = number(cell[0]), nodeHours = number(cell[1].dropFirst().dropLast())
        let perSecond = number(rate[column + 2].split(separator: " ")[0])
        XCTAssertEqual(hours, images / perSecond / 3600, accuracy: 0.06 + hours * 0.005, "\(rate) \(cost)")
        XCTAssertEqual(nodeHours, hours * nodes, accuracy: 0.5 + nodes * 0.05 + nodeHours * 0.005, "\(rate) \(cost)")
      }
    }
  }

  func testRunsWithoutAPlainRunAreRefusedInOneLine() throws {
    let python = try XCTUnwrap(which("python3"))
    let file = try makeTemporaryDirectory(self).appendingPathComponent("runs.jsonl")
    try write([syntheticRun(hosts: 2, rate: "1gbit", overlap: true, zero: 0, buckets: 5, gradientBytes: 1000,
                            alpha: 1e-4, eta: 1, unshapedBits: 1e9, hidden: 0.5)], to: file)
    let result = try MixerDistCLITests.run(python, [script, file.path], timeout: 60)
    XCTAssertNotEqual(result.status, 0)
    XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
    XCTAssertTrue(result.stderr.contains("no run without overlap"), result.stderr)
  }
}
