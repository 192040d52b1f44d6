// `mixer-dist report`: write a run folder's HTML report (curves, summary, configuration).

import ArgumentParser
import MixerTelemetry
import MixerTrain

struct Report: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a self-contained HTML report of a run folder (curves, summary, config).",
    discussion: """
      Reads <run-dir>/metrics.jsonl and <run-dir>/config.json and writes one HTML page with no \
      external files: plots of the train loss, learning rate, validation accuracy and \
      throughput over steps, a summary, and the configuration.
      """)

  @Argument(
    help: ArgumentHelp(
      "The run folder (the --run-dir of `mixer-dist train`).", valueName: "run-dir"))
  var runDirectory: String

  @Option(
    help: ArgumentHelp(
      "Where to write the page (default: <run-dir>/report.html).", valueName: "file"))
  var output: String?

  func run() throws {
    try runReportingErrors {
      print(try writeReport(runDirectory: runDirectory, to: output))
    }
  }
}
