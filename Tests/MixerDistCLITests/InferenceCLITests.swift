// Inference precision, quantization and ONNX export through the binary: `quantize` writes a
// checkpoint with the sensitivity table, `eval`/`predict`/`bench --inference` load it and `export
// --format onnx` writes it as QDQ ONNX, fp32 and bf16 run on a plain checkpoint, and each bad input is a one-line error saying what to do (int8
// without ranges, a quantized checkpoint given to train, a CPU without VNNI via
// DNNL_MAX_CPU_ISA runs the portable kernels). About 15 s.

import Foundation
import MixerTestSupport
import XCTest

final class InferenceCLITests: XCTestCase {
  /// The last JSON line of `text`.
  func lastJSON(_ text: String) throws -> [String: Any] {
    let line = text.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? "{}"
    return try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
  }

  func testQuantizeEvalPredictBench() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck"), quantized = dir.appendingPathComponent("q")
    let train = try trainTinyCheckpoint(run: dir.appendingPathComponent("run"), checkpoint: ck, steps: 20, validationExamples: 64)
    XCTAssertEqual(train.status, 0, train.stderr)

    let q = try mixerDist(["quantize", ck.path, "--samples", "32", "--output", quantized.path, "--threads", "1"])
    XCTAssertEqual(q.status, 0, q.stderr)
    XCTAssertTrue(q.stdout.contains("| MixerBlock_0/token_mixing/Dense_0 | 16×8 |"), q.stdout)
    XCTAssertTrue(q.stdout.contains("int8 min-max") && q.stdout.contains("top-1 agreement"), q.stdout)
    XCTAssertTrue(FileManager.default.fileExists(atPath: quantized.appendingPathComponent("quantized.json").path))

    let fp32 = try lastJSON(try mixerDist(["eval", ck.path, "--json", "--threads", "1"]).stdout)
    for precision in [nil, "int8", "bf16", "fp32"] {
      let result = try mixerDist(["eval", quantized.path, "--json", "--threads", "1"] + (precision.map { ["--precision", $0] } ?? []))
      XCTAssertEqual(result.status, 0, result.stderr)
      let metrics = try lastJSON(result.stdout)
      XCTAssertEqual(metrics["count"] as? Int, 64)
      // a 20-step model is near chance, so only "close to fp32", not an accuracy, is asserted
      XCTAssertEqual(metrics["top1"] as? Double ?? -1, fp32["top1"] as? Double ?? 2, accuracy: 0.1, "\(precision ?? "as stored")")
    }
    let bf16 = try mixerDist(["eval", ck.path, "--json", "--threads", "1", "--precision", "bf16"])
    XCTAssertEqual(bf16.status, 0, bf16.stderr)

    let images = dir.appendingPathComponent("images")
    try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
    let rgb = (0..<(40 * 30 * 3)).map { UInt8($0 % 251) }
    try pngFile(width: 40, height: 30, rgb: rgb).write(to: images.appendingPathComponent("a.png"))
    let predicted = try mixerDist(["predict", quantized.path, images.path, "--json", "--top-k", "2"])
    XCTAssertEqual(predicted.status, 0, predicted.stderr)
    XCTAssertEqual(((try lastJSON(predicted.stdout))["classes"] as? [String])?.count, 2, predicted.stdout)

    let bench = try mixerDist(["bench", "--inference", "--checkpoint", quantized.path, "--steps", "2", "--threads", "1"])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    XCTAssertTrue((try lastJSON(bench.stdout))["precision"] as? String != nil, bench.stdout)

    // a quantized checkpoint is for inference only
    let refused = try mixerDist(["train", "--init-from", quantized.path, "--steps", "1", "--run-dir", dir.appendingPathComponent("run2").path])
    XCTAssertNotEqual(refused.status, 0)
    XCTAssertTrue(refused.stderr.contains("is a quantized checkpoint") && refused.stderr.contains("need the fp32 checkpoint"), refused.stderr)
    XCTAssertEqual(refused.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, refused.stderr)
  }

  func testInt8NeedsCalibrationAndTheInstructions() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir.appendingPathComponent("run"), checkpoint: ck, steps: 2, validationExamples: 16)
    XCTAssertEqual(train.status, 0, train.stderr)
    let uncalibrated = try mixerDist(["eval", ck.path, "--precision", "int8"])
    XCTAssertNotEqual(uncalibrated.status, 0)
    XCTAssertTrue(uncalibrated.stderr.contains("no calibrated input range") && uncalibrated.stderr.contains("mixer-dist quantize"), uncalibrated.stderr)

    // oneDNN honours DNNL_MAX_CPU_ISA: on a CPU without VNNI and BF16 instructions the products
    // run on the portable kernels, and bench says so
    let binary = try mixerDistBinary()
    for precision in ["int8", "bf16"] {
      let old = try MixerDistCLITests.run(
        binary, ["bench", "--inference", "--preset", "tiny", "--precision", precision, "--steps", "1"],
        environment: ["DNNL_MAX_CPU_ISA": "AVX2"])
      XCTAssertEqual(old.status, 0, old.stderr)
      XCTAssertTrue(old.stdout.contains("note: \(precision) products run on portable kernels"), old.stdout)
    }
  }

  func testExportONNX() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir.appendingPathComponent("run"), checkpoint: ck, steps: 2, validationExamples: 16)
    XCTAssertEqual(train.status, 0, train.stderr)
    let onnx = dir.appendingPathComponent("model.onnx")
    let export = try mixerDist(["export", ck.path, "--format", "onnx", "--output", onnx.path])
    XCTAssertEqual(export.status, 0, export.stderr)
    XCTAssertTrue(export.stdout.contains("ONNX opset 17"), export.stdout)
    try requirePython(["onnx"])
    let check = try runPython(["-c", "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')", onnx.path])
    XCTAssertEqual(check.status, 0, check.errors)

    // a quantized checkpoint exports as QDQ ONNX; as .npz it is still refused in one line
    let quantized = dir.appendingPathComponent("q")
    let q = try mixerDist(["quantize", ck.path, "--samples", "16", "--output", quantized.path, "--threads", "1"])
    XCTAssertEqual(q.status, 0, q.stderr)
    let int8 = dir.appendingPathComponent("model-int8.onnx")
    let exportInt8 = try mixerDist(["export", quantized.path, "--format", "onnx", "--output", int8.path])
    XCTAssertEqual(exportInt8.status, 0, exportInt8.stderr)
    XCTAssertTrue(exportInt8.stdout.contains("products int8 (QDQ)"), exportInt8.stdout)
    let checkInt8 = try runPython(["-c", "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')", int8.path])
    XCTAssertEqual(checkInt8.status, 0, checkInt8.errors)
    let npz = try mixerDist(["export", quantized.path, "--output", dir.appendingPathComponent("q.npz").path])
    XCTAssertNotEqual(npz.status, 0)
    XCTAssertTrue(npz.stderr.contains("is a quantized checkpoint") && npz.stderr.contains("export to .npz need"), npz.stderr)
    XCTAssertEqual(npz.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, npz.stderr)
  }
}
