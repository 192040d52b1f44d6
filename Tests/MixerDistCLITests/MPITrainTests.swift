// Data-parallel training under REAL mpirun, end to end through the mixer-dist binary: the same
// global batch on 1, 2 and 4 ranks gives the same parameters (AdamW and SGD), ZeRO-1 and gradient
// accumulation change nothing, a failing rank takes the whole job down quickly with a message
// naming it, bad input under mpirun exits instead of hanging, and launch/mpirun works.
//
// Every run is a tiny model (16,298 parameters) for 20 steps: well under a second each.

import Foundation
import MixerTestSupport
import XCTest

final class MPITrainTests: XCTestCase {
  // MARK: - the small run every test uses

  /// Model and data of every run: C=32, 2 blocks, D_S=16, D_C=64, P=8 on 32×32 images (S=16
  /// tokens), 10 classes.
  static let model = (hidden: 32, blocks: 2, tokensMLP: 16, channelsMLP: 64, patch: 8, image: 32, classes: 10)

  static let smallArguments: [String] = [
    "train", "--preset", "tiny", "--hidden", "\(model.hidden)", "--blocks", "\(model.blocks)",
    "--tokens-mlp", "\(model.tokensMLP)", "--channels-mlp", "\(model.channelsMLP)", "--patch", "\(model.patch)",
    "--train-examples", "512", "--val-examples", "64", "--batch", "16", "--steps", "20", "--threads", "1",
    "--log-every", "5",
  ]

  static let sgd = ["--optimizer", "sgd", "--lr", "0.05"]

  /// The flat parameter layout (official names, forward order) of `model`, as documented.
  static func layout() -> [(name: String, range: Range<Int>)] {
    let m = model
    let c = m.hidden, s = (m.image / m.patch) * (m.image / m.patch), ds = m.tokensMLP, dc = m.channelsMLP
    var sizes: [(String, Int)] = [("stem/kernel", m.patch * m.patch * 3 * c), ("stem/bias", c)]
    for i in 0..<m.blocks {
      let b = "MixerBlock_\(i)/"
      sizes += [
        (b + "LayerNorm_0/scale", c), (b + "LayerNorm_0/bias", c),
        (b + "token_mixing/Dense_0/kernel", s * ds), (b + "token_mixing/Dense_0/bias", ds),
        (b + "token_mixing/Dense_1/kernel", ds * s), (b + "token_mixing/Dense_1/bias", s),
        (b + "LayerNorm_1/scale", c), (b + "LayerNorm_1/bias", c),
        (b + "channel_mixing/Dense_0/kernel", c * dc), (b + "channel_mixing/Dense_0/bias", dc),
        (b + "channel_mixing/Dense_1/kernel", dc * c), (b + "channel_mixing/Dense_1/bias", c),
      ]
    }
    sizes += [
      ("pre_head_layer_norm/scale", c), ("pre_head_layer_norm/bias", c),
      ("head/kernel", c * m.classes), ("head/bias", m.classes),
    ]
    var offset = 0
    return sizes.map { name, count in
      defer { offset += count }
      return (name, offset..<offset + count)
    }
  }

  /// Why AdamW comparisons skip `MixerBlock_*/token_mixing/Dense_1/bias`: that bias adds one
  /// constant per token to all C channels of the residual stream, and every reader of the stream
  /// (the next block's LayerNorm_0 and LayerNorm_1, pre_head_layer_norm) is a LayerNorm over the
  /// channels, which removes a per-token constant. Its exact gradient is therefore zero; what the
  /// backward pass computes is float rounding noise, which differs with how the batch is split
  /// over ranks. SGD turns noise into noise-sized steps (compared below with an absolute floor),
  /// but Adam normalises the step by the gradient's own magnitude (m / √v), so noise becomes
  /// full-size lr steps in a random direction. Nothing that reaches the loss depends on it.
  static func isZeroGradientTensor(_ name: String) -> Bool {
    name.hasPrefix("MixerBlock_") && name.hasSuffix("/token_mixing/Dense_1/bias")
  }

