// Listing the files of a data tree (an image folder's class folders, a segmentation folder's
// images/ and masks/) with symbolic links followed safely.
//
// Names come from readdir in byte order; names starting with "." are skipped. The entry's type
// comes from readdir too (d_type), so a regular file costs no stat (ImageNet has 1.28 million);
// only links (and entries of file systems that report no type) are examined further:
//   - a link to a file with a listed extension is followed (its name carries the extension);
//   - a link to a directory is followed unless the directory is on the walk's own path, the tree
//     itself included (a cycle: `ln -s .. train/five/loop`) or was listed already (two links to
//     one folder, or a link to a class folder walked before it);
//   - a broken link is skipped.
// A file reached twice (through two links, or through a link and its own path) is listed once:
// at its own path when the walk reaches it without a link, else at the first link in walk order.
// `distinct` marks the repeats; the walk counts what it followed and skipped for the start-up
// line. Hard links are separate files to a walk (they have no target to compare).

import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Symbolic links a walk met, and the files it reached more than once.
public struct LinkCounts: Equatable, Sendable {
  /// Links listed through (to an image file or a folder).
  public var followed = 0
  /// Folder links to a folder on their own path (or above the tree), which would loop.
  public var cycles = 0
  /// Folder links to a folder already listed.
  public var repeats = 0
  /// Links whose target does not exist.
  public var broken = 0
  /// Files reached a second time (through another link), counted once.
  public var duplicates = 0

  public init() {}

  /// The counts of two walks together.
  public static func + (a: LinkCounts, b: LinkCounts) -> LinkCounts {
    var sum = a
    sum.followed += b.followed
    sum.cycles += b.cycles
    sum.repeats += b.repeats
    sum.broken += b.broken
    sum.duplicates += b.duplicates
    return sum
  }

  /// Links not followed.
  public var skipped: Int { cycles + repeats + broken }

  /// "symbolic links: 2 followed, 1 skipped (1 into a directory cycle); 20 files reached twice
  /// counted once", or nil when the walk met no link.
  public var summary: String? {
    guard followed + skipped > 0 else { return nil }
    let reasons = [
      (cycles, "into a directory cycle"), (repeats, "to a folder already listed"), (broken, "broken"),
    ].filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
    var text = "symbolic links: \(followed) followed, \(skipped) skipped"
    if !reasons.isEmpty { text += " (" + reasons.joined(separator: ", ") + ")" }
    if duplicates > 0 {
      text += "; \(duplicates) file\(duplicates == 1 ? "" : "s") reached twice counted once"
    }
    return text
  }
}

/// One file a walk found.
struct FoundFile: Equatable {
  /// The path below the tree, through links as the walk went (e.g. "five/loop/six/1.png").
  var path: String
  /// The file's resolved path when the walk reached it through a link; nil: the path below the
  /// tree is the file's own.
  var resolved: String?
}

/// Walks folders of one tree, following links as the top of this file says.
final class FolderWalk {
  let tree: URL
  let extensions: Set<String>
  private(set) var counts = LinkCounts()
  /// The tree's resolved path: a file reached without links resolves to `treePath/path`.
  private let treePath: String
  /// Resolved paths of the folders listed so far.
  private var listed: Set<String>
  /// Resolved paths of the folders from the tree down to the one being listed.
  private var onPath: [String]

  /// A walk of `tree` listing names whose lowercased extension is in `extensions`.
  init(tree: URL, extensions: Set<String>) throws {
    self.tree = tree
    self.extensions = extensions
    guard let resolved = resolvedPath(tree.path) else {
      throw DataError.invalidConfiguration("cannot resolve \(tree.path): \(String(cString: strerror(errno)))")
    }
    treePath = resolved
    listed = [resolved]
    onPath = [resolved]
  }

  /// The files below `relative` (a folder of the tree, e.g. a class folder, itself perhaps a
  /// link), at any depth, in walk order: names in byte order, a folder's files where its name
  /// sorts. Empty when `relative` is a link the walk does not follow.
  func files(below relative: String) throws -> [FoundFile] {
    var found: [FoundFile] = []
    let url = tree.appendingPathComponent(relative)
    switch entryKind(url.path, type: nil) {
    case .directory:
      try list(directory: url.path, resolved: treePath + "/" + relative, relative: relative, into: &found)
    case .link:
      try follow(link: url.path, relative: relative, name: relative, into: &found)
    case .file, .other: break
    }
    return found
  }

