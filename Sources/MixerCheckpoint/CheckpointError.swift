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
