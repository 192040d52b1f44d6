// The index of a set of WebDataset shards: every sample's shard, the byte offset and size of its
// image member, its label and its key, so that sample i of the set is one positioned read away
// and the sampler's global order needs no streaming (as `wids` does for PyTorch).
//
// A sample is a run of consecutive tar members sharing a key: the member name up to the first "."
// of its last path component (webdataset's rule: "a/000123.jpg" and "a/000123.cls" are sample
// "a/000123"). Its image is the first member with extension jpg, jpeg or png (any case); its label
// the member with extension cls, holding the class index as decimal text. Other members (json,
// txt, ...) are ignored. A sample without an image or label is kept in the index, marked, and
// refused (or skipped with --skip-bad-images) by the dataset that reads it.
//
// The index is stored next to the shards as `<stem>.wdsindex` (see `ShardSet`), little-endian:
//
//   "MXWDSIDX" · u32 version (1) · u32 shard count
//   per shard: u32 name length · name (UTF-8, relative to the index's folder) · u64 size ·
//              i64 modification time (ns since 1970)
//   u64 sample count n · u32[n] shard · u64[n] image offset · u32[n] image size ·
//   i32[n] label · u32[n + 1] key ends · key bytes · u32 CRC-32 of everything before it
//
// The sizes and times record the shards as they were indexed: a shard whose size or time differs
// later is refused, naming it, until the index is built again (`mixer-dist shard index`).

import CMixerZlib
import Foundation

/// The shards of one split and the file of their index.
public struct ShardSet: Sendable, Equatable {
  /// Shard paths in sample order.
  public var shards: [String]
  /// Where the index of these shards is stored.
  public var indexPath: String

  /// The index's folder, which shard names in the index are relative to.
  var folder: String { (indexPath as NSString).deletingLastPathComponent }

  /// The shards of `pattern`: a brace pattern (`DIR/train-{000000..000146}.tar`, `{a,b}` lists,
  /// several groups) or one file. The index is `DIR/<stem>.wdsindex`, the stem being the file
  /// name before its first brace without trailing "-", "_" or "." (or the name without ".tar").
  public init(pattern: String) throws {
    let shards = try expandBraces(pattern)
    guard !shards.isEmpty else { throw DataError.invalidConfiguration("shard pattern \(pattern) names no files") }
    let directory = (pattern as NSString).deletingLastPathComponent
    let name = (pattern as NSString).lastPathComponent
    var stem: Substring
    if let brace = name.firstIndex(of: "{") {
      stem = name[..<brace]
      while let last = stem.last, "-_.".contains(last) { stem = stem.dropLast() }
    } else {
      stem = name.hasSuffix(".tar") ? name.dropLast(4) : Substring(name)
    }
    self.shards = shards
    indexPath = (directory.isEmpty ? "." : directory) + "/" + (stem.isEmpty ? "shards" : String(stem)) + ".wdsindex"
  }

  /// The shards `<prefix>-<digits>.tar` in `directory`, in name order, with the index
  /// `directory/<prefix>.wdsindex`; nil when there are none.
  public init?(directory: String, prefix: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
    let shards = names.filter { name in
      guard name.hasPrefix(prefix + "-"), name.hasSuffix(".tar") else { return false }
      let middle = name.dropFirst(prefix.count + 1).dropLast(4)
      return !middle.isEmpty && middle.allSatisfy(\.isNumber)
    }.sorted()
    guard !shards.isEmpty else { return nil }
    self.shards = shards.map { directory + "/" + $0 }
    indexPath = directory + "/" + prefix + ".wdsindex"
  }

  /// The train or validation shards of a `wds:` path: a folder holding `train-NNNNNN.tar` and
  /// `val-NNNNNN.tar` (what `mixer-dist shard create` writes), or `TRAIN_PATTERN[,VAL_PATTERN]`
  /// (commas outside braces separate the two); without VAL_PATTERN, validation is the
  /// `val-NNNNNN.tar` files next to the training shards.
  public static func resolve(_ spec: String, split: DataSplit) throws -> ShardSet {
    let patterns = splitTopLevelCommas(spec)
    guard patterns.count <= 2, !patterns.contains(where: \.isEmpty) else {
      throw DataError.invalidConfiguration("wds:\(spec): expected a folder or TRAIN_PATTERN[,VAL_PATTERN]")
    }
    if patterns.count == 1, isDirectory(spec) {
      let prefixes = split == .train ? ["train"] : ["val", "validation"]
      for prefix in prefixes {
        if let set = ShardSet(directory: spec, prefix: prefix) { return set }
      }
      throw DataError.invalidConfiguration(
        "wds:\(spec): the folder holds no \(prefixes[0])-NNNNNN.tar shards (mixer-dist shard create writes them)")
    }
    if split == .train || patterns.count == 2 { return try ShardSet(pattern: patterns[split == .train ? 0 : 1]) }
    let directory = (patterns[0] as NSString).deletingLastPathComponent
    for prefix in ["val", "validation"] {
      if let set = ShardSet(directory: directory.isEmpty ? "." : directory, prefix: prefix) { return set }
    }
    throw DataError.invalidConfiguration(
      "wds:\(spec): no validation shards: give wds:TRAIN_PATTERN,VAL_PATTERN or put val-NNNNNN.tar next to the training shards")
  }
}

