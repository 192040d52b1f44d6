// Sha256.swift: SHA-256 of in-memory data and of files, streamed in 1 MiB reads so
// multi-gigabyte checkpoint files hash in constant memory. Checkpoint manifests record the
// lowercase hex digest of every file. The hashing itself is swift-crypto's (BoringSSL on Linux,
// CryptoKit on Apple platforms); this wrapper only adds file streaming and hex.

import Crypto
import Foundation

/// An incremental SHA-256 hasher.
public struct SHA256: Sendable {
  private var hasher = Crypto.SHA256()

  public init() {}

  /// Feeds `data` into the hash.
  public mutating func update(_ data: Data) {
    hasher.update(data: data)
  }

  /// Feeds raw bytes into the hash.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    hasher.update(bufferPointer: bytes)
  }

  /// The 32-byte digest of everything fed so far.
  public func finalize() -> [UInt8] {
    Array(hasher.finalize())
  }

  /// The lowercase hex SHA-256 of `data`.
  public static func hex(of data: Data) -> String {
    hexString(Array(Crypto.SHA256.hash(data: data)))
  }

  /// The lowercase hex SHA-256 of the file at `url`, read in 1 MiB chunks.
  public static func hex(ofFileAt url: URL) throws -> String {
    let handle = try FileHandle(forReadingFrom: url)
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
      hasher.update(chunk)
    }
    return hexString(hasher.finalize())
  }

  static func hexString(_ digest: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: digest.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
  }
}
