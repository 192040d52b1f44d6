// TestSupport.swift: helpers shared by the MixerCheckpoint tests: temporary directories, the
// reference-tensor folder, an error assertion, and a relative comparison of float arrays.

import Foundation
import XCTest

@testable import MixerCheckpoint

/// The shared reference tensors (override with MIXER_REFERENCE_DIR).
let referenceDirectory = URL(
  fileURLWithPath: ProcessInfo.processInfo.environment["MIXER_REFERENCE_DIR"] ?? "/work/shared/reference")

/// A fresh empty directory under the system temporary directory, removed at the end of the test.
func makeTemporaryDirectory(_ testCase: XCTestCase) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "mixer-checkpoint-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  testCase.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}

/// Asserts that `body` throws a `CheckpointFormatError` whose description contains `fragment`.
func assertFormatError(
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

/// Asserts ‖actual − expected‖ / ‖expected‖ ≤ tolerance, reporting the max difference and the
/// first index that differs by more than tolerance × max |expected|.
func assertClose(
  _ actual: [Float], _ expected: [Float], tolerance: Double = 1e-6, file: StaticString = #filePath,
  line: UInt = #line
) {
  guard actual.count == expected.count else {
    return XCTFail("count \(actual.count) != \(expected.count)", file: file, line: line)
  }
  var difference = 0.0
  var norm = 0.0
  var maxDifference = 0.0
  var maxMagnitude = 0.0
  for (a, e) in zip(actual, expected) {
    difference += Double(a - e) * Double(a - e)
    norm += Double(e) * Double(e)
    maxDifference = max(maxDifference, abs(Double(a - e)))
    maxMagnitude = max(maxMagnitude, abs(Double(e)))
  }
  let relative = norm > 0 ? (difference / norm).squareRoot() : difference.squareRoot()
  if relative > tolerance {
    let firstBad =
      actual.indices.first { abs(Double(actual[$0] - expected[$0])) > tolerance * maxMagnitude } ?? -1
    XCTFail(
      "relative error \(relative) > \(tolerance); max |diff| \(maxDifference); first bad index \(firstBad)",
      file: file, line: line)
  }
}

/// A deterministic array of `count` floats in [-1, 1).
func sampleFloats(_ count: Int, seed: UInt64 = 1) -> [Float] {
  var state = seed
  return (0..<count).map { _ in
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(state >> 40) / Float(1 << 23) - 1
  }
}

/// `data` with bit `bit` flipped.
func flipping(_ data: Data, bit: Int) -> Data {
  var copy = data
  copy[copy.startIndex + bit / 8] ^= UInt8(1 << (bit % 8))
  return copy
}
