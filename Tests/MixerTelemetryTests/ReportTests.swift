// The HTML run report: plots, summary and flattened configuration from a synthetic run folder;
// escaping; gaps for nulls; a single point; no evaluations; and the errors that name the file or
// the line.

import Foundation
import MixerTestSupport
import XCTest
@testable import MixerTelemetry

final class ReportTests: XCTestCase {
  /// A run folder with `metrics` as metrics.jsonl and `config` (if any) as config.json.
  func makeRun(metrics: String?, config: String? = ReportTests.defaultConfig) throws -> URL {
    let folder = try makeTemporaryDirectory(self).appendingPathComponent("run-1")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    if let metrics {
      try Data(metrics.utf8).write(to: folder.appendingPathComponent("metrics.jsonl"))
    }
    if let config {
      try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
    }
    return folder
  }

  static let defaultConfig = """
    {
      "data" : "<script>alert('x')</script>",
      "learningRate" : 0.002,
      "model" : { "hidden" : 128, "blocks" : 4, "gelu" : "tanh", "epsilon" : 1e-06 },
      "optimizer" : { "kind" : "adamw", "betas" : [0.9, 0.999] },
      "steps" : 100,
      "useZero" : false
    }
    """

  static let fullMetrics = """
    {"kind":"train","step":25,"loss":2.1,"lr":0.0005,"grad_norm":0.4,"images_per_second":410.2,"epoch":0.06,"seconds":7.8}
    {"kind":"train","step":50,"loss":null,"lr":0.001,"grad_norm":null,"images_per_second":415.0,"epoch":0.12,"seconds":15.5}
    {"kind":"train","step":75,"loss":1.6,"lr":0.0015,"grad_norm":0.3,"images_per_second":420.9,"epoch":0.18,"seconds":23.1}
    {"kind":"eval","step":75,"val_top1":0.41,"val_top5":0.88,"val_loss":1.7,"val_count":5000}

    {"kind":"train","step":100,"loss":1.4,"lr":0.002,"grad_norm":0.2,"images_per_second":418.0,"epoch":0.25,"seconds":30.9}
    {"kind":"eval","step":100,"val_top1":0.52,"val_top5":0.93,"val_loss":1.4,"val_count":5000}
    """

  /// A segmentation run: the accuracy plot and the summary show mIoU and pixel accuracy.
  func testSegmentationRunReportsMeanIoU() throws {
    let run = try makeRun(metrics: """
      {"kind":"train","step":50,"loss":0.9,"lr":0.001,"images_per_second":400,"seconds":10}
      {"kind":"eval","step":50,"val_miou":0.31,"val_pixel_accuracy":0.87,"val_loss":0.5,"val_count":100,"val_iou/background":0.9}
      {"kind":"train","step":100,"loss":0.5,"lr":0.002,"images_per_second":410,"seconds":20}
      {"kind":"eval","step":100,"val_miou":0.42,"val_pixel_accuracy":0.9,"val_loss":0.3,"val_count":100,"val_iou/background":0.95}
      """)
    let html = try String(contentsOfFile: try writeReport(runDirectory: run.path), encoding: .utf8)
    XCTAssertTrue(html.contains("Best validation mIoU"), html)
    XCTAssertTrue(html.contains("42.00% (step 100), pixel accuracy 90.00%"), html)
    XCTAssertFalse(html.contains("no finite top-1"))
    XCTAssertTrue(html.contains(">mIoU<") || html.contains("mIoU</text>"), "plot legend")
  }