  /// Per file of `files` (one or more walks' results of this tree), false for a repeat of a
  /// file listed elsewhere in `files`; counts the repeats in `counts.duplicates`.
  func distinct(_ files: [FoundFile]) -> [Bool] {
    var firstLinked: [String: Int] = [:]  // resolved path → its first index reached via a link
    for (index, file) in files.enumerated() {
      if let resolved = file.resolved, firstLinked[resolved] == nil { firstLinked[resolved] = index }
    }
    var keep = [Bool](repeating: true, count: files.count)
    guard !firstLinked.isEmpty else { return keep }
    var ownPaths: Set<String> = []
    for file in files where file.resolved == nil {
      let own = treePath + "/" + file.path
      if firstLinked[own] != nil { ownPaths.insert(own) }
    }
    for (index, file) in files.enumerated() {
      guard let resolved = file.resolved else { continue }
      if ownPaths.contains(resolved) || firstLinked[resolved] != index { keep[index] = false }
    }
    counts.duplicates += keep.lazy.filter { !$0 }.count
    return keep
  }

  private enum EntryKind { case file, directory, link, other }

  /// What `path` is: from readdir's `type` when it says, else from an lstat.
  private func entryKind(_ path: String, type: UInt8?) -> EntryKind {
    if let type, Int32(type) != Int32(DT_UNKNOWN) {
      switch Int32(type) {
      case Int32(DT_REG): return .file
      case Int32(DT_DIR): return .directory
      case Int32(DT_LNK): return .link
      default: return .other
      }
    }
    var info = stat()
    guard lstat(path, &info) == 0 else { return .other }  // vanished since the listing
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .file
    case S_IFDIR: return .directory
    case S_IFLNK: return .link
    default: return .other
    }
  }

  /// Appends the files below the folder at `directory` (resolved path `resolved`), known to the
  /// tree as `relative`.
  private func list(
    directory: String, resolved: String, relative: String, into found: inout [FoundFile],
    throughLink: Bool = false
  ) throws {
    listed.insert(resolved)
    onPath.append(resolved)
    defer { onPath.removeLast() }
    for (name, type) in try directoryEntries(directory) where !name.hasPrefix(".") {
      let path = directory + "/" + name
      let below = relative + "/" + name
      switch entryKind(path, type: type) {
      case .file:
        if hasListedExtension(name) {
          found.append(FoundFile(path: below, resolved: throughLink ? resolved + "/" + name : nil))
        }
      case .directory:
        try list(
          directory: path, resolved: resolved + "/" + name, relative: below, into: &found,
          throughLink: throughLink)
      case .link:
        try follow(link: path, relative: below, name: name, into: &found)
      case .other: break
      }
    }
  }

  /// Follows the link at `path` (known to the tree as `relative`) as the top of this file says.
  private func follow(link path: String, relative: String, name: String, into found: inout [FoundFile]) throws {
    guard let target = resolvedPath(path) else {
      counts.broken += 1
      return
    }
    var info = stat()
    guard stat(target, &info) == 0 else {
      counts.broken += 1
      return
    }
    if info.st_mode & S_IFMT == S_IFDIR {
      if onPath.contains(where: { $0 == target || $0.hasPrefix(target == "/" ? "/" : target + "/") }) {
        counts.cycles += 1
      } else if listed.contains(target) {
        counts.repeats += 1
      } else {
        counts.followed += 1
        try list(directory: path, resolved: target, relative: relative, into: &found, throughLink: true)
      }
    } else if hasListedExtension(name) {
      counts.followed += 1
      found.append(FoundFile(path: relative, resolved: target))
    }
  }

  private func hasListedExtension(_ name: String) -> Bool {
    extensions.contains((name as NSString).pathExtension.lowercased())
  }
}

/// The entries of a directory (name and readdir's type) in byte order of their names, without
/// "." and "..".
func directoryEntries(_ path: String) throws -> [(name: String, type: UInt8)] {
  guard let stream = opendir(path) else {
    throw DataError.invalidConfiguration("cannot list \(path): \(String(cString: strerror(errno)))")
  }
  defer { closedir(stream) }
  var entries: [(name: String, type: UInt8)] = []
  while let entry = readdir(stream) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
      String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
    }
    if name == "." || name == ".." { continue }
    entries.append((name, entry.pointee.d_type))
  }
  return entries.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
}

/// The absolute path of `path` with every link and "." or ".." resolved; nil when it does not
/// exist (errno says why).
func resolvedPath(_ path: String) -> String? {
  guard let resolved = realpath(path, nil) else { return nil }
  defer { free(resolved) }
  return String(cString: resolved)
}