/// Every sample of a shard set: where its image is, its label and key.
public struct ShardIndex: Sendable, Equatable {
  /// A shard as it was when indexed.
  public struct Shard: Sendable, Equatable {
    /// Relative to the index's folder (or absolute when the shard lies elsewhere).
    public var name: String
    public var size: Int64
    /// Modification time, nanoseconds since 1970.
    public var modified: Int64
  }

  /// Label values that mark a sample without a usable label.
  public static let missingLabel: Int32 = -1
  public static let unreadableLabel: Int32 = -2
  /// Offset value of a sample without an image member.
  public static let missingImage = UInt64.max

  public var shards: [Shard] = []
  /// Per sample `[n]`: shard number, image data offset and size, label (or a marker above).
  public var shardOfSample: [UInt32] = []
  public var offsets: [UInt64] = []
  public var sizes: [UInt32] = []
  public var labels: [Int32] = []
  /// Keys packed: key i is `keyBytes[keyEnds[i]..<keyEnds[i + 1]]`, `keyEnds.count == n + 1`.
  public var keyEnds: [UInt32] = [0]
  public var keyBytes: [UInt8] = []

  public var count: Int { labels.count }

  static let magic = Array("MXWDSIDX".utf8)
  static let version: UInt32 = 1

  public func key(_ sample: Int) -> String {
    String(decoding: keyBytes[Int(keyEnds[sample])..<Int(keyEnds[sample + 1])], as: UTF8.self)
  }

  /// Scans every shard of `set` (in parallel over shards, on up to `threads` threads); the result
  /// does not depend on the thread count. Throws naming the shard (and member) that is missing,
  /// truncated or corrupt.
  public static func build(_ set: ShardSet, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws
    -> ShardIndex
  {
    let parts = ShardParts(count: set.shards.count)
    let next = ShardCounter()
    DispatchQueue.concurrentPerform(iterations: max(1, min(threads, set.shards.count))) { _ in
      while let shard = next.take(below: set.shards.count) {
        do { parts.set(shard, .success(try scanShard(set.shards[shard], number: shard, folder: set.folder))) } catch {
          parts.set(shard, .failure(error))
        }
      }
    }
    var index = ShardIndex()
    for part in parts.results {
      let part = try part!.get()
      index.shards.append(part.shards[0])
      index.append(part)
    }
    return index
  }

  /// The samples of one shard, numbered as shard `number`.
  static func scanShard(_ path: String, number: Int, folder: String) throws -> ShardIndex {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw DataError.invalidConfiguration("shard \(path) is missing: \(String(cString: strerror(errno)))")
    }
    var part = ShardIndex()
    part.shards = [
      Shard(
        name: relativeName(path, folder: folder), size: Int64(info.st_size),
        modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)),
    ]
    var currentKey: String?
    do {
      try scanTar(path) { member, read in
        let (key, ext) = splitKey(member.name)
        if key != currentKey {
          currentKey = key
          part.shardOfSample.append(UInt32(number))
          part.offsets.append(missingImage)
          part.sizes.append(0)
          part.labels.append(missingLabel)
          part.keyBytes += Array(key.utf8)
          part.keyEnds.append(UInt32(part.keyBytes.count))
        }
        let last = part.count - 1
        switch ext.lowercased() {
        case "jpg", "jpeg", "png":
          guard part.offsets[last] == missingImage else { return }
          guard member.size <= Int64(UInt32.max) else {
            throw TarError("\(path): member \(member.name) of \(member.size) bytes is too large for an image")
          }
          part.offsets[last] = UInt64(member.offset)
          part.sizes[last] = UInt32(member.size)
        case "cls":
          let text = String(decoding: try read(64), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
          let value = member.size <= 64 ? Int32(text) : nil
          part.labels[last] = value.map { $0 >= 0 ? $0 : unreadableLabel } ?? unreadableLabel
        default:
          return
        }
      }
    } catch let error as TarError {
      throw DataError.invalidConfiguration("shard \(error)")
    }
    return part
  }

