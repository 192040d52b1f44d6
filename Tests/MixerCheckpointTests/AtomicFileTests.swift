// AtomicFileTests.swift: atomic writes create or replace the destination, leave no temporary
// files behind, and leave the old file untouched when the writer fails.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

final class AtomicFileTests: XCTestCase {
  struct WriterFailed: Error {}

  func testWriteCreatesAndReplaces() throws {
    let directory = try makeTemporaryDirectory(self)
    let url = directory.appendingPathComponent("manifest.json")
    try AtomicFile.write(Data("one".utf8), to: url)
    try AtomicFile.write(Data("two".utf8), to: url)
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "two")
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["manifest.json"])
    try AtomicFile.syncDirectory(at: directory)
    try AtomicFile.syncFile(at: url)
  }

  func testFailedWriterLeavesOldFileAndNoTemporary() throws {
    let directory = try makeTemporaryDirectory(self)
    let url = directory.appendingPathComponent("weights.safetensors")
    try AtomicFile.write(Data("old".utf8), to: url)
    XCTAssertThrowsError(
      try AtomicFile.create(url) { temporary in
        try Data("partial".utf8).write(to: temporary)
        throw WriterFailed()
      }
    ) { XCTAssertTrue($0 is WriterFailed) }
    XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "old")
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: directory.path), ["weights.safetensors"])
  }

  func testSystemCallFailuresThrowOneLineErrors() throws {
    let missing = try makeTemporaryDirectory(self).appendingPathComponent("no/such/dir")
    XCTAssertThrowsError(try AtomicFile.syncDirectory(at: missing)) { error in
      let description = (error as? CheckpointIOError)?.description ?? ""
      XCTAssertTrue(description.contains("open failed"), description)
    }
    XCTAssertThrowsError(try AtomicFile.write(Data(), to: missing.appendingPathComponent("x")))
  }
}
