// Bad input gets one clear line on stderr and a non-zero exit, never a crash.

import MixerTestSupport
import XCTest

final class BadInputTests: XCTestCase {
  func assertOneLineError(_ arguments: [String], contains text: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let result = try mixerDist(arguments, timeout: 60)
    XCTAssertNotEqual(result.status, 0, "exit status of \(arguments)", file: file, line: line)
    XCTAssertFalse(result.timedOut, file: file, line: line)
    let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
    XCTAssertTrue(result.stderr.contains(text), "stderr of \(arguments): \(result.stderr)", file: file, line: line)
    XCTAssertLessThanOrEqual(lines.count, 3, "a short error, got: \(result.stderr)", file: file, line: line)
  }

  func testUnknownPreset() throws {
    try assertOneLineError(["train", "--preset", "X/7"], contains: "unknown preset 'X/7'")
    try assertOneLineError(["describe", "--preset", "nope"], contains: "unknown preset 'nope'")
  }

  func testImageSizeNotDivisibleByPatch() throws {
    try assertOneLineError(["describe", "--preset", "S/16", "--image-size", "200"], contains: "not divisible by the patch size 16")
    try assertOneLineError(["train", "--image-size", "30"], contains: "not divisible by the patch size 4")
  }

  func testNegativeLearningRate() throws {
    try assertOneLineError(["train", "--lr=-0.1", "--steps", "1"], contains: "learning rate must be non-negative")
  }

  func testReferenceFolderProblems() throws {
    try assertOneLineError(["verify-reference", "/nonexistent"], contains: "is not a directory")
    let dir = try makeTemporaryDirectory(self)
    let source = packageRoot.appendingPathComponent("Tests/Fixtures/reference/mixer-tiny-tanh")
    for name in ["config.json", "batch.npz", "grads.npz"] {
      try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: dir.appendingPathComponent(name))
    }
    try assertOneLineError(["verify-reference", dir.path], contains: "params.npz")
    // a truncated npz
    let params = try Data(contentsOf: source.appendingPathComponent("params.npz"))
    try params.prefix(params.count / 2).write(to: dir.appendingPathComponent("params.npz"))
    try assertOneLineError(["verify-reference", dir.path], contains: "params.npz")
  }

  func testUnknownFlagAndSubcommand() throws {
    let result = try mixerDist(["train", "--no-such-flag"])
    XCTAssertNotEqual(result.status, 0)
    XCTAssertTrue(result.stderr.contains("no-such-flag"), result.stderr)
    XCTAssertNotEqual(try mixerDist(["frobnicate"]).status, 0)
  }

  func testVerifyReferencePassesOnFixtures() throws {
    for name in ["mixer-tiny-tanh", "mixer-tiny-erf"] {
      let result = try mixerDist(["verify-reference", packageRoot.appendingPathComponent("Tests/Fixtures/reference/\(name)").path])
      XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
      XCTAssertTrue(result.stdout.contains("PASS: 32 quantities within tolerance"), result.stdout)
    }
  }

  func testDescribeS32() throws {
    let result = try mixerDist(["describe", "--preset", "S/32"])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stdout.contains("total parameters: 19,104,624"), result.stdout)
    XCTAssertTrue(result.stdout.contains("MixerBlock_7/channel_mixing/Dense_1/kernel"), result.stdout)
  }
}