  /// Appends another index's samples (its shard numbers already final).
  mutating func append(_ part: ShardIndex) {
    let base = UInt32(keyBytes.count)
    shardOfSample += part.shardOfSample
    offsets += part.offsets
    sizes += part.sizes
    labels += part.labels
    keyEnds += part.keyEnds.dropFirst().map { $0 + base }
    keyBytes += part.keyBytes
  }

  // MARK: - The index file

  /// The index file's bytes (see the top of this file).
  public func encoded() -> [UInt8] {
    var out = ShardIndex.magic
    func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
    func putArray<T: FixedWidthInteger>(_ values: [T]) {
      out.reserveCapacity(out.count + values.count * MemoryLayout<T>.size)
      for value in values { put(value) }
    }
    put(ShardIndex.version)
    put(UInt32(shards.count))
    for shard in shards {
      put(UInt32(shard.name.utf8.count))
      out += Array(shard.name.utf8)
      put(shard.size)
      put(shard.modified)
    }
    put(UInt64(count))
    putArray(shardOfSample)
    putArray(offsets)
    putArray(sizes)
    putArray(labels)
    putArray(keyEnds)
    out += keyBytes
    put(UInt32(checksum(out)))
    return out
  }

  /// Parses an index file's bytes; throws naming `path` when they are not a whole, valid index.
  public static func decode(_ bytes: [UInt8], path: String) throws -> ShardIndex {
    func bad(_ why: String) -> DataError {
      DataError.invalidConfiguration("shard index \(path) is unusable (\(why)): delete it or run mixer-dist shard index")
    }
    guard bytes.count >= magic.count + 12, Array(bytes.prefix(magic.count)) == magic else { throw bad("not a shard index") }
    let stored = bytes.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
    guard UInt32(checksum(Array(bytes.dropLast(4)))) == stored else { throw bad("checksum mismatch") }
    var at = magic.count
    func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
      guard at + MemoryLayout<T>.size <= bytes.count - 4 else { throw bad("ends early") }
      var value = T.zero
      for i in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[at + i]) << (8 * i) }
      at += MemoryLayout<T>.size
      return value
    }
    func getArray<T: FixedWidthInteger>(_: T.Type, _ n: Int) throws -> [T] {
      guard n >= 0, at + n * MemoryLayout<T>.size <= bytes.count - 4 else { throw bad("ends early") }
      let values = bytes.withUnsafeBytes { raw in
        (0..<n).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: at + $0 * MemoryLayout<T>.size, as: T.self)) }
      }
      at += n * MemoryLayout<T>.size
      return values
    }
    guard try get(UInt32.self) == version else { throw bad("another format version") }
    var index = ShardIndex()
    for _ in 0..<(try get(UInt32.self)) {
      let length = Int(try get(UInt32.self))
      let name = String(decoding: try getArray(UInt8.self, length), as: UTF8.self)
      index.shards.append(Shard(name: name, size: try get(Int64.self), modified: try get(Int64.self)))
    }
    let n = Int(try get(UInt64.self))
    index.shardOfSample = try getArray(UInt32.self, n)
    index.offsets = try getArray(UInt64.self, n)
    index.sizes = try getArray(UInt32.self, n)
    index.labels = try getArray(Int32.self, n)
    index.keyEnds = try getArray(UInt32.self, n + 1)
    index.keyBytes = try getArray(UInt8.self, Int(index.keyEnds.last ?? 0))
    guard at == bytes.count - 4, index.shardOfSample.allSatisfy({ Int($0) < index.shards.count }) else {
      throw bad("inconsistent contents")
    }
    return index
  }

  /// Writes the index to `path` atomically (a temporary file renamed over it).
  public func write(to path: String) throws {
    let temporary = path + ".\(getpid()).partial"
    do {
      try Data(encoded()).write(to: URL(fileURLWithPath: temporary))
      guard rename(temporary, path) == 0 else { throw TarError(String(cString: strerror(errno))) }
    } catch {
      unlink(temporary)
      throw DataError.invalidConfiguration("cannot write shard index \(path): \(error)")
    }
  }

  /// The index of `set`: read from its file when that lists the same shards, else built (and
  /// written, when `save`; a folder that cannot be written is said on stderr and the index kept in
  /// memory). Then every shard is checked against what was indexed: missing, other size or other
  /// modification time each throw naming the shard.
  public static func load(_ set: ShardSet, save: Bool = true) throws -> (index: ShardIndex, built: Bool) {
    for shard in set.shards where !FileManager.default.fileExists(atPath: shard) {
      throw DataError.invalidConfiguration("shard \(shard) is missing")
    }
    let names = set.shards.map { relativeName($0, folder: set.folder) }
    if FileManager.default.fileExists(atPath: set.indexPath) {
      let index = try decode(try readFileBytes(set.indexPath), path: set.indexPath)
      if index.shards.map(\.name) == names {
        try index.checkShards(set)
        return (index, false)
      }
    }
    let index = try build(set)
    if save {
      do { try index.write(to: set.indexPath) } catch {
        FileHandle.standardError.write(Data("mixer-dist: warning: \(error); the index is kept in memory\n".utf8))
      }
    }
    return (index, true)
  }

  /// Throws naming the first shard of `set` whose size or modification time is not the indexed one.
  public func checkShards(_ set: ShardSet) throws {
    for (number, path) in set.shards.enumerated() {
      var info = stat()
      guard stat(path, &info) == 0 else { throw DataError.invalidConfiguration("shard \(path) is missing") }
      let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
      let indexed = shards[number]
      if Int64(info.st_size) != indexed.size || modified != indexed.modified {
        let what = Int64(info.st_size) != indexed.size
          ? "its size is \(info.st_size) bytes, the index says \(indexed.size)" : "its modification time differs"
        throw DataError.invalidConfiguration(
          "shard \(path) changed since its index \(set.indexPath) was built (\(what)): "
            + "run mixer-dist shard index to index it again")
      }
    }
  }
}