  /// A run that recorded its head's metrics in config.json: the report names them as recorded,
  /// whatever the keys, and leaves them out of the configuration table.
  func testRecordedMetricsAreDrawnByTheirNames() throws {
    let run = try makeRun(
      metrics: """
        {"kind":"train","step":50,"loss":0.9,"lr":0.001,"images_per_second":400,"seconds":10}
        {"kind":"eval","step":50,"val_a":0.31,"val_b":0.87,"val_loss":0.5,"val_count":100}
        {"kind":"eval","step":100,"val_a":0.42,"val_b":0.9,"val_loss":0.3,"val_count":100}
        """,
      config: """
        {"steps" : 100, "evaluationMetrics" : [{"key" : "val_a", "name" : "alpha"}, {"key" : "val_b", "name" : "beta"}]}
        """)
    let html = try String(contentsOfFile: try writeReport(runDirectory: run.path), encoding: .utf8)
    XCTAssertTrue(html.contains("Best validation alpha"), html)
    XCTAssertTrue(html.contains("42.00% (step 100), beta 90.00%"), html)
    XCTAssertTrue(html.contains(">beta<") || html.contains("beta</text>"), "plot legend")
    XCTAssertFalse(html.contains("top-1"), html)
    XCTAssertFalse(html.contains("evaluationMetrics"), "not a setting: " + html)
  }

