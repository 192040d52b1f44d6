// What inference reads and what `export` writes, as a user meets it: eval and export of a
// checkpoint whose optimizer file is gone (inference needs only the manifest and the parameters;
// a missing parameters file is named); the export format taken from the output's extension and a
// contradicting --format refused; a hybrid, a CNN-stem and a segmentation model export to ONNX.

import Foundation
import MixerCheckpoint
import MixerTestSupport
import XCTest

final class InferenceInputsTests: XCTestCase {
  func testInferenceNeedsNoOptimizerState() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir.appendingPathComponent("run"), checkpoint: ck, steps: 2, validationExamples: 16)
    XCTAssertEqual(train.status, 0, train.stderr)
    let step = ck.appendingPathComponent("step-00000002")
    try FileManager.default.removeItem(at: step.appendingPathComponent("optimizer-rank-00000.safetensors"))
    for target in [ck, step] {
      let eval = try mixerDist(["eval", target.path, "--json"])
      XCTAssertEqual(eval.status, 0, "eval \(target.lastPathComponent): \(eval.stderr)")
      let npz = try mixerDist(["export", target.path, "--output", dir.appendingPathComponent("m.npz").path])
      XCTAssertEqual(npz.status, 0, "export \(target.lastPathComponent): \(npz.stderr)")
      let onnx = try mixerDist(["export", target.path, "--output", dir.appendingPathComponent("m.onnx").path])
      XCTAssertEqual(onnx.status, 0, "export onnx \(target.lastPathComponent): \(onnx.stderr)")
    }
    let inspect = try mixerDist(["inspect", step.path])
    XCTAssertEqual(inspect.status, 1, "training cannot resume from it")
    XCTAssertTrue(inspect.stdout.contains("optimizer-rank-00000.safetensors: missing"), inspect.stdout)
    XCTAssertTrue(inspect.stdout.contains("eval, predict, export and quantize can use it"), inspect.stdout)

    // without its parameters nothing can be read, and the message names the file
    try FileManager.default.removeItem(at: step.appendingPathComponent("params.safetensors"))
    for target in [ck, step] {
      let exports = ["m.onnx", "m.npz", "m.safetensors"].map { ["export", target.path, "--output", dir.appendingPathComponent($0).path] }
      for command in [["eval", target.path]] + exports {
        let result = try mixerDist(command)
        XCTAssertNotEqual(result.status, 0, "\(command)")
        XCTAssertTrue(result.stderr.contains("params.safetensors: missing"), "\(command): \(result.stderr)")
        // (export .npz printed the skip with a doubled prefix, then a second line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(command): \(result.stderr)")
        XCTAssertFalse(result.stderr.contains("mixer-dist: mixer-dist:"), "\(command): \(result.stderr)")
      }
    }
  }

  func testExportFormatComesFromTheExtension() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir.appendingPathComponent("run"), checkpoint: ck, steps: 2, validationExamples: 16)
    XCTAssertEqual(train.status, 0, train.stderr)
    let onnx = dir.appendingPathComponent("m.onnx")
    let exported = try mixerDist(["export", ck.path, "--output", onnx.path])
    XCTAssertEqual(exported.status, 0, exported.stderr)
    XCTAssertTrue(exported.stdout.contains("ONNX opset 17"), exported.stdout)
    XCTAssertNotEqual(try Data(contentsOf: onnx).prefix(2), Data("PK".utf8), "an ONNX file, not a zip")

    let safetensors = dir.appendingPathComponent("m.safetensors"), npz = dir.appendingPathComponent("m.npz")
    XCTAssertEqual(try mixerDist(["export", ck.path, "--output", safetensors.path]).status, 0)
    XCTAssertEqual(try mixerDist(["export", ck.path, "--output", npz.path]).status, 0)
    let fromNPZ = try NPZ.readFloats(contentsOf: npz)
    let file = try SafeTensorsFile(contentsOf: safetensors)
    XCTAssertEqual(Set(file.tensors.map(\.name)), Set(fromNPZ.keys))
    for (name, array) in fromNPZ { XCTAssertEqual(try file.floats(name), array.data, name) }

    let contradiction = try mixerDist(["export", ck.path, "--format", "npz", "--output", dir.appendingPathComponent("x.onnx").path])
    XCTAssertNotEqual(contradiction.status, 0)
    XCTAssertTrue(contradiction.stderr.contains("--format npz contradicts --output"), contradiction.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.onnx").path))
    let unnamed = try mixerDist(["export", ck.path, "--output", dir.appendingPathComponent("x.bin").path])
    XCTAssertNotEqual(unnamed.status, 0)
    XCTAssertTrue(unnamed.stderr.contains("name the format by the extension"), unnamed.stderr)
    let told = try mixerDist(["export", ck.path, "--format", "onnx", "--output", dir.appendingPathComponent("x.bin").path])
    XCTAssertEqual(told.status, 0, told.stderr)
  }

  /// Models the ONNX writer refused before its description walk: they export, and onnx.checker
  /// accepts them.
  func testEveryModelKindExportsToONNX() throws {
    let dir = try makeTemporaryDirectory(self)
    let kinds: [(String, [String])] = [
      ("hybrid", ["--block-pattern", "mixer+attention", "--heads", "2"]),
      ("conv", ["--block-pattern", "conv"]),
      ("cnn", ["--stem", "cnn"]),
    ]
    for (name, flags) in kinds {
      let ck = dir.appendingPathComponent("ck-\(name)")
      let train = try mixerDist(["train"] + tinyModelFlags + flags + [
        "--train-examples", "64", "--val-examples", "16", "--batch", "16", "--steps", "1", "--threads", "1",
        "--run-dir", dir.appendingPathComponent("run-\(name)").path, "--checkpoint-dir", ck.path,
      ])
      XCTAssertEqual(train.status, 0, "\(name): \(train.stderr)")
      let onnx = dir.appendingPathComponent("\(name).onnx")
      let export = try mixerDist(["export", ck.path, "--output", onnx.path])
      XCTAssertEqual(export.status, 0, "\(name): \(export.stderr)")
      try requirePython(["onnx"])
      let check = try runPython(["-c", "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')", onnx.path])
      XCTAssertEqual(check.status, 0, "\(name): \(check.errors)")
    }
  }
}