/// webdataset's key and extension of a member name: the key ends at the first "." of the last
/// path component.
func splitKey(_ name: String) -> (key: String, ext: String) {
  let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
  guard let dot = name[slash...].firstIndex(of: ".") else { return (name, "") }
  return (String(name[..<dot]), String(name[name.index(after: dot)...]))
}

/// `path` relative to `folder` when it lies directly inside it, else unchanged.
func relativeName(_ path: String, folder: String) -> String {
  let parent = (path as NSString).deletingLastPathComponent
  let same = URL(fileURLWithPath: parent.isEmpty ? "." : parent).standardizedFileURL
    == URL(fileURLWithPath: folder).standardizedFileURL
  return same ? (path as NSString).lastPathComponent : path
}

/// Expands brace groups: `a{1..3}b` (zero-padded to the first bound's width), `{x,y}`, several
/// groups; throws on an unmatched brace or a descending range.
func expandBraces(_ pattern: String) throws -> [String] {
  guard let open = pattern.firstIndex(of: "{") else {
    guard !pattern.contains("}") else { throw DataError.invalidConfiguration("shard pattern \(pattern): unmatched }") }
    return [pattern]
  }
  guard let close = pattern[open...].firstIndex(of: "}") else {
    throw DataError.invalidConfiguration("shard pattern \(pattern): unmatched {")
  }
  let head = String(pattern[..<open])
  let body = String(pattern[pattern.index(after: open)..<close])
  let rest = try expandBraces(String(pattern[pattern.index(after: close)...]))
  var choices: [String]
  if let range = body.range(of: ".."), let low = Int(body[..<range.lowerBound]), let high = Int(body[range.upperBound...]) {
    guard low <= high else { throw DataError.invalidConfiguration("shard pattern \(pattern): range {\(body)} descends") }
    let width = body[..<range.lowerBound].count
    choices = (low...high).map { value in
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
  } else {
    choices = body.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
  }
  return choices.flatMap { choice in rest.map { head + choice + $0 } }
}

/// Splits at commas outside braces.
func splitTopLevelCommas(_ text: String) -> [String] {
  var parts: [String] = [], current = "", depth = 0
  for character in text {
    if character == "{" { depth += 1 }
    if character == "}" { depth -= 1 }
    if character == ",", depth == 0 {
      parts.append(current)
      current = ""
    } else {
      current.append(character)
    }
  }
  return parts + [current]
}

/// CRC-32 (zlib) of `bytes`.
func checksum(_ bytes: [UInt8]) -> UInt {
  bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
}

/// Per-shard results filled by several threads.
private final class ShardParts: @unchecked Sendable {
  private let lock = NSLock()
  private(set) var results: [Result<ShardIndex, Error>?]
  init(count: Int) { results = Array(repeating: nil, count: count) }
  func set(_ shard: Int, _ result: Result<ShardIndex, Error>) { lock.withLock { results[shard] = result } }
}

/// Hands out shard numbers to worker threads.
private final class ShardCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var next = 0
  func take(below limit: Int) -> Int? {
    lock.withLock {
      guard next < limit else { return nil }
      defer { next += 1 }
      return next
    }
  }
}