  func testReportHasPlotsSummaryAndConfig() throws {
    let run = try makeRun(metrics: Self.fullMetrics)
    let path = try writeReport(runDirectory: run.path)
    XCTAssertEqual(path, run.appendingPathComponent("report.html").path)
    let html = try String(contentsOfFile: path, encoding: .utf8)

    XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)
    for title in ["Loss", "Learning rate", "Validation accuracy", "Throughput"] {
      XCTAssertTrue(html.contains("aria-label=\"\(title)\""), title)
    }
    // configuration, flattened and escaped
    for key in ["model.hidden", "model.blocks", "model.epsilon", "optimizer.kind", "steps"] {
      XCTAssertTrue(html.contains("<th>\(key)</th>"), key)
    }
    XCTAssertTrue(html.contains("<td>128</td>"))
    XCTAssertTrue(html.contains("<td>1e-06</td>"))
    XCTAssertTrue(html.contains("<td>false</td>"), "a JSON bool stays a bool")
    XCTAssertTrue(html.contains("<td>[0.9, 0.999]</td>"))
    XCTAssertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
    XCTAssertFalse(html.contains("<script"), "the page runs no script and escapes the config")
    // summary
    XCTAssertTrue(html.contains("100 of 100"))
    XCTAssertTrue(html.contains("1.4 (step 100)"), "final train loss")
    XCTAssertTrue(html.contains("52.00% (step 100)"), "best top-1")
    XCTAssertTrue(html.contains("top-5 93.00%"))
    XCTAssertTrue(html.contains("31s (30.9 s)"), "total time")
    XCTAssertTrue(html.contains("median 418.0 images/s, last 418.0"))
    XCTAssertTrue(html.contains("(×10⁻³)"), "the learning rate axis shares its power of ten")
    XCTAssertTrue(html.contains("1 (gaps in the loss curve)"))
    XCTAssertTrue(html.contains("4 train, 2 eval"))
    // self-contained: no external resources
    for external in ["<link", "src=", "@import", "url("] {
      XCTAssertFalse(html.contains(external), external)
    }
  }

  func testNullBreaksTheLineIntoTwoPaths() throws {
    let plot = LinePlot(
      title: "Loss", yLabel: "loss",
      series: [
        PlotLine(
          name: "train", color: "#000",
          points: [
            PlotPoint(step: 1, value: 2), PlotPoint(step: 2, value: 1.8),
            PlotPoint(step: 3, value: nil), PlotPoint(step: 4, value: 1.5),
            PlotPoint(step: 5, value: 1.4),
          ])
      ],
      emptyMessage: "none")
    let svg = plot.svg(steps: 0...5)
    let path = try XCTUnwrap(svg.components(separatedBy: "<path d=\"").dropFirst().first)
    let data = String(path.prefix { $0 != "\"" })
    XCTAssertEqual(data.filter { $0 == "M" }.count, 2, data)
    XCTAssertEqual(data.filter { $0 == "L" }.count, 2, data)
    XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 4, "a marker per point")
  }

  func testSinglePointAndNoEvaluations() throws {
    let run = try makeRun(
      metrics: #"{"kind":"train","step":5,"loss":2.3,"lr":1e-4,"images_per_second":90.5,"seconds":7}"#,
      config: nil)
    let html = try String(contentsOfFile: writeReport(runDirectory: run.path), encoding: .utf8)
    XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)
    XCTAssertTrue(html.contains(">no evaluations</text>"))
    XCTAssertFalse(html.contains("top-1 (none)"), "an empty plot has no legend")
    XCTAssertTrue(html.contains("validation (none)"), "the loss legend says validation is missing")
    XCTAssertTrue(html.contains("No config.json in the run folder."))
    XCTAssertTrue(html.contains("<circle"), "a single point shows as a marker")
    XCTAssertFalse(containsNonFiniteNumber(html), "no NaN coordinates from a zero-width range")
  }

  func testOnlyEvaluations() throws {
    let run = try makeRun(metrics: #"{"kind":"eval","step":0,"val_top1":0.1,"val_top5":0.5}"#)
    let html = try String(contentsOfFile: writeReport(runDirectory: run.path), encoding: .utf8)
    XCTAssertTrue(html.contains(">no training records</text>"))
    XCTAssertTrue(html.contains("10.00% (step 0)"))
    XCTAssertFalse(containsNonFiniteNumber(html))
  }

  func testOutputPathOption() throws {
    let run = try makeRun(metrics: Self.fullMetrics)
    let output = run.deletingLastPathComponent().appendingPathComponent("elsewhere.html").path
    XCTAssertEqual(try writeReport(runDirectory: run.path, to: output), output)
    XCTAssertTrue(FileManager.default.fileExists(atPath: output))
    let defaultPath = run.appendingPathComponent("report.html").path
    XCTAssertFalse(FileManager.default.fileExists(atPath: defaultPath))
  }

  func testMissingMetricsFileNamesTheFile() throws {
    let run = try makeRun(metrics: nil)
    XCTAssertThrowsError(try writeReport(runDirectory: run.path)) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains(run.appendingPathComponent("metrics.jsonl").path), message)
    }
    XCTAssertThrowsError(try writeReport(runDirectory: run.appendingPathComponent("nope").path)) {
      XCTAssertTrue("\($0)".contains("no run folder"), "\($0)")
    }
  }

  func testEmptyMetricsFileNamesTheFile() throws {
    let run = try makeRun(metrics: "\n\n")
    XCTAssertThrowsError(try writeReport(runDirectory: run.path)) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains("metrics.jsonl"), message)
      XCTAssertTrue(message.contains("no metrics records"), message)
    }
  }

  func testBadLinesNameTheLine() throws {
    let cases: [(metrics: String, expected: String)] = [
      (#"{"kind":"train","step":1,"loss":2}"# + "\n\n" + #"{"kind":"train","step":2,"loss":"#,
       "line 3 is not JSON"),
      ("{\"kind\":\"train\",\"step\":1}\r\nnot json at all\r\n", "line 2 is not JSON"),
      ("[1, 2]", "line 1 is not a JSON object"),
      ("{\"step\":1}", "line 1 has no string \"kind\""),
      ("{\"kind\":\"train\",\"step\":1.5}", "line 1 has no integer \"step\""),
    ]
    for (metrics, expected) in cases {
      let run = try makeRun(metrics: metrics)
      XCTAssertThrowsError(try writeReport(runDirectory: run.path)) { error in
        let message = "\(error)"
        XCTAssertTrue(message.contains(expected), "expected '\(expected)' in: \(message)")
        XCTAssertTrue(message.contains("metrics.jsonl"), message)
      }
    }
  }

  func testMalformedConfigNamesTheFile() throws {
    let run = try makeRun(metrics: Self.fullMetrics, config: "{ not json")
    XCTAssertThrowsError(try writeReport(runDirectory: run.path)) { error in
      XCTAssertTrue("\(error)".contains("config.json"), "\(error)")
    }
  }

  func testTicksAndLabels() {
    let learningRate = niceTicks(lower: 0, upper: 0.002, count: 5, integers: false)
    XCTAssertEqual(learningRate.step, 0.0005, accuracy: 1e-15)
    XCTAssertEqual(learningRate.values.count, 5)
    XCTAssertEqual(formatTick(learningRate.values[3], step: learningRate.step), "0.0015")
    // 0.0005 needs 4 decimals: the axis writes 0 … 2.0 and ×10⁻³ in its label
    XCTAssertEqual(axisExponent(values: learningRate.values, step: learningRate.step), -3)
    XCTAssertEqual(formatTick(learningRate.values[3] * 1e3, step: learningRate.step * 1e3), "1.5")
    XCTAssertEqual(axisExponent(values: [0, 0.5, 1, 1.5], step: 0.5), 0)
    XCTAssertEqual(axisExponent(values: [0, 1e6, 2e6], step: 1e6), 6)
    XCTAssertEqual(superscript(-3), "⁻³")
    XCTAssertEqual(superscript(12), "¹²")
    let steps = niceTicks(lower: 0, upper: 1400, count: 6, integers: true)
    XCTAssertEqual(steps.step, 250)
    XCTAssertEqual(steps.values.last, 1500)
    XCTAssertEqual(formatTick(1000, step: 250), "1000")
    XCTAssertEqual(niceTicks(lower: 0, upper: 3, count: 6, integers: true).step, 1)
    XCTAssertEqual(formatTick(0, step: 1e-5), "0")
    XCTAssertEqual(formatTick(1.25, step: 0.25), "1.25")
    XCTAssertEqual(formatTick(1, step: 0.25), "1.00")
    XCTAssertEqual(escapeHTML("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;")
  }
}

