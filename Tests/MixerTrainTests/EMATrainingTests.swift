// Training with --ema on in-process ranks: the average leaves the training untouched (its update
// and its evaluation's swap), a run stopped and resumed ends with the uninterrupted run's
// parameters and average bit for bit (one rank; two ranks under ZeRO-1; and re-sliced onto one
// rank), a checkpoint without an average starts one from its parameters, evaluations record the
// `_ema` metrics (and --keep-best may name one), `loadModel(weights: .ema)` reads the average and
// evaluating it is evaluating that tensor, and the settings errors.

import Foundation
import MixerTestSupport
import XCTest
import MixerCheckpoint
import MixerData
import MixerDistributed
@testable import MixerTrain

final class EMATrainingTests: XCTestCase {
  func config(_ dir: URL, steps: Int, zero: Int = 0) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir.appendingPathComponent("run"), steps: steps)
    c.validationExamples = 32
    c.evalBatch = 16
    c.bucketFloats = 4_000
    c.zeroStage = zero
    c.emaDecay = 0.9
    c.emaWarmup = true
    c.checkpointDirectory = dir.appendingPathComponent("checkpoints").path
    return c
  }

  /// Every rank's trainer after training `c` (or only building it, `run: false`).
  func trainers(_ c: TrainConfig, ranks: Int, resume: String? = nil, run: Bool = true, faults: FaultPlan = FaultPlan())
    throws -> [Trainer]
  {
    try onRanks(ranks) { comm in
      let trainer = try Trainer(config: c, comm: comm, resume: resume, faults: faults, overwrite: resume == nil)
      if run { _ = try trainer.run() }
      return trainer
    }
  }

  /// The whole average, from every rank's range (ranks in order).
  func wholeAverage(_ trainers: [Trainer]) -> [Float] {
    trainers.count == 1 || trainers[0].config.zeroStage == 0
      ? trainers[0].average!.values.array() : Array(trainers.map { $0.average!.values.array() }.joined())
  }

  /// The raw parameters of a run with --ema (its evaluations swapping the average in and out)
  /// are the bits of the same run without it, alone and on two ZeRO-1 ranks.
  func testAverageLeavesTrainingUntouched() throws {
    for (ranks, zero) in [(1, 0), (2, 1)] {
      var with = config(try makeTemporaryDirectory(self), steps: 6, zero: zero)
      with.evalEvery = 2
      var without = with
      without.emaDecay = 0
      without.emaWarmup = false
      without.runDirectory = try makeTemporaryDirectory(self).path
      without.checkpointDirectory = nil
      let a = try trainers(with, ranks: ranks), b = try trainers(without, ranks: ranks)
      XCTAssertEqual(a[0].model.parameters.array(), b[0].model.parameters.array(), "\(ranks) rank(s)")
      XCTAssertNil(b[0].average)
      let average = wholeAverage(a)
      XCTAssertEqual(average.count, a[0].model.table.count)
      XCTAssertNotEqual(average, a[0].model.parameters.array(), "the average is not the parameters")
    }
  }

  /// Stopped after step 6 (a checkpoint there), resumed to 12: the parameters and the average are
  /// the uninterrupted run's bits, alone, on two ZeRO-1 ranks (each saving its shard), and with a
  /// background (async) save.
  func testResumeIsBitIdenticalForParametersAndAverage() throws {
    for (ranks, zero, mode) in [(1, 0, SaveMode.sync), (2, 1, .sync), (2, 1, .async)] {
      var straight = config(try makeTemporaryDirectory(self), steps: 12, zero: zero)
      straight.checkpointDirectory = nil
      let reference = try trainers(straight, ranks: ranks)

      var first = config(try makeTemporaryDirectory(self), steps: 12, zero: zero)
      first.saveEvery = 3
      first.saveMode = mode
      _ = try trainers(first, ranks: ranks, faults: FaultPlan(stopAfterStep: 6))
      let folder = try XCTUnwrap(listCheckpoints(in: URL(fileURLWithPath: first.checkpointDirectory!)).first)
      XCTAssertEqual(folder.step, 6)
      let manifest = try verifyCheckpoint(folder.url, config: TrainConfig.self)
      XCTAssertEqual(manifest.ema?.decay, 0.9)
      XCTAssertEqual(manifest.ema?.warmup, true)
      XCTAssertEqual(manifest.ema?.shards.map(\.file), (0..<ranks).map { String(format: "ema-rank-%05d.safetensors", $0) })
      let resumed = try trainers(first, ranks: ranks, resume: "auto")
      XCTAssertEqual(resumed[0].startStep, 6)
      let label = "\(ranks) rank(s), ZeRO \(zero), \(mode)"
      XCTAssertEqual(resumed[0].model.parameters.array(), reference[0].model.parameters.array(), label)
      XCTAssertEqual(wholeAverage(resumed), wholeAverage(reference), label)
    }
  }

  /// A 2-rank ZeRO-1 checkpoint resumes on one rank (and one rank's on two): the average is the
  /// same numbers re-sliced.
  func testAverageIsReslicedAcrossWorldSizes() throws {
    let dir = try makeTemporaryDirectory(self)
    let c = config(dir, steps: 4, zero: 1)
    let savers = try trainers(c, ranks: 2)
    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!))[0].url
    var single = c
    single.zeroStage = 0
    let one = try trainers(single, ranks: 1, resume: folder.path, run: false)
    XCTAssertEqual(one[0].average!.values.array(), wholeAverage(savers))
    let two = try trainers(c, ranks: 2, resume: folder.path, run: false)
    XCTAssertEqual(wholeAverage(two), wholeAverage(savers))
  }

  /// A checkpoint saved without --ema, resumed with it: the average starts from its parameters
  /// (said in one line), and the next checkpoints hold it; one saved with --ema, resumed
  /// without: the average is dropped (said), and the next checkpoints hold none.
  func testAverageStartsOrStopsAtAResume() throws {
    let dir = try makeTemporaryDirectory(self)
    var plain = config(dir, steps: 4)
    plain.emaDecay = 0
    plain.emaWarmup = false
    _ = try trainers(plain, ranks: 1)
    var with = config(dir, steps: 6)
    let started = try trainers(with, ranks: 1, resume: "auto", run: false)[0]
    XCTAssertEqual(started.average!.values.array(), started.model.parameters.array())
    XCTAssertEqual(started.average!.since, 4)
    _ = try started.run()
    let saved = try verifyCheckpoint(listCheckpoints(in: URL(fileURLWithPath: with.checkpointDirectory!))[0].url, config: TrainConfig.self)
    XCTAssertEqual(saved.step, 6)
    XCTAssertEqual(saved.ema?.since, 4)

    with.steps = 8
    with.emaDecay = 0
    with.emaWarmup = false
    let dropped = try trainers(with, ranks: 1, resume: "auto")[0]
    XCTAssertNil(dropped.average)
    let last = try verifyCheckpoint(listCheckpoints(in: URL(fileURLWithPath: with.checkpointDirectory!))[0].url, config: TrainConfig.self)
    XCTAssertEqual(last.step, 8)
    XCTAssertNil(last.ema)
    XCTAssertFalse(last.files.contains { $0.name.hasPrefix("ema-") })
  }

  /// Every evaluation records the task's metrics of the average with `_ema`; --keep-best may name
  /// one; `loadModel(weights: .ema)` is the average, and evaluating the checkpoint's EMA weights
  /// is evaluating that tensor (and the run's own last `_ema` evaluation).
  func testEvaluationsAndLoadingOfTheAverage() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = config(dir, steps: 6)
    c.evalEvery = 3
    c.keepBest = "val_loss_ema"
    let trainer = try trainers(c, ranks: 1)[0]
    let lines = try String(contentsOfFile: c.runDirectory + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
    let evaluations = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
      .filter { $0["kind"] as? String == "eval" }
    XCTAssertEqual(evaluations.count, 2)
    for record in evaluations {
      for name in ["val_top1_ema", "val_top5_ema", "val_loss_ema", "val_top1", "val_loss"] {
        XCTAssertNotNil(record[name] as? Double, "\(name) in \(record)")
      }
      XCTAssertFalse(record.keys.contains { $0.hasPrefix("val_accuracy/") && $0.hasSuffix("_ema") })
    }
    let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: c.checkpointFolder + "/best.json"))) as! [String: Any]
    XCTAssertEqual(best["metric"] as? String, "val_loss_ema")

    let folder = URL(fileURLWithPath: c.checkpointFolder).appendingPathComponent(checkpointName(step: 6)).path
    let averaged = try loadModel(folder, weights: .ema)
    XCTAssertEqual(averaged.model.parameters.array(), trainer.average!.values.array())
    XCTAssertEqual(try loadModel(folder).model.parameters.array(), trainer.model.parameters.array())
    let (ema, _) = try evaluateCheckpoint(path: folder, data: nil, comm: SingleProcessCommunicator(), batchSize: 16, weights: .ema)
    let (raw, _) = try evaluateCheckpoint(path: folder, data: nil, comm: SingleProcessCommunicator(), batchSize: 16)
    // the tensor itself, put in a model of the checkpoint's and evaluated
    let model = try loadModel(folder).model
    model.parameters.copy(from: trainer.average!.values.array())
    let (_, validation) = try makeDatasets(c)
    let direct = try evaluate(model: model, dataset: validation, comm: SingleProcessCommunicator(), batchSize: 16)
    XCTAssertEqual(ema, direct)
    XCTAssertNotEqual(ema.loss, raw.loss)
    XCTAssertEqual(ema.loss, evaluations.last!["val_loss_ema"] as! Double, accuracy: 1e-6 * ema.loss)
    XCTAssertEqual(ema.top1, evaluations.last!["val_top1_ema"] as! Double)
  }

  /// Segmentation records its metrics of the average with `_ema` too (`val_miou_ema`, the
  /// headline), and --keep-best may name it; `loadModel(weights: .ema)` reads that model's average.
  func testSegmentationRecordsTheMeanIoUOfTheAverage() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = config(dir, steps: 4)
    c.model.task = .segmentation
    c.model.classes = SyntheticSegmentation.names.count
    c.data = "segshapes"
    c.keepBest = "val_miou_ema"
    let trainer = try trainers(c, ranks: 1)[0]
    let text = try String(contentsOfFile: c.runDirectory + "/metrics.jsonl", encoding: .utf8)
    let last = try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last!.utf8)) as! [String: Any]
    for name in ["val_miou_ema", "val_pixel_accuracy_ema", "val_loss_ema", "val_miou"] {
      XCTAssertNotNil(last[name] as? Double, "\(name) in \(last)")
    }
    let folder = URL(fileURLWithPath: c.checkpointFolder).appendingPathComponent(checkpointName(step: 4)).path
    XCTAssertEqual(try loadModel(folder, weights: .ema).model.parameters.array(), trainer.average!.values.array())
  }

  /// A checkpoint without an average and `weights: .ema` is an error that says so; bad settings.
  func testErrors() throws {
    let dir = try makeTemporaryDirectory(self)
    var plain = config(dir, steps: 2)
    plain.emaDecay = 0
    plain.emaWarmup = false
    _ = try trainers(plain, ranks: 1)
    XCTAssertThrowsError(try loadModel(plain.checkpointFolder, weights: .ema)) {
      XCTAssertTrue("\($0)".contains("holds no EMA weights (trained without --ema): use --weights raw"), "\($0)")
    }
    for (change, message) in [
      ({ (c: inout TrainConfig) in c.emaDecay = 1 }, "--ema must be in [0, 1)"),
      ({ (c: inout TrainConfig) in c.emaDecay = -0.5 }, "--ema must be in [0, 1)"),
      ({ (c: inout TrainConfig) in c.emaDecay = 0 }, "--ema-warmup warms up the decay of --ema: pass --ema DECAY too"),
      ({ (c: inout TrainConfig) in c.emaDecay = 0; c.emaWarmup = false; c.keepBest = "val_top1_ema" }, "the _ema metrics need --ema DECAY"),
    ] {
      var c = config(dir, steps: 2)
      change(&c)
      XCTAssertThrowsError(try c.validate(worldSize: 1)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
    }
  }
}
