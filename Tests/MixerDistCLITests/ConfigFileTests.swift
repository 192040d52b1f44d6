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

  /// The shipped configs parse and validate (--print-config checks without training; their data
  /// is replaced by a small image folder, since --print-config checks that the data exists).
  func testShippedConfigsParse() throws {
    let dir = try makeTemporaryDirectory(self)
    let images = try smallImageFolder(dir)
    for name in ["default", "cifar", "mixer-b16-i1k", "mixer-b16-i1k-60ep", "b16-finetune"] {
      let path = packageRoot.appendingPathComponent("configs/\(name).yaml").path
      var arguments = ["train", "--config", path, "--print-config"]
      if name != "default" { arguments += ["--data", "folder:\(images.path)"] }
      let result = try mixerDist(arguments)
      XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
      XCTAssertTrue(result.stdout.contains("\nsteps: "), result.stdout)
    }
    let defaults = try mixerDist(["train", "--print-config"])
    let fromFile = try mixerDist(["train", "--config", packageRoot.appendingPathComponent("configs/default.yaml").path, "--print-config"])
    XCTAssertEqual(defaults.stdout, fromFile.stdout, "configs/default.yaml is the default run")
  }

  /// --print-config writes a --config file: fed back, it prints the same settings (it used to
  /// print JSON with field names that --config rejected).
  func testPrintConfigRoundTrips() throws {
    let dir = try makeTemporaryDirectory(self)
    let first = try mixerDist([
      "train", "--block-pattern", "alternate:mixer,attention", "--lr", "0.0007", "--randaugment", "2,9",
      "--normalize", "imagenet", "--stochastic-depth", "0.1", "--run-dir", dir.appendingPathComponent("r").path,
      "--loss", "sigmoid", "--head-bias-init", "-6.9", "--optimizer", "adam", "--weight-decay", "0.0001",
      "--decay", "linear", "--lr-end", "1e-08", "--warmup-from-zero", "--print-config",
    ])
    XCTAssertEqual(first.status, 0, first.stderr)
    let file = dir.appendingPathComponent("printed.yaml")
    try first.stdout.write(to: file, atomically: true, encoding: .utf8)
    let second = try mixerDist(["train", "--config", file.path, "--print-config"])
    XCTAssertEqual(second.status, 0, second.stderr)
    XCTAssertEqual(second.stdout, first.stdout)
    XCTAssertTrue(first.stdout.contains("block-pattern: \"alternate:mixer,attention\"\n"), first.stdout)
    XCTAssertTrue(first.stdout.contains("lr: 0.0007\n"), first.stdout)
    for line in ["loss: \"sigmoid\"", "head-bias-init: -6.9", "optimizer: \"adam\"", "lr-end: 1e-08", "warmup-from-zero: true"] {
      XCTAssertTrue(first.stdout.contains(line + "\n"), "\(line) missing from:\n\(first.stdout)")
    }
  }

  /// --print-config checks that the data exists; a YAML typo names the file, the key and the
  /// nearest flag name.
  func testPrintConfigChecksDataAndKeys() throws {
    let dir = try makeTemporaryDirectory(self)
    let missing = try mixerDist(["train", "--data", "folder:/nonexistent/images", "--print-config"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("/nonexistent/images"), missing.stderr)
    let typo = dir.appendingPathComponent("typo.yaml")
    try "stpes: 3\n".write(to: typo, atomically: true, encoding: .utf8)
    let result = try mixerDist(["train", "--config", typo.path, "--print-config"])
    XCTAssertNotEqual(result.status, 0)
    XCTAssertTrue(result.stderr.contains("\(typo.path): unknown key 'stpes' (did you mean 'steps'?)"), result.stderr)
  }
}

/// An image folder of two classes (train/a, train/b) of small PNGs.
func smallImageFolder(_ dir: URL) throws -> URL {
  let root = dir.appendingPathComponent("images")
  for (c, name) in ["a", "b"].enumerated() {
    let folder = root.appendingPathComponent("train/\(name)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    for i in 0..<4 {
      var rgb = [UInt8](repeating: 40, count: 16 * 16 * 3)
      for p in 0..<(16 * 16) { rgb[p * 3 + c] = UInt8(120 + 20 * i) }
      try pngFile(width: 16, height: 16, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
    }
  }
  return root
}

