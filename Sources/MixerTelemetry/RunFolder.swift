// One run per folder. A run holds an exclusive `flock` on `.lock` in its run folder and in its
// checkpoint folder while it runs (the file says which host and process): a second run into
// either stops at once naming the holder, and the lock goes with the process however it ends.
// The records of a run folder (metrics.jsonl) carry a run id, so a new run does not append to
// another run's curves unless it resumes that run. config.json holds the run's settings and the
// evaluation metrics its head reports (`RunSettings`), which the report draws.

import Foundation

/// An exclusive lock on a folder, held until `release` or the end of the process.
public final class FolderLock {
  public let folder: String
  private var descriptor: Int32

  /// Takes the lock on `folder` (created if missing), or throws naming the run that holds it.
  public init(_ folder: String, purpose: String) throws {
    self.folder = folder
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let path = (folder as NSString).appendingPathComponent(".lock")
    descriptor = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw TelemetryError("cannot create \(path): \(String(cString: strerror(errno)))")
    }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      let holder = (try? String(contentsOfFile: path, encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
      Foundation.close(descriptor)
      descriptor = -1
      throw TelemetryError(
        "\(purpose) \(folder) is in use by another run (\(holder.isEmpty ? "unknown process" : holder)): "
          + "wait for it to end, or choose another folder")
    }
    let text = "host \(ProcessInfo.processInfo.hostName) pid \(getpid())\n"
    _ = ftruncate(descriptor, 0)
    _ = text.withCString { pwrite(descriptor, $0, strlen($0), 0) }
  }

  /// Releases the lock (also done when the process ends).
  public func release() {
    guard descriptor >= 0 else { return }
    flock(descriptor, LOCK_UN)
    Foundation.close(descriptor)
    descriptor = -1
  }

  deinit { release() }
}

/// What a run folder already holds.
public struct RunRecords {
  public let folder: String
  /// records in metrics.jsonl
  public let count: Int
  /// the run id of the last record (nil for records written before runs had ids)
  public let lastRunID: String?

  /// Reads `folder/metrics.jsonl` (no file: no records).
  public init(folder: String) {
    self.folder = folder
    let lines = RunRecords.lines(folder)
    count = lines.count
    lastRunID = lines.last.flatMap(RunRecords.runID(of:))
  }

  static func metricsPath(_ folder: String) -> String { (folder as NSString).appendingPathComponent("metrics.jsonl") }

  static func lines(_ folder: String) -> [Substring] {
    guard let text = try? String(contentsOfFile: metricsPath(folder), encoding: .utf8) else { return [] }
    return text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
  }

  static func runID(of line: Substring) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
    return object["run"] as? String
  }

  /// Keeps only the records of run `runID` up to `step` (a resumed run continues its own curves
  /// from the checkpoint's step, dropping what was logged after it).
  public func truncate(run runID: String?, after step: Int) throws {
    let kept = RunRecords.lines(folder).filter { line in
      guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return false }
      return (object["run"] as? String) == runID && ((object["step"] as? Int) ?? 0) <= step
    }
    let text = kept.map { $0 + "\n" }.joined()
    try text.write(toFile: RunRecords.metricsPath(folder), atomically: true, encoding: .utf8)
  }

  /// Removes the run's records: metrics.jsonl, TensorBoard event files, config.json.
  public func clear() throws {
    let fileManager = FileManager.default
    for name in (try? fileManager.contentsOfDirectory(atPath: folder)) ?? []
    where name == "metrics.jsonl" || name == "config.json" || name.hasPrefix("events.out.tfevents.") {
      try fileManager.removeItem(atPath: (folder as NSString).appendingPathComponent(name))
    }
  }
}

/// A new run id: 8 hex digits from the clock and the process.
public func newRunID() -> String {
  var generator = SystemRandomNumberGenerator()
  return String(format: "%08x", UInt32.random(in: 0...UInt32.max, using: &generator))
}

/// An evaluation metric as a run reports it: the key of its values in `eval` records of
/// metrics.jsonl (a fraction, shown as a percentage) and the name a report gives it. The run's
/// head names them (`TaskHead.reportedMetrics`).
public struct ReportedMetric: Codable, Equatable, Sendable {
  public var key: String
  public var name: String
  /// Where config.json holds a run's metrics.
  public static let configKey = "evaluationMetrics"

  public init(_ key: String, name: String) {
    self.key = key
    self.name = name
  }
}

/// What config.json holds: the run's settings, and beside them (`evaluationMetrics`) the
/// evaluation metrics its head reports, the first the one that ranks evaluations; the report
/// draws those.
public struct RunSettings<Config: Encodable>: Encodable {
  public let config: Config
  public let metrics: [ReportedMetric]

  public init(config: Config, metrics: [ReportedMetric]) {
    self.config = config
    self.metrics = metrics
  }

  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  /// The settings' own keys, then `evaluationMetrics` in the same object.
  public func encode(to encoder: Encoder) throws {
    try config.encode(to: encoder)
    var container = encoder.container(keyedBy: Key.self)
    try container.encode(metrics, forKey: Key(stringValue: ReportedMetric.configKey))
  }
}
