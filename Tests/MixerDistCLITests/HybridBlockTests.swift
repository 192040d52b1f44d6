// Hybrid blocks end to end: a Mixer/attention/conv model trains under real mpirun with ZeRO-1,
// checkpoints under readable names, and evaluates from the checkpoint.

import MixerTestSupport
import XCTest
import MixerCheckpoint

final class HybridBlockTests: XCTestCase {
  func testHybridModelUnderMPIWithCheckpoints() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let result = try mpirunMixerDist(ranks: 2, [
      "train", "--hidden", "32", "--blocks", "3", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
      "--block-pattern", "alternate:mixer,attention,conv", "--heads", "2", "--train-examples", "128",
      "--val-examples", "32", "--batch", "16", "--steps", "6", "--threads", "1", "--zero", "1",
      "--run-dir", dir.path, "--checkpoint-dir", ck.path,
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    let params = try SafeTensorsFile(contentsOf: ck.appendingPathComponent("step-00000006/params.safetensors"))
    let names = Set(params.tensors.map(\.name))
    XCTAssertTrue(names.contains("MixerBlock_0/token_mixing/Dense_0/kernel"))
    XCTAssertTrue(names.contains("AttentionBlock_1/MultiHeadDotProductAttention_0/qkv/kernel"))
    XCTAssertTrue(names.contains("ConvBlock_2/Conv_0/kernel"))
    let eval = try mixerDist(["eval", ck.path, "--json"])
    XCTAssertEqual(eval.status, 0, eval.stderr)
    XCTAssertTrue(eval.stdout.contains("\"count\":32"), eval.stdout)
    let bad = try mixerDist(["describe", "--block-pattern", "mixer,attention", "--blocks", "3"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("names 2 blocks but the model has 3"), bad.stderr)
  }
}
