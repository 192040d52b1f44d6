// FileSystemError.swift: every filesystem failure as one line naming the path and the cause.
// Foundation reports them as NSErrors (`NSCocoaErrorDomain Code=640 "There isn't enough
// space."`, with the path in the user info if at all) and system calls as an errno: both are
// mapped here, in one place, to the four causes a user can act on (no space, read-only,
// permission, missing) or to the system's own words for the rest. `describeError` is what every
// command prints.

import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A failed read, write or rename of a file or folder, printed as one line:
/// `cannot write /ck/.partial-step-00000020/params.safetensors: no space left on the device`.
public struct FileSystemError: Error, CustomStringConvertible, Equatable, Sendable {
  /// What went wrong, in the terms a user can act on.
  public enum Cause: Equatable, Sendable, CustomStringConvertible {
    case noSpace, readOnly, permission, missing
    /// anything else, in the system's words
    case other(String)

    public var description: String {
      switch self {
      case .noSpace: return "no space left on the device"
      case .readOnly: return "the filesystem is read-only"
      case .permission: return "permission denied"
      case .missing: return "no such file or directory"
      case .other(let text): return text
      }
    }

    /// The cause an errno names.
    public init(errno code: Int32) {
      switch code {
      case ENOSPC, EDQUOT: self = .noSpace
      case EROFS: self = .readOnly
      case EACCES, EPERM: self = .permission
      case ENOENT, ENOTDIR: self = .missing
      default: self = .other(String(cString: strerror(code)))
      }
    }
  }

  public let path: String
  /// the verb: `write`, `read`, `create`, `rename`, `access`
  public let operation: String
  public let cause: Cause

  public init(path: String, operation: String, cause: Cause) {
    self.path = path
    self.operation = operation
    self.cause = cause
  }

  public var description: String { "cannot \(operation) \(path): \(cause)" }

  /// The filesystem error `error` is, if it is one: a Foundation file error (NSCocoaErrorDomain
  /// codes 4 and 256-1023), a POSIX-domain error or a `CheckpointIOError`. `path` and
  /// `operation` are used when the error does not carry its own.
  public static func from(_ error: Error, path: String? = nil, operation: String? = nil) -> FileSystemError? {
    if let error = error as? FileSystemError { return error }
    if let error = error as? CheckpointIOError {
      return FileSystemError(path: error.path, operation: operation ?? error.operation, cause: Cause(errno: error.code))
    }
    let ns = error as NSError
    let filePath = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    if ns.domain == NSPOSIXErrorDomain, let where_ = filePath ?? path {
      return FileSystemError(path: where_, operation: operation ?? "access", cause: Cause(errno: Int32(ns.code)))
    }
    guard ns.domain == NSCocoaErrorDomain, ns.code == CocoaError.fileNoSuchFile.rawValue || (256..<1024).contains(ns.code)
    else { return nil }
    // a file error that names no file still gets its one line
    let where_ = filePath ?? path ?? "a file"
    let verb = operation ?? (ns.code >= 512 ? "write" : ns.code >= 256 ? "read" : "access")
    let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError
    if let underlying, underlying.domain == NSPOSIXErrorDomain {
      return FileSystemError(path: where_, operation: verb, cause: Cause(errno: Int32(underlying.code)))
    }
    let cause: Cause
    switch CocoaError.Code(rawValue: ns.code) {
    case .fileWriteOutOfSpace: cause = .noSpace
    case .fileWriteVolumeReadOnly: cause = .readOnly
    case .fileReadNoPermission, .fileWriteNoPermission: cause = .permission
    case .fileNoSuchFile, .fileReadNoSuchFile: cause = .missing
    case .fileWriteFileExists: cause = .other("it already exists")
    case .fileReadCorruptFile: cause = .other("the file is corrupt")
    default: cause = .other(ns.localizedDescription)
    }
    return FileSystemError(path: where_, operation: verb, cause: cause)
  }

  /// Runs `body`, turning a filesystem error it throws into a `FileSystemError` about `path`.
  public static func mapping<T>(path: String, operation: String, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch {
      throw from(error, path: path, operation: operation) ?? error
    }
  }
}

/// The one line a command prints for `error`: a filesystem error as `FileSystemError` says it,
/// anything else as it describes itself.
public func describeError(_ error: Error) -> String {
  if let fileError = FileSystemError.from(error) { return fileError.description }
  return "\(error)"
}