/// Whether `text` holds a `nan` or `inf` as a number (`String(format:)` of a non-finite value).
func containsNonFiniteNumber(_ text: String) -> Bool {
  text.range(of: "(^|[^A-Za-z])-?(nan|inf)([^A-Za-z]|$)", options: .regularExpression) != nil
}

/// A run folder holding an older run's lines: the report reads the current run only (the run of
/// the last record), so a new run never shows "Steps 200 of 5" and the old curves.
final class ReportCurrentRunTests: XCTestCase {
  func testOnlyTheCurrentRunIsRead() throws {
    let folder = try makeTemporaryDirectory(self)
    let lines = [
      #"{"kind":"train","run":"old","step":100,"loss":0.5}"#, #"{"kind":"train","run":"old","step":200,"loss":0.4}"#,
      #"{"kind":"train","run":"new","step":5,"loss":2.0}"#, #"{"kind":"eval","run":"new","step":5,"val_top1":0.3}"#,
    ]
    try (lines.joined(separator: "\n") + "\n").write(
      to: folder.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
    let records = try readMetricRecords(path: folder.appendingPathComponent("metrics.jsonl").path)
    XCTAssertEqual(records.map(\.step), [5, 5])
    XCTAssertEqual(Set(records.compactMap(\.run)), ["new"])
  }

  /// The final evaluation's confusion matrix and per-class accuracy appear in the report.
  func testConfusionMatrixSection() throws {
    let folder = try makeTemporaryDirectory(self)
    try #"{"kind":"eval","run":"r","step":3,"val_top1":0.75}"#.write(
      to: folder.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
    try #"{"step":3,"classes":["cat","dog"],"confusion":[[2,0],[1,1]]}"#.write(
      to: folder.appendingPathComponent("confusion.json"), atomically: true, encoding: .utf8)
    let html = try String(contentsOfFile: try writeReport(runDirectory: folder.path), encoding: .utf8)
    XCTAssertTrue(html.contains("Per class (evaluation at step 3)"), html)
    XCTAssertTrue(html.contains("<tr><th>dog</th><td>1</td><td class=\"hit\">1</td><td>50.00%</td></tr>"), html)
  }
}
