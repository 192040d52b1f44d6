// CheckpointError.swift: the two errors of the checkpoint file layer: a malformed or unsupported
// file (`CheckpointFormatError`) and a failed system call (`CheckpointIOError`). Both print as one
// line naming the file (and entry) and what is wrong.

import Foundation

/// A file that is malformed, truncated or uses a feature this reader does not support.
public struct CheckpointFormatError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file, and the entry inside it when there is one (`params.npz: stem/kernel.npy`).
  public let source: String
  /// What is wrong, in one line.
  public let message: String

  /// Creates an error about `source` (file, or `file: entry`) saying `message`.
  public init(_ source: String, _ message: String) {
    self.source = source
    self.message = message
  }

  /// `source: message`, one line.
  public var description: String { "\(source): \(message)" }
}

/// A system call on a checkpoint file that failed (open, fsync, rename, ...).
public struct CheckpointIOError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The path the call was made on.
  public let path: String
  /// The call, e.g. `"fsync"`.
  public let operation: String
  /// `errno` after the call.
  public let code: Int32

  /// Creates an error for `operation` on `path` that failed with errno `code`.
  public init(path: String, operation: String, code: Int32) {
    self.path = path
    self.operation = operation
    self.code = code
  }

  /// `path: operation failed: strerror(code)`, one line.
  public var description: String { "\(path): \(operation) failed: \(String(cString: strerror(code)))" }
}

/// The product of `shape`, or nil when an entry is negative or the product overflows `Int`.
func elementCount(_ shape: [Int]) -> Int? {
  var product = 1
  for dimension in shape {
    guard dimension >= 0 else { return nil }
    let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
    guard !overflow else { return nil }
    product = next
  }
  return product
}

/// An error of saving, resuming or loading a checkpoint (a missing, corrupt or mismatched folder),
/// one line naming the folder or file.
public struct CheckpointError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// A checkpoint that was not saved, on every rank alike: why, and which checkpoint is left.
/// Its `.partial-*` folder was removed; the older checkpoints are untouched.
public struct CheckpointSaveError: Error, CustomStringConvertible {
  public let step: Int
  public let directory: URL
  /// one line: a `FileSystemError`, a `CheckpointSpaceError`, ...
  public let cause: String
  /// the newest checkpoint left in `directory` (nil: none)
  public let kept: URL?
  /// the save was written in the background (`BackgroundSave`) and failed steps after it began
  public var inBackground = false

  public init(step: Int, directory: URL, cause: String) {
    self.step = step
    self.directory = directory
    self.cause = cause
    kept = listCheckpoints(in: directory).first { $0.step != step }?.url
  }

  public var description: String {
    "the checkpoint of step \(step) was not saved\(inBackground ? " (written in the background)" : ""): \(cause); "
      + (kept.map { "the previous checkpoint \($0.path) is kept" } ?? "there is no earlier checkpoint")
  }
}

/// A save that does not fit in the free space of its folder's filesystem.
public struct CheckpointSpaceError: Error, CustomStringConvertible {
  public let directory: String
  public let needed: Int
  public let free: Int64

  public var description: String {
    "not enough space in \(directory): the checkpoint needs \(formatBytes(Int64(needed))), "
      + "the filesystem has \(formatBytes(free)) free"
  }
}

/// The bytes an unprivileged process may still write on the filesystem holding `path` (or its
/// nearest existing parent); nil when it cannot be asked.
public func freeBytes(at path: String) -> Int64? {
  var url = URL(fileURLWithPath: path).standardizedFileURL
  while !FileManager.default.fileExists(atPath: url.path), url.path != "/" {
    url = url.deletingLastPathComponent()
  }
  var stats = statvfs()
  guard statvfs(url.path, &stats) == 0 else { return nil }
  return Int64(stats.f_bavail) * Int64(stats.f_frsize)
}

/// 4404019 → "4.4 MB" (decimal units, as `df -H`).
public func formatBytes(_ bytes: Int64) -> String {
  let units = ["B", "kB", "MB", "GB", "TB"]
  var value = Double(bytes), unit = 0
  while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
  return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