  /// Runs the small training with `extra` arguments on `ranks` MPI ranks (nil: plain, no mpirun)
  /// and returns rank 0's final parameters.
  func train(ranks: Int?, _ extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
    let dir = try makeTemporaryDirectory(self)
    let arguments = Self.smallArguments + extra + ["--run-dir", dir.path]
    let result = try ranks.map { try mpirunMixerDist(ranks: $0, arguments, timeout: 120) } ?? mixerDist(arguments, timeout: 120)
    let label = "\(ranks.map { "\($0) ranks" } ?? "plain") \(extra)"
    XCTAssertEqual(result.status, 0, "\(label): \(result.stdout)\n\(result.stderr)", file: file, line: line)
    XCTAssertFalse(result.timedOut, label, file: file, line: line)
    XCTAssertTrue(
      result.stdout.contains("\(ranks ?? 1) rank(s)"), "\(label) should run on \(ranks ?? 1) rank(s): \(result.stdout)",
      file: file, line: line)
    return try readParameters(dir.appendingPathComponent("final-parameters.f32"), file: file, line: line)
  }

  func readParameters(_ url: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
    let data = try Data(contentsOf: url)
    let expected = Self.layout().last!.range.upperBound
    XCTAssertEqual(data.count, expected * 4, "\(url.lastPathComponent): \(expected) float32 expected", file: file, line: line)
    return data.withUnsafeBytes { raw in
      (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
    }
  }

  /// The largest per-tensor relative difference (`tensorDifferences`).
  func largestRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    tensorDifferences(a, b, layout: Self.layout()).map(\.relative).max() ?? 0
  }

  // MARK: - the same global batch on any number of ranks

  func testLayoutMatchesTheBinary() throws {
    XCTAssertEqual(Self.layout().last!.range.upperBound, 16_298)
    let result = try mixerDist(Self.smallArguments + ["--steps", "1", "--run-dir", try makeTemporaryDirectory(self).path])
    XCTAssertTrue(result.stdout.contains("16,298 parameters"), result.stdout + result.stderr)
  }

  func testAdamWSameParametersOn1And2And4Ranks() throws {
    let one = try train(ranks: nil)
    let two = try train(ranks: 2)
    let four = try train(ranks: 4)
    assertTensorsClose(one, two, layout: Self.layout(), tolerance: 1e-5, skipping: Self.isZeroGradientTensor, "AdamW 1 vs 2 ranks")
    assertTensorsClose(one, four, layout: Self.layout(), tolerance: 1e-5, skipping: Self.isZeroGradientTensor, "AdamW 1 vs 4 ranks")
    // the tolerance is meaningful: one optimizer step fewer is far outside it
    let shorter = try train(ranks: nil, ["--steps", "19"])
    XCTAssertGreaterThan(largestRelativeDifference(one, shorter), 1e-3, "19 vs 20 steps must differ clearly")
  }

  /// SGD is not invariant to the scale of the gradient (Adam is), so this also catches a wrong
  /// 1/global-batch scaling of the per-rank loss; every tensor is compared.
  func testSGDSameParametersOn1And2And4Ranks() throws {
    let one = try train(ranks: nil, Self.sgd)
    let two = try train(ranks: 2, Self.sgd)
    let four = try train(ranks: 4, Self.sgd)
    assertTensorsClose(one, two, layout: Self.layout(), tolerance: 1e-5, "SGD 1 vs 2 ranks")
    assertTensorsClose(one, four, layout: Self.layout(), tolerance: 1e-5, "SGD 1 vs 4 ranks")
    let shorter = try train(ranks: nil, Self.sgd + ["--steps", "19"])
    XCTAssertGreaterThan(largestRelativeDifference(one, shorter), 1e-3, "19 vs 20 steps must differ clearly")
  }

