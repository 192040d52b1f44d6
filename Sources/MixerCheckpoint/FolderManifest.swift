// FolderManifest: what the manifest of every saved folder shares (a checkpoint's
// `manifest.json`, a weights folder's `model.json`, a quantized checkpoint's `quantized.json`): a
// format name and version and every file of the folder with its size and SHA-256. One routine
// reads a manifest (its config migrated from older versions, `CheckpointConfig.migrating`),
// checks it and verifies the folder's files against it; one writes it.

import Foundation

/// The manifest of a saved folder: the format, the version and the files, with what else its
/// kind must check (`validateContents`).
public protocol FolderManifest: Codable {
  /// The manifest's name in its folder (`manifest.json`).
  static var fileName: String { get }
  /// The `format` value it holds (`mixer-dist-checkpoint`).
  static var formatName: String { get }
  /// The only `version` this mixer-dist reads.
  static var currentVersion: Int { get }
  /// What the folder is, in errors (`mixer-dist checkpoint`).
  static var folderKind: String { get }
  var format: String { get }
  var version: Int { get }
  /// Every file of the folder with its size and SHA-256.
  var files: [CheckpointFile] { get }
  /// Throws unless the rest of the manifest (the model, shards, ...) is sound; called after the
  /// format and the version are checked, before the file entries.
  func validateContents(source: String) throws
  /// Why a folder may lack its manifest, said when it does (nil: nothing to add).
  static var absenceNote: String? { get }
  /// The manifest's JSON with its config brought up to date (settings added since it was
  /// written), before decoding.
  static func migrating(_ data: Data) -> Data
}

extension FolderManifest {
  public func validateContents(source: String) throws {}
  public static var absenceNote: String? { nil }
  public static func migrating(_ data: Data) -> Data { data }

  /// Throws unless the manifest is of this kind and version, its contents are sound and its
  /// file entries name plain files of the folder.
  public func validate(source: String) throws {
    func fail(_ message: String) -> Error { CheckpointFormatError(source, message) }
    guard format == Self.formatName else { throw fail("not a \(Self.folderKind) (format '\(format)')") }
    guard version == Self.currentVersion else {
      throw fail("\(Self.folderKind) format version \(version); this mixer-dist reads version \(Self.currentVersion)")
    }
    try validateContents(source: source)
    for file in files {
      guard !file.name.isEmpty, !file.name.contains("/"), !file.name.hasPrefix("."), file.bytes >= 0 else {
        throw fail("invalid file entry '\(file.name)'")
      }
    }
  }

  /// Decodes (migrating its config) and validates a manifest; every malformed input is a thrown
  /// one-line error.
  public static func decode(_ data: Data, source: String) throws -> Self {
    let manifest: Self
    do {
      manifest = try JSONDecoder().decode(Self.self, from: migrating(data))
    } catch let error as DecodingError {
      throw CheckpointFormatError(source, "malformed manifest: \(describeDecodingError(error))")
    } catch {
      throw CheckpointFormatError(source, "malformed manifest")
    }
    try manifest.validate(source: source)
    return manifest
  }

  /// Reads the manifest of `folder` and verifies the size and SHA-256 of each file `verifying`
  /// selects (all by default).
  public static func read(from folder: URL, verifying: (CheckpointFile) -> Bool = { _ in true }) throws -> Self {
    let url = folder.appendingPathComponent(fileName)
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw CheckpointError("\(folder.path): no \(fileName)" + (absenceNote.map { " (\($0))" } ?? ""))
    }
    let manifest = try decode(data, source: url.path)
    for file in manifest.files where verifying(file) { try verifyFile(file, in: folder, manifest: fileName) }
    return manifest
  }

  /// Writes the manifest into `folder` atomically (pretty-printed, keys sorted).
  public func write(in folder: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(self), to: folder.appendingPathComponent(Self.fileName))
  }
}

/// Checks one file of a folder against its manifest entry: present, its size, its SHA-256.
func verifyFile(_ file: CheckpointFile, in folder: URL, manifest: String = "the manifest") throws {
  let url = folder.appendingPathComponent(file.name)
  let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
  guard let size = (attributes?[.size] as? NSNumber)?.intValue else {
    throw CheckpointError("\(url.path): missing")
  }
  guard size == file.bytes else {
    throw CheckpointError("\(url.path): \(size) bytes, \(manifest) says \(file.bytes) (truncated or overwritten)")
  }
  guard try SHA256.hex(ofFileAt: url) == file.sha256 else {
    throw CheckpointError("\(url.path): SHA-256 mismatch (the file is corrupt)")
  }
}

/// A decoding error in one line: the missing key or the path of the bad value.
func describeDecodingError(_ error: DecodingError) -> String {
  switch error {
  case .keyNotFound(let key, _): return "missing '\(key.stringValue)'"
  case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
    let path = context.codingPath.map(\.stringValue).joined(separator: ".")
    return path.isEmpty ? "not a JSON object" : "bad value at '\(path)'"
  @unknown default: return "undecodable"
  }
}
