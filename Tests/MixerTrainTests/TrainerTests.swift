// The training loop on small models: determinism, accumulation, data parallelism over in-process
// ranks (LocalGroup), ZeRO-1, metrics, and configuration errors. End-to-end runs of the binary,
// including real mpirun, are in CommandLineTests.

import MixerTestSupport
import XCTest
import MixerDistributed
import MixerModel
@testable import MixerTrain

/// A model small enough to train a few steps in a debug build, on the embedded shapes data (the
/// MixerTrain tests' common run).
func smallTrainConfig(runDirectory: URL, steps: Int) -> TrainConfig {
  var c = TrainConfig(model: MixerConfig(
    imageHeight: 32, imageWidth: 32, patch: 8, hidden: 32, blocks: 2, tokensMLP: 16,
    channelsMLP: 64, classes: 10))
  c.steps = steps
  c.globalBatch = 16
  c.trainExamples = 256
  c.warmupSteps = 2
  c.learningRate = 3e-3
  c.threads = 1
  c.runDirectory = runDirectory.path
  return c
}

final class TrainerTests: XCTestCase {
  /// A model small enough to train a few steps in a debug build.
  func smallConfig(_ dir: URL, steps: Int = 6) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir, steps: steps)
    c.validationExamples = 50
    c.evalBatch = 20
    c.logEvery = 2
    c.bucketFloats = 5_000
    return c
  }

  func train(_ config: TrainConfig, comm: Communicator = SingleProcessCommunicator()) throws -> (Trainer, TrainSummary) {
    let trainer = try Trainer(config: config, comm: comm, overwrite: true)
    return (trainer, try trainer.run())
  }

  func testSameSeedGivesBitIdenticalParameters() throws {
    var config = smallConfig(try makeTemporaryDirectory(self))
    config.stochasticDepth = 0.2
    config.dropout = 0.1
    config.labelSmoothing = 0.1
    let (a, _) = try train(config)
    config.runDirectory = try makeTemporaryDirectory(self).path
    let (b, _) = try train(config)
    XCTAssertEqual(Array(a.model.parameters.bytes), Array(b.model.parameters.bytes))
    config.seed = 1
    config.runDirectory = try makeTemporaryDirectory(self).path
    let (c, _) = try train(config)
    XCTAssertNotEqual(Array(a.model.parameters.bytes), Array(c.model.parameters.bytes))
  }

  func testRunFolderHasConfigMetricsAndParameters() throws {
    let dir = try makeTemporaryDirectory(self)
    let (trainer, summary) = try train(smallConfig(dir))
    let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    XCTAssertEqual(lines.filter { $0["kind"] as? String == "train" }.count, 3)
    let eval = lines.last!
    XCTAssertEqual(eval["kind"] as? String, "eval")
    XCTAssertEqual(eval["val_count"] as? Double, 50)
    XCTAssertNotNil(eval["val_top1"] as? Double)
    XCTAssertEqual(summary.evaluation?.count, 50)
    let saved = try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))
    XCTAssertEqual(saved, Data(trainer.model.parameters.bytes))
    let config = try JSONDecoder().decode(TrainConfig.self, from: Data(contentsOf: dir.appendingPathComponent("config.json")))
    XCTAssertEqual(config, trainer.config)
    // beside the settings, the metrics the head reports, which the run report draws by name
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
    let metrics = try XCTUnwrap(object["evaluationMetrics"] as? [[String: String]])
    XCTAssertEqual(metrics, [["key": "val_top1", "name": "top-1"], ["key": "val_top5", "name": "top-5"]])
  }

  /// The hidden fault flags reach the trainer as MIXER_DIST_FAULTS, named as the flags.
  func testFaultPlanFromTheEnvironment() throws {
    let none = try FaultPlan(environment: [:])
    XCTAssertNil(none.failAtStep)
    XCTAssertFalse(none.stall)
    let plan = try FaultPlan(environment: [
      "MIXER_DIST_FAULTS": "fail-at-step=3 fail-rank=1 stall-at-step=5 kill-in-save-at-step=7 fail-in-save-at-step=8 slow-rank=1 slow-ms=250",
    ])
    XCTAssertEqual(plan.failAtStep, 5, "a stall wins over a fail, as the flags did")
    XCTAssertTrue(plan.stall)
    XCTAssertEqual(plan.rank, 1)
    XCTAssertEqual(plan.killInSaveAtStep, 7)
    XCTAssertEqual(plan.failInSaveAtStep, 8)
    XCTAssertEqual(plan.slowRank, 1)
    XCTAssertEqual(plan.slowSeconds, 0.25)
    for bad in ["fail-at-step", "fail-at-step=x", "explode=1", "fail-at-step=1.5"] {
      XCTAssertThrowsError(try FaultPlan(environment: ["MIXER_DIST_FAULTS": bad]), bad)
    }
  }

  func testLossGoesDown() throws {
    var config = smallConfig(try makeTemporaryDirectory(self), steps: 40)
    config.learningRate = 1e-2
    config.logEvery = 10
    let (trainer, _) = try train(config)
    let losses = try String(contentsOfFile: config.runDirectory + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n").compactMap { line -> Double? in
        let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        return record["kind"] as? String == "train" ? record["loss"] as? Double : nil
      }
    XCTAssertEqual(losses.count, 4)
    XCTAssertLessThan(losses[3], losses[0] - 0.02, "mean loss of steps 31-40 vs 1-10: \(losses)")
    XCTAssertEqual(trainer.optimizer.stateCount, 2 * trainer.model.table.count)
  }

  /// The reference for data parallelism: one rank with global batch G.
  func referenceParameters(_ mutate: (inout TrainConfig) -> Void = { _ in }) throws -> [Float] {
    var config = smallConfig(try makeTemporaryDirectory(self))
    mutate(&config)
    return try train(config).0.model.parameters.array()
  }

  /// The parameters without `token_mixing/Dense_1/bias`, which the Adam comparisons exclude
  /// (compared by their relative norm difference, `assertClose(_:_:tolerance:_:)`): its exact gradient is zero (a per-token constant that every later LayerNorm
  /// removes; see shared/reference/README.md), so its float gradient is pure rounding noise that
  /// Adam normalises into full-size steps, and it differs with any change of summation order.
  /// It has no effect on the loss. Under SGD every parameter is compared.
  func outsideNullSpace(_ values: [Float]) -> [Float] {
    let table = ParameterTable(config: smallConfig(URL(fileURLWithPath: "/")).model)
    return table.views.filter { !$0.name.hasSuffix("token_mixing/Dense_1/bias") }.flatMap { values[$0.range] }
  }

  func testAccumulationMatchesOneBigBatch() throws {
    let reference = try referenceParameters()
    let accumulated = try referenceParameters { $0.accumulation = 4 }
    assertClose(outsideNullSpace(accumulated), outsideNullSpace(reference), tolerance: 1e-5, "--accum 4")
  }

  func testInProcessRanksMatchOneRankWithSGD() throws {
    let sgd: (inout TrainConfig) -> Void = { $0.optimizer.kind = .sgd; $0.learningRate = 0.05 }
    let reference = try referenceParameters(sgd)
    let results = try LocalGroup(size: 2).run { comm -> [Float] in
      var config = self.smallConfig(try makeTemporaryDirectory(self))
      sgd(&config)
      let trainer = try Trainer(config: config, comm: comm, overwrite: true)
      _ = try trainer.run()
      return trainer.model.parameters.array()
    }
    assertClose(results[0], reference, tolerance: 1e-5, "2 ranks, SGD")
  }

  /// Hybrid blocks (attention, conv, mixer+attention) train data-parallel like the paper's block.
  func testHybridBlocksOnTwoRanksMatchOneRank() throws {
    let hybrid: (inout TrainConfig) -> Void = {
      $0.optimizer.kind = .sgd
      $0.learningRate = 0.05
      $0.model.blocks = 3
      $0.model.blockKinds = [.attention, .conv, .mixerAttention]
      $0.model.attentionHeads = 2
    }
    let reference = try referenceParameters(hybrid)
    let results = try LocalGroup(size: 2).run { comm -> [Float] in
      var config = self.smallConfig(try makeTemporaryDirectory(self))
      hybrid(&config)
      let trainer = try Trainer(config: config, comm: comm, overwrite: true)
      _ = try trainer.run()
      return trainer.model.parameters.array()
    }
    var config = smallConfig(URL(fileURLWithPath: "/"))
    hybrid(&config)
    let table = ParameterTable(config: config.model)
    XCTAssertEqual(results[0].count, table.count)
    var diff = 0.0, norm = 0.0
    for i in 0..<table.count { diff += Double(results[0][i] - reference[i]) * Double(results[0][i] - reference[i]); norm += Double(reference[i]) * Double(reference[i]) }
    XCTAssertLessThan((diff / norm).squareRoot(), 1e-5)
  }

  func testInProcessRanksMatchOneRank() throws {
    let reference = try referenceParameters()
    for (ranks, zero) in [(2, 0), (4, 0), (2, 1), (4, 1)] {
      let dirs = try (0..<ranks).map { _ in try makeTemporaryDirectory(self) }
      let results = try LocalGroup(size: ranks).run { comm -> [Float] in
        var config = self.smallConfig(dirs[comm.rank])
        config.zeroStage = zero
        let trainer = try Trainer(config: config, comm: comm, overwrite: true)
        _ = try trainer.run()
        if zero == 1 {
          XCTAssertEqual(trainer.optimizer.stateCount, 2 * shardRanges(total: trainer.model.table.count, parts: ranks)[comm.rank].count)
        }
        return trainer.model.parameters.array()
      }
      for r in 1..<ranks { XCTAssertEqual(results[r], results[0], "ranks agree bit for bit") }
      assertClose(
        outsideNullSpace(results[0]), outsideNullSpace(reference), tolerance: zero == 1 ? 1e-6 : 1e-5,
        "\(ranks) ranks, zero \(zero)")
    }
  }

  func testConfigurationErrors() throws {
    let dir = try makeTemporaryDirectory(self)
    var config = smallConfig(dir)
    config.learningRate = -1
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("learning rate must be non-negative"), "\($0)")
    }
    config = smallConfig(dir)
    config.accumulation = 3
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("does not divide into 3 micro-batches"), "\($0)")
    }
    config = smallConfig(dir)
    config.model.classes = 7
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("pass --classes 10"), "\($0)")
    }
    config = smallConfig(dir)
    config.globalBatch = 15
    XCTAssertThrowsError(try LocalGroup(size: 2).run { comm in try Trainer(config: config, comm: comm, overwrite: true) }) {
      XCTAssertTrue("\($0)".contains("does not divide by 2 ranks"), "\($0)")
    }
  }
}
