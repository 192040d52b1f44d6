// Console logging through swift-log: one `Logger` for the run, printed by a plain handler (no
// timestamps: the progress line and metrics.jsonl carry time). Info and notice go to stdout on
// rank 0; warnings and errors go to stderr on every rank that has them, prefixed with the rank.
// `--log-level` sets the threshold (debug adds per-step timings).

import Foundation
import Logging

/// A swift-log handler for a terminal: `message` on stdout, `mixer-dist: rank R: warning: message` on stderr.
public struct ConsoleLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  let rank: Int

  public init(rank: Int, level: Logger.Level) {
    self.rank = rank
    self.logLevel = level
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(
    level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
    file: String, function: String, line: UInt
  ) {
    if level >= .warning {
      FileHandle.standardError.write(Data("mixer-dist: rank \(rank): \(level): \(message)\n".utf8))
    } else if rank == 0 {
      print(level <= .debug ? "[\(level)] \(message)" : "\(message)")
      fflush(stdout)
    }
  }
}

/// The run's logger for `rank` at `level`.
public func makeLogger(rank: Int, level: Logger.Level) -> Logger {
  Logger(label: "mixer-dist") { _ in ConsoleLogHandler(rank: rank, level: level) }
}