  func testZeroOneMatchesAllReduceOn2Ranks() throws {
    let plain = try train(ranks: 2)
    let sharded = try train(ranks: 2, ["--zero", "1"])
    assertTensorsClose(plain, sharded, layout: Self.layout(), tolerance: 1e-6, skipping: Self.isZeroGradientTensor, "AdamW 2 ranks: --zero 1 vs 0")
    let plainSGD = try train(ranks: 2, Self.sgd)
    let shardedSGD = try train(ranks: 2, Self.sgd + ["--zero", "1"])
    assertTensorsClose(plainSGD, shardedSGD, layout: Self.layout(), tolerance: 1e-6, "SGD 2 ranks: --zero 1 vs 0")
  }

  func testGradientAccumulationOn2Ranks() throws {
    let plain = try train(ranks: 2)
    let accumulated = try train(ranks: 2, ["--accum", "2"])
    assertTensorsClose(plain, accumulated, layout: Self.layout(), tolerance: 1e-5, skipping: Self.isZeroGradientTensor, "AdamW 2 ranks: --accum 2 vs 1")
    let bothSGD = try train(ranks: 2, Self.sgd + ["--accum", "2", "--zero", "1"])
    let oneSGD = try train(ranks: nil, Self.sgd)
    assertTensorsClose(oneSGD, bothSGD, layout: Self.layout(), tolerance: 1e-5, "SGD: 2 ranks --accum 2 --zero 1 vs 1 rank")
  }

  // MARK: - failures take the whole job down, quickly

