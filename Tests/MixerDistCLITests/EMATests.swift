// `train --ema DECAY` end to end (issue 28, item 6): a run killed in a background save and resumed
// ends with the uninterrupted run's parameters and EMA, `cmp`-identical (one process; two ranks
// under ZeRO-1 with real mpirun; and under --exact, where a killed 2-rank ZeRO-1 run gives the EMA
// of a one-process run), `eval`/`predict`/`export --weights ema` read the EMA (eval's numbers are
// the run's own `_ema` evaluation and differ from the raw ones), the errors, and the help.

import Foundation
import MixerCheckpoint
import MixerTestSupport
import XCTest

final class EMATests: XCTestCase {
  let args = ["train"] + failureTestModel + ["--steps", "20", "--save-every", "5", "--seed", "5", "--ema", "0.9", "--ema-warmup"]

  /// The bytes a run leaves that the EMA and the parameters are: final-parameters.f32, the last
  /// checkpoint's params.safetensors and every rank's ema-rank-R.safetensors.
  func finalBytes(_ dir: URL, ranks: Int) throws -> [String: Data] {
    let last = dir.appendingPathComponent("checkpoints/step-00000020")
    var files = ["final-parameters.f32": try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))]
    for name in ["params.safetensors"] + (0..<ranks).map({ String(format: "ema-rank-%05d.safetensors", $0) }) {
      files[name] = try Data(contentsOf: last.appendingPathComponent(name))
    }
    return files
  }

  /// Killed in step 10's background save, resumed: the bytes of an uninterrupted synchronous run
  /// (parameters and EMA), alone and as 2 ranks under ZeRO-1.
  func testKilledAndResumedRunMatchesTheUninterruptedOne() throws {
    for ranks in [1, 2] {
      let extra = ranks == 1 ? [] : ["--zero", "1", "--timeout", "60"]
      func train(_ more: [String]) throws -> RunResult {
        ranks == 1 ? try mixerDist(args + extra + more) : try mpirunMixerDist(ranks: ranks, args + extra + more)
      }
      let straight = try makeTemporaryDirectory(self, "straight")
      let reference = try train(["--save-mode", "sync", "--run-dir", straight.path])
      XCTAssertEqual(reference.status, 0, reference.stdout + reference.stderr)

      let dir = try makeTemporaryDirectory(self, "killed")
      let killed = try train(["--run-dir", dir.path, "--kill-in-save-at-step", "10"])
      XCTAssertNotEqual(killed.status, 0, killed.stdout + killed.stderr)
      let resumed = try train(["--run-dir", dir.path, "--resume", "auto"])
      XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
      XCTAssertTrue(resumed.stdout.contains("step-00000005 (step 5, saved by \(ranks) rank(s))"), resumed.stdout)
      XCTAssertFalse(resumed.stdout.contains("holds no EMA"), resumed.stdout)
      let expected = try finalBytes(straight, ranks: ranks), got = try finalBytes(dir, ranks: ranks)
      XCTAssertEqual(Set(got.keys), Set(expected.keys))
      for (name, bytes) in expected { XCTAssertTrue(got[name] == bytes, "\(ranks) rank(s): \(name) differs") }
    }
  }

  /// Under --exact the EMA is the same bits on any number of ranks: a 2-rank ZeRO-1 run killed
  /// and resumed exports (--weights ema) the bytes of a one-process run's EMA.
  func testExactRunsGiveTheSameAverageOnOneAndTwoRanks() throws {
    let exact = ["--exact", "--micro-batch", "8"]
    let alone = try makeTemporaryDirectory(self, "alone")
    let one = try mixerDist(args + exact + ["--run-dir", alone.path])
    XCTAssertEqual(one.status, 0, one.stdout + one.stderr)
    let dir = try makeTemporaryDirectory(self, "two")
    let two = exact + ["--zero", "1", "--timeout", "60", "--run-dir", dir.path]
    let killed = try mpirunMixerDist(ranks: 2, args + two + ["--kill-in-save-at-step", "10"])
    XCTAssertNotEqual(killed.status, 0, killed.stdout + killed.stderr)
    let resumed = try mpirunMixerDist(ranks: 2, args + two + ["--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
    var exported: [Data] = []
    for run in [alone, dir] {
      let file = run.appendingPathComponent("ema.safetensors")
      let result = try mixerDist(["export", run.path, "--weights", "ema", "--output", file.path])
      XCTAssertEqual(result.status, 0, result.stderr)
      exported.append(try Data(contentsOf: file))
    }
    XCTAssertEqual(exported[0], exported[1], "the EMA of 1 and 2 ranks differs under --exact")
    XCTAssertEqual(
      try Data(contentsOf: alone.appendingPathComponent("final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32")))
  }

  /// `eval --weights ema` gives the run's own last `_ema` evaluation, not the raw one; export and
  /// predict read the EMA too (the exported tensors are the EMA files' values).
  func testEvalPredictExportReadTheAverage() throws {
    let dir = try makeTemporaryDirectory(self)
    let train = try mixerDist(["train"] + failureTestModel + ["--steps", "10", "--ema", "0.8", "--run-dir", dir.path])
    XCTAssertEqual(train.status, 0, train.stdout + train.stderr)
    XCTAssertTrue(train.stdout.contains("  EMA: top-1 "), train.stdout)
    func evaluation(_ extra: [String]) throws -> [String: Double] {
      let result = try mixerDist(["eval", dir.path, "--json", "--batch", "250"] + extra)
      XCTAssertEqual(result.status, 0, result.stderr)
      let line = result.stdout.split(separator: "\n").last { $0.hasPrefix("{") }!
      return (try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]).compactMapValues { $0 as? Double }
    }
    let raw = try evaluation([]), ema = try evaluation(["--weights", "ema"])
    XCTAssertNotEqual(raw["loss"], ema["loss"])
    let metrics = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    let record = try JSONSerialization.jsonObject(with: Data(metrics.split(separator: "\n").last!.utf8)) as! [String: Any]
    XCTAssertEqual(record["val_top1_ema"] as? Double, ema["top1"])
    XCTAssertEqual(record["val_loss_ema"] as? Double ?? -1, ema["loss"]!, accuracy: 1e-6 * ema["loss"]!)
    XCTAssertEqual(record["val_top1"] as? Double, raw["top1"])

    let exported = dir.appendingPathComponent("ema.safetensors")
    let export = try mixerDist(["export", dir.path, "--weights", "ema", "--output", exported.path])
    XCTAssertEqual(export.status, 0, export.stderr)
    let tensors = try SafeTensorsFile(contentsOf: exported)
    let average = try SafeTensorsFile(
      contentsOf: dir.appendingPathComponent("checkpoints/step-00000010/ema-rank-00000.safetensors")).floats("ema")
    // every exported tensor is a view of the flat average (the layout is checked in EMATrainingTests)
    let values = try tensors.tensors.flatMap { try tensors.floats($0.name) }
    XCTAssertEqual(values.count, average.count)
    XCTAssertEqual(values.sorted(), average.sorted())
    let onnx = try mixerDist(["export", dir.path, "--weights", "ema", "--output", dir.appendingPathComponent("ema.onnx").path])
    XCTAssertEqual(onnx.status, 0, onnx.stderr)

    let images = dir.appendingPathComponent("images")
    try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
    var rgb = [UInt8](repeating: 0, count: 32 * 32 * 3)
    for i in rgb.indices { rgb[i] = UInt8((i * 37) % 251) }
    try pngFile(width: 32, height: 32, rgb: rgb).write(to: images.appendingPathComponent("a.png"))
    let predictions = try ["raw", "ema"].map { weights -> String in
      let result = try mixerDist(["predict", dir.path, images.path, "--json", "--weights", weights])
      XCTAssertEqual(result.status, 0, result.stderr)
      return result.stdout
    }
    XCTAssertNotEqual(predictions[0], predictions[1], "the EMA's probabilities are the raw ones")
  }

  /// A checkpoint without EMA and --weights ema: one line saying so, exit 1 (eval, predict,
  /// export, quantize); bad --ema settings are refused before training.
  func testErrors() throws {
    let dir = try makeTemporaryDirectory(self)
    let train = try mixerDist(["train"] + failureTestModel + ["--steps", "2", "--run-dir", dir.path])
    XCTAssertEqual(train.status, 0, train.stdout + train.stderr)
    let image = dir.appendingPathComponent("a.png")
    try pngFile(width: 32, height: 32, rgb: [UInt8](repeating: 90, count: 32 * 32 * 3)).write(to: image)
    let commands: [[String]] = [
      ["eval", dir.path], ["predict", dir.path, image.path], ["export", dir.path, "--output", dir.appendingPathComponent("x.npz").path],
      ["quantize", dir.path, "--output", dir.appendingPathComponent("q").path],
    ]
    for command in commands {
      let result = try mixerDist(command + ["--weights", "ema"])
      XCTAssertEqual(result.status, 1, "\(command[0]): \(result.stdout)\(result.stderr)")
      XCTAssertTrue(onlyLine(result).contains("holds no EMA weights (trained without --ema): use --weights raw"), result.stderr)
    }
    let other = dir.appendingPathComponent("other").path
    for (flags, message) in [
      (["--ema", "1"], "--ema must be in [0, 1)"),
      (["--ema-warmup"], "--ema-warmup warms up the decay of --ema: pass --ema DECAY too"),
      (["--keep-best", "val_top1_ema"], "the _ema metrics need --ema DECAY"),
    ] {
      let result = try mixerDist(["train"] + failureTestModel + ["--steps", "2", "--run-dir", other] + flags)
      XCTAssertNotEqual(result.status, 0, "\(flags)")
      XCTAssertTrue(onlyLine(result).contains(message), result.stderr)
    }
  }

  /// The flags are documented where users look.
  func testHelp() throws {
    let train = try mixerDist(["train", "--help"])
    for text in ["--ema <ema>", "--ema-warmup", "ModelEmaV3", "val_top1_ema"] {
      XCTAssertTrue(train.stdout.contains(text), "\(text) missing from train --help")
    }
    for command in ["eval", "predict", "export", "quantize"] {
      XCTAssertTrue(try mixerDist([command, "--help"]).stdout.contains("--weights <weights>"), "\(command) --help")
    }
  }
}
