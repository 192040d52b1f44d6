// Tar files through libarchive: listing the regular-file members of a shard with the byte offset
// and size of each member's data (so a sample can later be read with one positioned read), and
// writing shards. Every call into libarchive is in this file.
//
// Reading accepts what libarchive's tar reader accepts: POSIX ustar, pax extended headers (long
// names, large sizes) and GNU long names. The data offset of a member is the count of archive
// bytes libarchive has consumed when it returns the member's header (`archive_filter_bytes`):
// the headers, pax records and GNU long-name blocks before the data are behind it, the data is
// not. Each offset is also checked to lie inside the file, so a truncated shard is refused even
// where libarchive would stop quietly at the end of the file.
//
// Writing uses the restricted pax format (ustar, with a pax header only for what ustar cannot
// hold, e.g. names over 100 bytes), every member a regular file of mode 0644, owner 0, time 0:
// the same samples give the same shard bytes on every machine.

import CArchive
import Foundation

/// Why a tar file could not be read or written; names the file (and member, when known).
public struct TarError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// One regular file inside a tar: its name, where its data starts and how long it is.
public struct TarMember: Sendable, Equatable {
  public var name: String
  /// Byte offset of the member's data from the start of the tar file.
  public var offset: Int64
  public var size: Int64
}

/// Lists the regular files of the tar at `path` in archive order, calling `visit` for each with
/// a function that reads the member's data (up to a limit). Throws `TarError` naming the file and
/// the member when the tar is truncated or corrupt.
public func scanTar(
  _ path: String, visit: (TarMember, (_ limit: Int) throws -> [UInt8]) throws -> Void
) throws {
  var info = stat()
  guard stat(path, &info) == 0 else {
    throw TarError("\(path): cannot stat: \(String(cString: strerror(errno)))")
  }
  let fileSize = Int64(info.st_size)
  guard let archive = archive_read_new() else { throw TarError("\(path): libarchive could not start a reader") }
  defer { archive_read_free(archive) }
  archive_read_support_format_tar(archive)
  guard archive_read_open_filename(archive, path, 1 << 16) == ARCHIVE_OK else {
    throw TarError("\(path): \(archiveMessage(archive))")
  }
  var previous = "the start of the file"
  var entry: OpaquePointer?
  while true {
    let status = archive_read_next_header(archive, &entry)
    if status == ARCHIVE_EOF { break }
    guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
      throw TarError("\(path): corrupt or truncated tar after \(previous): \(archiveMessage(archive))")
    }
    let name = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
    previous = "member \(name)"
    guard archive_entry_filetype(entry) == carchive_regular_file() else { continue }
    let size = archive_entry_size(entry)
    let offset = archive_filter_bytes(archive, 0)
    guard size >= 0, offset >= 0, offset + size <= fileSize else {
      throw TarError(
        "\(path): truncated tar: member \(name) needs bytes \(offset)..<\(offset + size) of a \(fileSize)-byte file")
    }
    let member = TarMember(name: name, offset: offset, size: size)
    try visit(member) { limit in
      let count = Int(min(Int64(limit), size))
      var bytes = [UInt8](repeating: 0, count: count)
      let got = bytes.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, count) }
      guard got == count else {
        throw TarError("\(path): member \(name): read \(got) of \(count) bytes: \(archiveMessage(archive))")
      }
      return bytes
    }
  }
}

/// Writes a tar of regular files, member by member, under a temporary name that `finish`
/// renames to the final one (a crash leaves no half-written shard under the final name).
public final class TarWriter {
  public let path: String
  private let temporaryPath: String
  private var archive: OpaquePointer?
  /// Bytes written so far, counting each member's 512-byte header and padding.
  public private(set) var bytesWritten = 0

  public init(path: String) throws {
    self.path = path
    temporaryPath = path + ".partial"
    guard let archive = archive_write_new() else { throw TarError("\(path): libarchive could not start a writer") }
    self.archive = archive
    guard archive_write_set_format_pax_restricted(archive) == ARCHIVE_OK,
      archive_write_open_filename(archive, temporaryPath) == ARCHIVE_OK
    else {
      let message = archiveMessage(archive)
      archive_write_free(archive)
      self.archive = nil
      throw TarError("\(path): cannot write: \(message)")
    }
  }

  deinit {
    if let archive {
      archive_write_free(archive)
      unlink(temporaryPath)
    }
  }

  /// Appends a regular file `name` holding `bytes`.
  public func append(name: String, bytes: [UInt8]) throws {
    guard let archive else { throw TarError("\(path): already finished") }
    guard let entry = archive_entry_new() else { throw TarError("\(path): libarchive could not make an entry") }
    defer { archive_entry_free(entry) }
    archive_entry_set_pathname(entry, name)
    archive_entry_set_size(entry, Int64(bytes.count))
    archive_entry_set_filetype(entry, carchive_regular_file())
    archive_entry_set_perm(entry, 0o644)
    archive_entry_set_mtime(entry, 0, 0)
    guard archive_write_header(archive, entry) == ARCHIVE_OK else {
      throw TarError("\(path): member \(name): \(archiveMessage(archive))")
    }
    let written = bytes.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, bytes.count) }
    guard written == bytes.count else {
      throw TarError("\(path): member \(name): wrote \(written) of \(bytes.count) bytes: \(archiveMessage(archive))")
    }
    bytesWritten += 512 + (bytes.count + 511) / 512 * 512
  }

  /// Writes the end-of-archive blocks, closes the file and gives it its final name.
  public func finish() throws {
    guard let archive else { throw TarError("\(path): already finished") }
    let closed = archive_write_close(archive)
    let message = archiveMessage(archive)
    archive_write_free(archive)
    self.archive = nil
    guard closed == ARCHIVE_OK else { throw TarError("\(path): cannot finish: \(message)") }
    guard rename(temporaryPath, path) == 0 else {
      throw TarError("\(path): cannot rename from \(temporaryPath): \(String(cString: strerror(errno)))")
    }
  }
}

private func archiveMessage(_ archive: OpaquePointer) -> String {
  archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error \(archive_errno(archive))"
}
