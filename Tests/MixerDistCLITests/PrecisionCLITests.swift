// `--precision` on the command line: bf16 training runs and records its precision; on a CPU without
// AVX512-BF16 (simulated with oneDNN's DNNL_MAX_CPU_ISA=AVX512_CORE, which oneDNN honours) train and
// bench stop with one line naming the missing instruction set instead of emulating it slowly.

import Foundation
import MixerTestSupport
import XCTest

final class PrecisionCLITests: XCTestCase {
  func testMissingBF16InstructionsStopWithOneLine() throws {
    let binary = try mixerDistBinary()
    for arguments in [
      ["train", "--precision", "bf16", "--steps", "1", "--run-dir", try makeTemporaryDirectory(self).path],
      ["bench", "--precision", "bf16", "--steps", "1", "--warmup", "0", "--batch", "2"],
    ] {
      let result = try MixerDistCLITests.run(binary, arguments, environment: ["DNNL_MAX_CPU_ISA": "AVX512_CORE"], timeout: 60)
      XCTAssertEqual(result.status, 1, "\(arguments): \(result.stderr)")
      let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
      XCTAssertEqual(lines.count, 1, "one line: \(result.stderr)")
      XCTAssertTrue(result.stderr.contains("needs AVX512-BF16"), result.stderr)
      XCTAssertTrue(result.stderr.contains("finds only avx512_core "), result.stderr)
    }
  }

  func testBF16TrainingRunsAndRecordsItsPrecision() throws {
    let dir = try makeTemporaryDirectory(self)
    let arguments = [
      "train", "--precision", "bf16", "--steps", "3", "--batch", "16", "--hidden", "32", "--blocks", "2",
      "--tokens-mlp", "16", "--channels-mlp", "64", "--train-examples", "64", "--val-examples", "32",
      "--eval-batch", "32", "--threads", "1", "--run-dir", dir.path,
    ]
    let printed = try mixerDist(arguments + ["--print-config"], timeout: 60)
    XCTAssertEqual(printed.status, 0, printed.stderr)
    XCTAssertTrue(printed.stdout.contains("precision: \"bf16\"\n"), printed.stdout)
    let result = try mixerDist(arguments, timeout: 120)
    XCTAssertEqual(result.status, 0, result.stderr)
    let config = try JSONSerialization.jsonObject(
      with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
    XCTAssertEqual(config["precision"] as? String, "bf16")
    let bad = try mixerDist(["train", "--precision", "fp16"], timeout: 60)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("fp16"), bad.stderr)
  }
}