  func testInjectedFaultOnRank1AbortsTheJob() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try mpirunMixerDist(
      ranks: 2, Self.smallArguments + ["--fail-at-step", "3", "--fail-rank", "1", "--run-dir", dir.path], timeout: 60)
    XCTAssertNotEqual(result.status, 0, result.stdout + result.stderr)
    XCTAssertFalse(result.timedOut, "the job hung: \(result.stderr)")
    XCTAssertLessThan(result.seconds, 20, "abort took \(result.seconds) s")
    XCTAssertTrue(result.stderr.contains("mixer-dist: rank 1:"), result.stderr)
    XCTAssertTrue(result.stderr.contains("injected fault at step 3"), result.stderr)
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: dir.appendingPathComponent("final-parameters.f32").path),
      "an aborted run must not write final parameters")
  }

  func testInjectedFaultOnRank0Of4AbortsTheJob() throws {
    let result = try mpirunMixerDist(
      ranks: 4, Self.smallArguments + ["--fail-at-step", "5", "--fail-rank", "0", "--run-dir", try makeTemporaryDirectory(self).path],
      timeout: 60)
    XCTAssertNotEqual(result.status, 0)
    XCTAssertFalse(result.timedOut, "the job hung: \(result.stderr)")
    XCTAssertLessThan(result.seconds, 20)
    XCTAssertTrue(result.stderr.contains("mixer-dist: rank 0: injected fault at step 5"), result.stderr)
  }

  func testBadInputUnderMPIRunExitsQuickly() throws {
    let preset = try mpirunMixerDist(ranks: 2, ["train", "--preset", "nope", "--run-dir", try makeTemporaryDirectory(self).path], timeout: 60)
    XCTAssertNotEqual(preset.status, 0)
    XCTAssertFalse(preset.timedOut, "hung on a bad preset: \(preset.stderr)")
    XCTAssertLessThan(preset.seconds, 20)
    XCTAssertTrue(preset.stderr.contains("unknown preset 'nope'"), preset.stderr)

    // only wrong for this world size: 15 images do not split over 2 ranks
    let arguments = Self.smallArguments + ["--batch", "15", "--run-dir", try makeTemporaryDirectory(self).path]
    let batch = try mpirunMixerDist(ranks: 2, arguments, timeout: 60)
    XCTAssertNotEqual(batch.status, 0)
    XCTAssertFalse(batch.timedOut, "hung on an indivisible batch: \(batch.stderr)")
    XCTAssertLessThan(batch.seconds, 20)
    XCTAssertTrue(batch.stderr.contains("does not divide by 2 ranks"), batch.stderr)
  }

  // MARK: - launch/mpirun

  var wrapper: String { packageRoot.appendingPathComponent("launch/mpirun").path }

  /// The wrapper, as root without the two OMPI variables (it must set them itself), runs a real
  /// 2-rank job that gives the 1-rank parameters.
  func testWrapperRuns2Ranks() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try MixerDistCLITests.run(
      wrapper, ["2"] + Self.smallArguments + Self.sgd + ["--run-dir", dir.path],
      environment: ["MIXER_DIST_BIN": try mixerDistBinary(), "OMPI_ALLOW_RUN_AS_ROOT": "", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": ""],
      timeout: 120)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    XCTAssertFalse(result.timedOut)
    XCTAssertTrue(result.stderr.contains("launch/mpirun: 2 rank(s) on 1 node(s)"), result.stderr)
    XCTAssertTrue(result.stdout.contains("2 rank(s)"), result.stdout)
    let viaWrapper = try readParameters(dir.appendingPathComponent("final-parameters.f32"))
    assertTensorsClose(try train(ranks: nil, Self.sgd), viaWrapper, layout: Self.layout(), tolerance: 1e-5, "SGD: launch/mpirun 2 ranks vs 1 rank")
  }

  /// The mpirun line the wrapper builds for this node (nothing is started).
  func testWrapperCommandLine() throws {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    func dryRun(_ arguments: [String]) throws -> String {
      let result = try MixerDistCLITests.run(wrapper, ["--dry-run"] + arguments, environment: ["MIXER_DIST_BIN": try mixerDistBinary()], timeout: 30)
      XCTAssertEqual(result.status, 0, result.stderr)
      return result.stderr
    }
    // more ranks than cores: oversubscribed, one thread per rank, default binding
    let many = try dryRun(["-n", "\(cores + 2)", "train", "--steps", "3"])
    XCTAssertTrue(many.contains("mpirun -n \(cores + 2) --oversubscribe"), many)
    XCTAssertTrue(many.contains("-x OPENBLAS_NUM_THREADS=1"), many)
    XCTAssertFalse(many.contains("--bind-to none"), many)
    XCTAssertTrue(many.hasSuffix("train --steps 3\n"), many)
    // one rank on this node: all cores as threads, so no binding to one core
    let one = try dryRun(["1", "train"])
    XCTAssertTrue(one.contains("-x OPENBLAS_NUM_THREADS=\(cores)"), one)
    XCTAssertEqual(one.contains("--bind-to none"), cores > 1, one)
    XCTAssertFalse(one.contains("--oversubscribe"), one)
    // a hostfile with 2 nodes of 2 slots: 4 ranks fit, 2 per node
    let hostfile = try makeTemporaryDirectory(self).appendingPathComponent("hosts")
    try "# two nodes\nnodeA slots=2\nnodeB slots=2   # comment\n".write(to: hostfile, atomically: true, encoding: .utf8)
    let nodes = try dryRun(["-n", "4", "--hostfile", hostfile.path, "--", "train"])
    XCTAssertTrue(nodes.contains("4 rank(s) on 2 node(s), 2 per node"), nodes)
    XCTAssertTrue(nodes.contains("--hostfile \(hostfile.path)"), nodes)
    XCTAssertFalse(nodes.contains("--oversubscribe"), nodes)
    // a bad count is refused before anything starts
    let bad = try MixerDistCLITests.run(wrapper, ["-n", "zero", "train"], environment: ["MIXER_DIST_BIN": try mixerDistBinary()], timeout: 30)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("not a positive count"), bad.stderr)
  }
}
