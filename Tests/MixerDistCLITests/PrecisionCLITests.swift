// `--precision` on the command line: bf16 training runs and records its precision; on a CPU without
// AVX512-BF16 (simulated with oneDNN's DNNL_MAX_CPU_ISA) train and bench run the portable kernels
// and say that they are slower than fp32 there.

import Foundation
import MixerTestSupport
import XCTest

final class PrecisionCLITests: XCTestCase {
  /// On a CPU without AVX512-BF16 (simulated with oneDNN's DNNL_MAX_CPU_ISA=AVX2, which oneDNN
  /// honours) train and bench run the bf16 products on the portable kernels and say so.
  func testMissingBF16InstructionsRunPortableKernelsAndSaySo() throws {
    let binary = try mixerDistBinary()
    for arguments in [
      ["train", "--precision", "bf16", "--steps", "2", "--eval-every", "0", "--threads", "1", "--run-dir", try makeTemporaryDirectory(self).path],
      ["bench", "--precision", "bf16", "--steps", "1", "--warmup", "0", "--batch", "2"],
    ] {
      let result = try MixerDistCLITests.run(binary, arguments, environment: ["DNNL_MAX_CPU_ISA": "AVX2"], timeout: 120)
      XCTAssertEqual(result.status, 0, "\(arguments): \(result.stderr)")
      let output = result.stdout + result.stderr
      XCTAssertTrue(output.contains("bf16 products run on portable kernels: this CPU lacks AVX512-BF16"), output)
      XCTAssertTrue(output.contains("finds avx2"), output)
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

extension MPITrainTests {
  /// bf16 under real mpirun (SGD, so gradient noise is not normalised into full steps as Adam
  /// does): the same command twice is bit-identical, and 2 ranks match 1 to 3e-4 of the parameter
  /// norm, as the in-process ranks do (PrecisionTrainingTests says why the bound is not fp32's).
  func testBF16SameParametersOn1And2Ranks() throws {
    let bf16 = ["--precision", "bf16"] + Self.sgd
    let one = try train(ranks: nil, bf16)
    XCTAssertEqual(one, try train(ranks: nil, bf16), "the same bf16 command twice")
    let two = try train(ranks: 2, bf16)
    let fp32 = try train(ranks: nil, Self.sgd)
    func relative(_ a: [Float], _ b: [Float]) -> Double {
      var diff = 0.0, norm = 0.0
      for i in a.indices {
        diff += Double(a[i] - b[i]) * Double(a[i] - b[i])
        norm += Double(b[i]) * Double(b[i])
      }
      return (diff / norm).squareRoot()
    }
    let ranksDifference = relative(two, one), precisionDifference = relative(fp32, one)
    XCTAssertLessThan(ranksDifference, 3e-4, "1 vs 2 ranks (bf16 vs fp32: \(precisionDifference))")
    XCTAssertGreaterThan(precisionDifference, 1e-6, "bf16 must not be fp32")
  }
}
