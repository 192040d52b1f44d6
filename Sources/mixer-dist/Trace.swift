// `mixer-dist trace merge DIR` (the ranks' rank-R.json of `train --trace DIR` into one trace.json,
// for a run that ended before merging them) and `mixer-dist trace summary FILE|DIR` (per rank: the
// median step and where a step's time goes; the ranks whose compute is well above the others').

import ArgumentParser
import Foundation
import MixerTrace

struct Trace: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Read the timelines of `train --trace DIR`: merge the ranks' files, or summarise them and name the slow ranks.",
    subcommands: [TraceMerge.self, TraceSummary.self])
}

struct TraceMerge: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "merge", abstract: "Merge a trace folder's rank-R.json files into one trace-event file.")

  @Argument(help: "The folder given to train --trace.") var folder: String
  @Option(help: "The merged file (default: FOLDER/trace.json).") var output: String?

  func run() throws {
    try runReportingErrors {
      let url = URL(fileURLWithPath: folder)
      let merged = try TraceFile(contentsOf: url)
      let problems = merged.schemaProblems()
      guard problems.isEmpty else { throw TraceError("\(folder): \(problems.count) malformed event(s), e.g. \(problems[0])") }
      let destination = output.map { URL(fileURLWithPath: $0) } ?? url.appendingPathComponent("trace.json")
      try merged.write(to: destination)
      let ranks = Set(merged.events.compactMap { $0["pid"] as? Int }).count
      print("wrote \(destination.path): \(merged.events.count) events of \(ranks) rank(s)")
    }
  }
}

struct TraceSummary: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "summary",
    abstract: "Per rank: the median step and the time per step in compute, loader wait and collective wait; names stragglers.")

  @Argument(help: "A trace file (trace.json) or the folder given to train --trace.") var trace: String
  @Option(help: "Name a rank whose compute per step is more than this percentage above the median over the ranks...")
  var threshold: Double = 20
  @Option(help: "... and more than this many milliseconds above it.") var minMs: Double = 2

  func run() throws {
    try runReportingErrors {
      let file = try TraceFile(contentsOf: URL(fileURLWithPath: trace))
      let ranks = file.summaries()
      guard !ranks.isEmpty else { throw TraceError("\(trace): no training steps in this trace") }
      func ms(_ value: Double?) -> String { String(format: "%.1f", value ?? 0) }
      print("rank  host                  steps  median step  compute  loader wait  collective wait  optimizer  (ms per step)")
      for r in ranks {
        let host = r.host.count > 20 ? String(r.host.prefix(20)) : r.host
        print(
          String(format: "%4d  %@", r.rank, host.padding(toLength: 20, withPad: " ", startingAt: 0))
            + "  " + "\(r.steps)".leftPadded(5) + "  " + ms(r.medianStepMilliseconds).leftPadded(11)
            + "  " + ms(r.compute).leftPadded(7) + "  " + ms(r.perStep[.loader]).leftPadded(11)
            + "  " + ms((r.perStep[.wait] ?? 0) + (r.perStep[.communication] ?? 0)).leftPadded(15)
            + "  " + ms(r.perStep[.optimizer]).leftPadded(9))
      }
      let median = TraceFile.medianCompute(ranks)
      let slow = TraceFile.stragglers(ranks, percent: threshold, milliseconds: minMs)
      if slow.isEmpty {
        print(
          "stragglers: none (no rank's compute is more than \(Int(threshold))% and \(ms(minMs)) ms above the median, "
            + "\(ms(median)) ms per step)")
      }
      for r in slow {
        let others = ranks.filter { $0.rank != r.rank }
        let wait = others.map { ($0.perStep[.wait] ?? 0) }.reduce(0, +) / Double(max(others.count, 1))
        print(
          "straggler: rank \(r.rank) (\(r.host)): compute \(ms(r.compute)) ms per step, "
            + String(format: "%.0f%%", 100 * (r.compute / max(median, 1e-9) - 1))
            + " above the median (\(ms(median)) ms); forward \(ms(r.perStep[.forward])), backward \(ms(r.perStep[.backward])), "
            + "loader wait \(ms(r.perStep[.loader])); the other ranks wait \(ms(wait)) ms per step in the collectives")
      }
    }
  }
}

extension String {
  fileprivate func leftPadded(_ width: Int) -> String {
    count >= width ? self : String(repeating: " ", count: width - count) + self
  }
}
