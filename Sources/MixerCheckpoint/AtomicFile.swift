// AtomicFile.swift: crash-safe file creation for checkpoints: write under a temporary name in
// the destination's directory, fsync the file, rename it over the destination (atomic on POSIX
// file systems), then fsync the directory so the rename itself is durable. A crash at any point
// leaves either the old file or the complete new one, plus at worst a stray temporary file.

import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Atomic, durable file writes.
public enum AtomicFile {
  /// Writes `data` to `url` atomically and durably.
  public static func write(_ data: Data, to url: URL) throws {
    try create(url) { temporary in try data.write(to: temporary) }
  }

  /// Creates `url` atomically and durably from whatever `body` writes at the temporary URL it
  /// is given (a path in the same directory that does not exist yet). On error the temporary
  /// file is removed and `url` is left as it was; a filesystem error is thrown as a
  /// `FileSystemError` naming `url` (also when `body`'s writer lost the cause, as ZIPFoundation's
  /// `unwritableFile` does: the errno of its failed write is read here).
  public static func create(_ url: URL, _ body: (URL) throws -> Void) throws {
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(
      ".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    errno = 0  // so a cause read below is this write's
    do {
      try body(temporary)
      try syncFile(at: temporary)
      try systemCall("rename", temporary.path) { rename(temporary.path, url.path) }
    } catch {
      let code = errno
      try? FileManager.default.removeItem(at: temporary)
      if let fileError = FileSystemError.from(error) {
        throw FileSystemError(path: url.path, operation: "write", cause: fileError.cause)
      }
      if [ENOSPC, EDQUOT, EROFS, EACCES, EPERM].contains(code) {
        throw FileSystemError(path: url.path, operation: "write", cause: .init(errno: code))
      }
      throw error
    }
    try syncDirectory(at: directory)
  }

  /// Flushes a file's data and metadata to stable storage (fsync).
  public static func syncFile(at url: URL) throws {
    try sync(url.path, flags: O_RDONLY)
  }

  /// Flushes a directory's entries (new names, renames) to stable storage.
  public static func syncDirectory(at url: URL) throws {
    try sync(url.path, flags: O_RDONLY | O_DIRECTORY)
  }

  private static func sync(_ path: String, flags: Int32) throws {
    let descriptor = open(path, flags)
    guard descriptor >= 0 else { throw CheckpointIOError(path: path, operation: "open", code: errno) }
    defer { close(descriptor) }
    try systemCall("fsync", path) { fsync(descriptor) }
  }

  /// Runs a system call that returns -1 on failure and turns a failure into a thrown error.
  private static func systemCall(_ name: String, _ path: String, _ call: () -> Int32) throws {
    guard call() == 0 else { throw CheckpointIOError(path: path, operation: name, code: errno) }
  }
}
