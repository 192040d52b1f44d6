// Sha256Tests.swift: SHA-256 against the FIPS 180-4 / NIST example vectors, incremental
// updates split at every block boundary, and streamed file hashing.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

final class Sha256Tests: XCTestCase {
  func testStandardVectors() {
    XCTAssertEqual(SHA256.hex(of: Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(
      SHA256.hex(of: Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      SHA256.hex(of: Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    XCTAssertEqual(
      SHA256.hex(of: Data(repeating: UInt8(ascii: "a"), count: 1_000_000)),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }

  func testIncrementalUpdatesMatchOneShot() {
    let message = Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
    let expected = SHA256.hex(of: message)
    for split in [0, 1, 55, 56, 63, 64, 65, 128, 299, 300] {
      var hasher = SHA256()
      hasher.update(message.prefix(split))
      hasher.update(message.dropFirst(split))
      XCTAssertEqual(SHA256.hexString(hasher.finalize()), expected, "split at \(split)")
    }
    // Lengths around the padding boundary (55, 56 and 64 bytes need one or two extra blocks).
    XCTAssertEqual(
      SHA256.hex(of: Data(repeating: 0x61, count: 55)),
      "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
    XCTAssertEqual(
      SHA256.hex(of: Data(repeating: 0x61, count: 56)),
      "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
    XCTAssertEqual(
      SHA256.hex(of: Data(repeating: 0x61, count: 64)),
      "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
  }

  func testFileHashIsStreamed() throws {
    let url = try makeTemporaryDirectory(self).appendingPathComponent("blob")
    let contents = Data((0..<(2 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 >> 3) })
    try contents.write(to: url)
    XCTAssertEqual(try SHA256.hex(ofFileAt: url), SHA256.hex(of: contents))
    XCTAssertThrowsError(try SHA256.hex(ofFileAt: url.appendingPathExtension("missing")))
  }
}
