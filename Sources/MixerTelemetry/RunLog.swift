// Rank 0's side effects for a run: `metrics.jsonl` (one JSON object per log step and per
// evaluation), TensorBoard events, MLflow (when tracked) and the live progress line (rewritten
// in place on a terminal, plain periodic lines otherwise). Every other rank gets a `RunLog` that
// writes nothing.

import Foundation

/// One metrics record: numbers by name, plus the kind of record.
public struct MetricRecord {
  public var kind: String
  public var step: Int
  public var values: [(String, Double)]
  /// the run the record belongs to
  public var run: String?

  public init(kind: String, step: Int, values: [(String, Double)]) {
    self.kind = kind
    self.step = step
    self.values = values
  }

  /// `{"kind":"train","step":10,"loss":2.3,...}` with keys in the given order, on one line
  /// (keys are escaped: per-class keys come from folder names).
  public var json: String {
    var parts = ["\"kind\":\(jsonString(kind))", "\"step\":\(step)"]
    if let run { parts.insert("\"run\":\(jsonString(run))", at: 1) }
    for (key, value) in values {
      let text = value.isFinite ? "\(value)" : "null"
      parts.append("\(jsonString(key)):\(text)")
    }
    return "{" + parts.joined(separator: ",") + "}"
  }
}

/// `text` as a JSON string literal (quotes, backslashes and control characters escaped), by
/// Foundation's encoder.
func jsonString(_ text: String) -> String {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.withoutEscapingSlashes]
  return (try? encoder.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
}

/// The run's log: metrics file and console output, active on rank 0 only.
public final class RunLog {
  public let active: Bool
  let directory: String?
  var metrics: FileHandle?
  /// TensorBoard event file in the run folder (scalars: train/*, eval/*)
  var tensorBoard: TensorBoardWriter?
  /// MLflow tracking (`--mlflow`): every record is also queued for the tracking server
  public var tracker: MLflowTracker?
  /// the run every record belongs to (`"run"` in metrics.jsonl)
  public private(set) var runID: String?
  let isTerminal: Bool
  var progressShown = false

  /// A log for the run folder `directory` (console output at once; files from `open`).
  public init(directory: String?, active: Bool) {
    self.active = active
    self.directory = directory
    // under mpirun stdout is a pty even when the job's output goes to a file (Slurm logs):
    // plain lines there, the in-place line only for a terminal of our own
    let underMPI = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil
      || ProcessInfo.processInfo.environment["PMIX_RANK"] != nil
    isTerminal = isatty(STDOUT_FILENO) != 0 && !underMPI
  }

  /// Opens `directory/metrics.jsonl` (appending) and a TensorBoard event file when `active`;
  /// every record is tagged with `runID`.
  public func open(runID: String) throws {
    self.runID = runID
    guard active, let directory else { return }
    let url = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl")
    if !FileManager.default.fileExists(atPath: url.path) {
      FileManager.default.createFile(atPath: url.path, contents: nil)
    }
    // a failure is Foundation's file error, naming the path (the command prints it as one line)
    let handle = try FileHandle(forWritingTo: url)
    handle.seekToEndOfFile()
    metrics = handle
    tensorBoard = try TensorBoardWriter(directory: directory)
  }

  /// Appends one record to metrics.jsonl (and queues it for MLflow).
  public func record(_ record: MetricRecord) {
    guard active, let metrics else { return }
    var record = record
    record.run = record.run ?? runID
    metrics.write(Data((record.json + "\n").utf8))
    if let tracker {
      tracker.log(record)
      for warning in tracker.takeWarnings() { line(warning) }
    }
    guard let tensorBoard else { return }
    for (key, value) in record.values where key != "epoch" && key != "seconds" && key != "val_count" {
      let name = key.hasPrefix("val_") ? String(key.dropFirst(4)) : key
      tensorBoard.scalar("\(record.kind)/\(name)", value, step: record.step)
    }
    tensorBoard.flush()
  }

  /// Shows the live progress line (in place on a terminal; every call a line otherwise).
  public func progress(_ text: String) {
    guard active else { return }
    if isTerminal {
      FileHandle.standardOutput.write(Data(("\r\u{1B}[2K" + text).utf8))
      progressShown = true
    } else {
      print(text)
      fflush(stdout)
    }
  }

  /// Prints a line of its own (ending any progress line first).
  public func line(_ text: String) {
    guard active else { return }
    if progressShown {
      FileHandle.standardOutput.write(Data("\n".utf8))
      progressShown = false
    }
    print(text)
    fflush(stdout)
  }

  public func close() {
    if progressShown { FileHandle.standardOutput.write(Data("\n".utf8)); progressShown = false }
    try? metrics?.close()
    tensorBoard?.close()
  }
}

/// 75 → "1m15s"
public func formatDuration(_ seconds: Double) -> String {
  guard seconds.isFinite, seconds >= 0 else { return "?" }
  let s = Int(seconds.rounded())
  if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", s / 60 % 60))m" }
  if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
  return "\(s)s"
}

/// A run-folder file that cannot be written, printed as one line.
public struct TelemetryError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
