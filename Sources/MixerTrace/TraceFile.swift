// Reading traces back: merging the ranks' files into one (`mixer-dist trace merge`) and the
// per-rank summary that names the slow ranks (`mixer-dist trace summary`).

import Foundation

/// A trace-event file: its events, as JSON objects.
public struct TraceFile {
  public var events: [[String: Any]]

  public init(events: [[String: Any]]) { self.events = events }

  /// Reads a trace file, or every `rank-*.json` of a trace folder (merged).
  public init(contentsOf url: URL) throws {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
      throw TraceError("\(url.path): no such file or folder")
    }
    if isFolder.boolValue {
      let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
        .filter { $0.hasPrefix("rank-") && $0.hasSuffix(".json") }.sorted()
      guard !names.isEmpty else { throw TraceError("\(url.path): no rank-*.json trace files here") }
      events = try names.flatMap { try TraceFile(contentsOf: url.appendingPathComponent($0)).events }
      return
    }
    let data = try Data(contentsOf: url)
    let object = try? JSONSerialization.jsonObject(with: data)
    if let dictionary = object as? [String: Any], let list = dictionary["traceEvents"] as? [[String: Any]] {
      events = list
    } else if let list = object as? [[String: Any]] {
      events = list
    } else {
      throw TraceError("\(url.path): not a trace-event JSON file (no traceEvents list)")
    }
  }

  public func write(to url: URL) throws {
    let object: [String: Any] = ["traceEvents": events, "displayTimeUnit": "ms"]
    try JSONSerialization.data(withJSONObject: object).write(to: url, options: .atomic)
  }

  /// The problems of the events against the trace-event format's rules for the kinds used here
  /// (complete "X" events and metadata "M" events); empty when the file is well-formed.
  public func schemaProblems() -> [String] {
    var problems: [String] = []
    for (i, event) in events.enumerated() {
      guard let phase = event["ph"] as? String else { problems.append("event \(i): no ph"); continue }
      guard event["name"] is String else { problems.append("event \(i): no name"); continue }
      guard event["pid"] is Int, event["tid"] is Int else { problems.append("event \(i): pid/tid not integers"); continue }
      switch phase {
      case "X":
        guard let ts = event["ts"] as? Double, let dur = event["dur"] as? Double, ts >= 0, dur >= 0 else {
          problems.append("event \(i): an X event needs ts and dur >= 0")
          continue
        }
      case "M":
        guard event["args"] is [String: Any] else { problems.append("event \(i): an M event needs args"); continue }
      default:
        problems.append("event \(i): unexpected phase \(phase)")
      }
    }
    return problems
  }

  /// Per rank: its host, the steps, the median step and the mean time per step in each category.
  public struct RankSummary {
    public let rank: Int
    public let host: String
    public let steps: Int
    public let medianStepMilliseconds: Double
    /// milliseconds per step, by category (forward, backward, loader, wait, ...)
    public let perStep: [TraceCategory: Double]
    public var compute: Double { (perStep[.forward] ?? 0) + (perStep[.backward] ?? 0) + (perStep[.loss] ?? 0) }
  }

  /// Only spans inside a training step count (not an evaluation's forward passes, not the saves
  /// after the last step), and only the training thread's: the communication thread's reductions
  /// overlap backward, and what they cost the step is the training thread's wait for them.
  public func summaries() -> [RankSummary] {
    var hosts: [Int: String] = [:]
    var steps: [Int: [(start: Double, end: Double)]] = [:]
    var spans: [Int: [(category: TraceCategory, start: Double, duration: Double)]] = [:]
    for event in events {
      guard let rank = event["pid"] as? Int, let phase = event["ph"] as? String else { continue }
      if phase == "M", event["name"] as? String == "process_name", let name = (event["args"] as? [String: Any])?["name"] as? String {
        hosts[rank] = name.firstIndex(of: "(").map { String(name[name.index(after: $0)...].dropLast()) } ?? name
      }
      guard phase == "X", let category = (event["cat"] as? String).flatMap(TraceCategory.init),
        let ts = event["ts"] as? Double, let dur = event["dur"] as? Double
      else { continue }
      if category == .step {
        steps[rank, default: []].append((ts, ts + dur))
      } else if category == .communication, event["tid"] as? Int != TraceThread.training.rawValue {
        continue  // the communication thread's reductions overlap backward: the wait for them is a span of its own
      } else {
        spans[rank, default: []].append((category, ts, dur))
      }
    }
    return steps.keys.sorted().map { rank in
      let windows = steps[rank]!.sorted { $0.start < $1.start }
      var totals: [TraceCategory: Double] = [:]
      for span in spans[rank] ?? [] {
        // the last step starting at or before the span, if the span lies inside it
        var low = 0, high = windows.count
        while low < high {
          let mid = (low + high) / 2
          if windows[mid].start <= span.start { low = mid + 1 } else { high = mid }
        }
        guard low > 0, span.start + span.duration <= windows[low - 1].end + 1 else { continue }
        totals[span.category, default: 0] += span.duration / 1000
      }
      let durations = windows.map { ($0.end - $0.start) / 1000 }.sorted()
      let count = durations.count
      let median = count % 2 == 1 ? durations[count / 2] : (durations[count / 2 - 1] + durations[count / 2]) / 2
      return RankSummary(
        rank: rank, host: hosts[rank] ?? "?", steps: count, medianStepMilliseconds: median,
        perStep: totals.mapValues { $0 / Double(count) })
    }
  }

  /// The ranks whose compute per step is more than `percent`% and `milliseconds` above the median
  /// over the ranks (the absolute floor keeps scheduling noise on tiny steps from naming a rank).
  public static func stragglers(_ summaries: [RankSummary], percent: Double, milliseconds: Double) -> [RankSummary] {
    let median = medianCompute(summaries)
    guard summaries.count > 1 else { return [] }
    return summaries.filter { $0.compute > median * (1 + percent / 100) && $0.compute > median + milliseconds }
  }

  /// The median over the ranks of the compute per step.
  public static func medianCompute(_ summaries: [RankSummary]) -> Double {
    let computes = summaries.map(\.compute).sorted()
    let n = computes.count
    guard n > 0 else { return 0 }
    return n % 2 == 1 ? computes[n / 2] : (computes[n / 2 - 1] + computes[n / 2]) / 2
  }
}

public struct TraceError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
