// FileChecks.swift: what the file-format tests share: the one-line format error assertion,
// deterministic sample floats and bit flips (a damaged file).

import Foundation
import MixerCheckpoint
import XCTest

/// Asserts that `body` throws a `CheckpointFormatError` whose description contains `fragment`
/// and is one line.
public func assertFormatError(
  _ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
) {
  do {
    try body()
    XCTFail(
      "expected a CheckpointFormatError containing '\(fragment)', nothing was thrown", file: file, line: line)
  } catch let error as CheckpointFormatError {
    XCTAssertTrue(
      error.description.contains(fragment), "error '\(error)' does not mention '\(fragment)'", file: file,
      line: line)
    XCTAssertFalse(
      error.description.contains("\n"), "error is not one line: \(error)", file: file, line: line)
  } catch {
    XCTFail("expected a CheckpointFormatError, got \(type(of: error)): \(error)", file: file, line: line)
  }
}

/// A deterministic array of `count` floats in [-1, 1).
public func sampleFloats(_ count: Int, seed: UInt64 = 1) -> [Float] {
  var state = seed
  return (0..<count).map { _ in
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(state >> 40) / Float(1 << 23) - 1
  }
}

/// `data` with bit `bit` flipped.
public func flipping(_ data: Data, bit: Int) -> Data {
  var copy = data
  copy[copy.startIndex + bit / 8] ^= UInt8(1 << (bit % 8))
  return copy
}
