// FileSystemErrorTests.swift: Foundation's file errors (NSCocoaErrorDomain codes, with or without
// an underlying POSIX error and a path) and errnos become one line naming the path and the cause;
// never the raw `NSCocoaErrorDomain Code=640` text.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

final class FileSystemErrorTests: XCTestCase {
  func testCocoaCodesWithoutAnUnderlyingErrorAreMapped() {
    for (code, cause) in [
      (640, "no space left on the device"), (642, "the filesystem is read-only"), (513, "permission denied"),
      (257, "permission denied"), (4, "no such file or directory"), (260, "no such file or directory"),
    ] {
      let error = NSError(domain: NSCocoaErrorDomain, code: code, userInfo: [NSFilePathErrorKey: "/ck/params.safetensors"])
      let line = describeError(error)
      XCTAssertTrue(line.hasPrefix("cannot ") && line.contains("/ck/params.safetensors: \(cause)"), "\(code): \(line)")
      XCTAssertFalse(line.contains("NSCocoaErrorDomain"), line)
    }
    // no path in the error: the caller's, or still one line
    let bare = NSError(domain: NSCocoaErrorDomain, code: 640)
    XCTAssertEqual(FileSystemError.from(bare, path: "/ck", operation: "write")?.description, "cannot write /ck: no space left on the device")
    XCTAssertEqual(describeError(bare), "cannot write a file: no space left on the device")
  }

  func testTheUnderlyingErrnoDecides() {
    let underlying = NSError(domain: NSPOSIXErrorDomain, code: Int(EDQUOT))
    let error = NSError(
      domain: NSCocoaErrorDomain, code: 512, userInfo: [NSFilePathErrorKey: "/q/x", NSUnderlyingErrorKey: underlying])
    XCTAssertEqual(describeError(error), "cannot write /q/x: no space left on the device")
    XCTAssertEqual(
      describeError(CheckpointIOError(path: "/ro/step-1", operation: "fsync", code: EROFS)),
      "cannot fsync /ro/step-1: the filesystem is read-only")
  }

  func testRealWritesAreOneLine() throws {
    let dir = try makeTemporaryDirectory(self)
    let missing = dir.appendingPathComponent("no/such/folder/file.bin")
    XCTAssertThrowsError(try AtomicFile.write(Data([1, 2, 3]), to: missing)) { error in
      XCTAssertEqual(describeError(error), "cannot write \(missing.path): no such file or directory")
    }
    XCTAssertThrowsError(try Data([1]).write(to: missing)) { error in
      let line = describeError(error)  // Foundation's code 4 does not say whether it read or wrote
      XCTAssertTrue(line.hasPrefix("cannot ") && line.hasSuffix(" \(missing.path): no such file or directory"), line)
    }
    // errors that are not about files keep their own words
    XCTAssertEqual(describeError(CheckpointError("bad manifest")), "bad manifest")
  }

  func testSpaceErrorSaysBothSizes() {
    let error = CheckpointSpaceError(directory: "/ck", needed: 6_900_000, free: 3_600_000)
    XCTAssertEqual(error.description, "not enough space in /ck: the checkpoint needs 6.9 MB, the filesystem has 3.6 MB free")
    XCTAssertNotNil(freeBytes(at: "/tmp/does/not/exist/yet"), "the nearest existing parent is asked")
  }
}
