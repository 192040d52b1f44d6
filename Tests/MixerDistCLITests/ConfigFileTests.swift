// `--config FILE.yaml`: keys are flag names, the command line overrides the file, and the
// effective settings land in the run folder's config.json.

import MixerTestSupport
import XCTest

final class ConfigFileTests: XCTestCase {
  func testFileSetsFlagsAndCommandLineOverrides() throws {
    let dir = try makeTemporaryDirectory(self)
    let yaml = dir.appendingPathComponent("run.yaml")
    try """
      # a small run
      preset: tiny
      hidden: 32
      blocks: 1
      tokens-mlp: 8
      channels-mlp: 32
      patch: 8
      steps: 50
      batch: 8
      lr: 0.004
      weight-decay: 0.2
      train-examples: 64
      val-examples: 16
      label-smoothing: 0.1
      """.write(to: yaml, atomically: true, encoding: .utf8)
    let run = dir.appendingPathComponent("run")
    let result = try mixerDist(["train", "--config", yaml.path, "--steps", "2", "--run-dir", run.path])
    XCTAssertEqual(result.status, 0, result.stderr)
    let config = try JSONSerialization.jsonObject(
      with: Data(contentsOf: run.appendingPathComponent("config.json"))) as! [String: Any]
    XCTAssertEqual(config["steps"] as? Int, 2, "the command line wins")
    XCTAssertEqual(config["learningRate"] as? Double ?? 0, 0.004, accuracy: 1e-9)
    XCTAssertEqual(config["labelSmoothing"] as? Double ?? 0, 0.1, accuracy: 1e-7)
    XCTAssertEqual((config["model"] as? [String: Any])?["hidden"] as? Int, 32)
    XCTAssertEqual((config["optimizer"] as? [String: Any])?["weightDecay"] as? Double ?? 0, 0.2, accuracy: 1e-7)
  }

  func testBadConfigFiles() throws {
    let dir = try makeTemporaryDirectory(self)
    let missing = try mixerDist(["train", "--config", dir.appendingPathComponent("none.yaml").path])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("cannot read config file"), missing.stderr)
    let list = dir.appendingPathComponent("list.yaml")
    try "- 1\n- 2\n".write(to: list, atomically: true, encoding: .utf8)
    let notMapping = try mixerDist(["train", "--config", list.path])
    XCTAssertNotEqual(notMapping.status, 0)
    XCTAssertTrue(notMapping.stderr.contains("must be a mapping"), notMapping.stderr)
    let unknown = dir.appendingPathComponent("unknown.yaml")
    try "no-such-flag: 3\n".write(to: unknown, atomically: true, encoding: .utf8)
    let unknownResult = try mixerDist(["train", "--config", unknown.path])
    XCTAssertNotEqual(unknownResult.status, 0)
    XCTAssertTrue(unknownResult.stderr.contains("no-such-flag"), unknownResult.stderr)
  }

  /// The shipped configs parse and validate (--print-config checks without training).
  func testShippedConfigsParse() throws {
    for name in ["default", "cifar", "b16-imagenet", "b16-finetune"] {
      let path = packageRoot.appendingPathComponent("configs/\(name).yaml").path
      let result = try mixerDist(["train", "--config", path, "--print-config"])
      XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
      XCTAssertTrue(result.stdout.contains("\"steps\""), result.stdout)
    }
    let defaults = try mixerDist(["train", "--print-config"])
    let fromFile = try mixerDist(["train", "--config", packageRoot.appendingPathComponent("configs/default.yaml").path, "--print-config"])
    XCTAssertEqual(defaults.stdout, fromFile.stdout, "configs/default.yaml is the default run")
  }
}
