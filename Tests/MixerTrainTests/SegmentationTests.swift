// Segmentation in process: the IoU arithmetic on a hand-made confusion matrix; exact evaluation
// totals on any number of ranks; training is deterministic, runs data-parallel (2 and 4 in-process
// ranks, ZeRO-1, accumulation) to the one-rank result, and resumes bit for bit from a checkpoint
// that `evaluateCheckpoint` reads back; task/data mismatches are one-line errors. That it learns is
// shown with the release binary in SegmentationCLITests.

import MixerTestSupport
import XCTest
import MixerData
import MixerDistributed
import MixerModel
@testable import MixerTrain

final class SegmentationTests: XCTestCase {
  /// A small segmentation model on the embedded scenes (6 classes, 32 px, patch 8).
  func segmentationConfig(_ dir: URL, steps: Int = 6) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir.appendingPathComponent("run"), steps: steps)
    c.model.task = .segmentation
    c.model.classes = SyntheticSegmentation.names.count
    c.data = "segshapes"
    c.validationExamples = 40
    c.evalBatch = 16
    c.logEvery = 2
    c.bucketFloats = 5_000
    return c
  }

  func testIntersectionOverUnionOfAHandMadeConfusionMatrix() {
    // rows: true class, columns: predicted; class 3 is neither labelled nor predicted
    let confusion: [Double] = [
      5, 1, 0, 0,
      2, 3, 1, 0,
      0, 0, 0, 0,
      0, 0, 0, 0,
    ]
    let (mean, perClass) = intersectionOverUnion(confusion: confusion, classes: 4)
    XCTAssertEqual(perClass[0]!, 5.0 / (6 + 7 - 5), accuracy: 1e-12)
    XCTAssertEqual(perClass[1]!, 3.0 / (6 + 4 - 3), accuracy: 1e-12)
    XCTAssertEqual(perClass[2]!, 0, "predicted but never labelled: IoU 0")
    XCTAssertNil(perClass[3])
    XCTAssertEqual(mean, (5.0 / 8 + 3.0 / 7 + 0) / 3, accuracy: 1e-12)
    XCTAssertEqual(intersectionOverUnion(confusion: [Double](repeating: 0, count: 4), classes: 2).mean, 0)
  }

  /// Every rank count gives the same totals; a model that predicts background everywhere scores
  /// the background share as pixel accuracy and background-IoU / (classes present) as mIoU.
  func testEvaluationIsExactOnAnyNumberOfRanks() throws {
    let dir = try makeTemporaryDirectory(self)
    var config = segmentationConfig(dir, steps: 4)
    config.validationExamples = 37
    let trained = try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)
    _ = try trained.run()
    let dataset = SyntheticSegmentation(split: .validation, count: 37, seed: 0)
    let single = try evaluate(model: trained.model, dataset: dataset, comm: SingleProcessCommunicator(), batchSize: 8)
    XCTAssertEqual(single.count, 37)
    XCTAssertEqual(single.pixels, 37 * 32 * 32)
    XCTAssertNotNil(single.meanIoU)
    for ranks in [2, 3] {
      let results = try LocalGroup(size: ranks).run { comm in
        try evaluate(model: trained.model, dataset: dataset, comm: comm, batchSize: 5)
      }
      for result in results {
        XCTAssertEqual(result.count, single.count)
        XCTAssertEqual(result.pixels, single.pixels)
        XCTAssertEqual(result.top1, single.top1, "\(ranks) ranks")
        XCTAssertEqual(result.meanIoU!, single.meanIoU!, accuracy: 1e-12, "\(ranks) ranks")
        // the logits agree to fp32 rounding only: OpenBLAS's bits depend on the batch's rows
        XCTAssertEqual(result.loss, single.loss, accuracy: 1e-6 * single.loss)
      }
    }
    // a model with a zero head and a large background bias predicts background everywhere
    let model = trained.model
    model.parameters.copy(from: [Float](repeating: 0, count: model.table["segmentation_head/kernel"]!.count),
                          at: model.table["segmentation_head/kernel"]!.offset)
    let bias = model.table["segmentation_head/bias"]!
    model.parameters.copy(from: (0..<bias.count).map { $0 % 6 == 0 ? 10 : 0 }, at: bias.offset)
    let constant = try evaluate(model: model, dataset: dataset, comm: SingleProcessCommunicator(), batchSize: 8)
    var background = 0
    var batch = Batch()
    try batch.fill(segmentation: dataset, indices: Array(0..<37), epoch: 0)
    background = batch.masks.filter { $0 == 0 }.count
    let share = Double(background) / Double(37 * 32 * 32)
    XCTAssertEqual(constant.top1, share, accuracy: 1e-12, "pixel accuracy of all-background")
    let present = Set(batch.masks).count
    XCTAssertEqual(constant.meanIoU!, share / Double(present), accuracy: 1e-12)
  }

  func testSameSeedGivesBitIdenticalParameters() throws {
    var config = segmentationConfig(try makeTemporaryDirectory(self), steps: 6)
    config.stochasticDepth = 0.1
    config.dropout = 0.1
    config.labelSmoothing = 0.05
    let a = try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)
    _ = try a.run()
    config.runDirectory = try makeTemporaryDirectory(self).path
    let b = try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)
    _ = try b.run()
    XCTAssertEqual(Array(a.model.parameters.bytes), Array(b.model.parameters.bytes))
  }

  func testRanksZeROAndAccumulationMatchOneRank() throws {
    let sgd: (inout TrainConfig) -> Void = { $0.optimizer.kind = .sgd; $0.learningRate = 0.05 }
    var reference = segmentationConfig(try makeTemporaryDirectory(self))
    sgd(&reference)
    let expected = try Trainer(config: reference, comm: SingleProcessCommunicator(), overwrite: true)
    _ = try expected.run()
    let want = expected.model.parameters.array()
    func relative(_ a: [Float]) -> Double {
      var diff = 0.0, norm = 0.0
      for i in a.indices { diff += Double(a[i] - want[i]) * Double(a[i] - want[i]); norm += Double(want[i]) * Double(want[i]) }
      return (diff / norm).squareRoot()
    }
    for (ranks, zero, accumulation) in [(2, 0, 1), (4, 1, 1), (2, 0, 2)] {
      let results = try LocalGroup(size: ranks).run { comm -> [Float] in
        var config = self.segmentationConfig(try makeTemporaryDirectory(self))
        sgd(&config)
        config.zeroStage = zero
        config.accumulation = accumulation
        let trainer = try Trainer(config: config, comm: comm, overwrite: true)
        _ = try trainer.run()
        return trainer.model.parameters.array()
      }
      XCTAssertEqual(results[1], results[0])
      XCTAssertLessThan(relative(results[0]), 1e-5, "\(ranks) ranks, ZeRO \(zero), accum \(accumulation)")
    }
  }

  func testResumeIsBitIdenticalAndEvalReadsTheCheckpoint() throws {
    var straight = segmentationConfig(try makeTemporaryDirectory(self), steps: 8)
    straight.dropout = 0.1
    let reference = try Trainer(config: straight, comm: SingleProcessCommunicator(), overwrite: true)
    let referenceSummary = try reference.run()

    let dir = try makeTemporaryDirectory(self)
    var first = segmentationConfig(dir, steps: 8)
    first.dropout = 0.1
    first.checkpointDirectory = dir.appendingPathComponent("checkpoints").path
    first.saveEvery = 4
    _ = try LocalGroup(size: 2).run { comm -> Int in
      let trainer = try Trainer(config: first, comm: comm, faults: FaultPlan(stopAfterStep: 4), overwrite: true)
      _ = try trainer.run()
      return 0
    }
    let resumed = try Trainer(config: first, comm: SingleProcessCommunicator(), resume: "auto")
    XCTAssertEqual(resumed.startStep, 4)
    _ = try resumed.run()
    // 2 ranks then 1 rank: the same global batches, summed in another order
    let a = resumed.model.parameters.array(), b = reference.model.parameters.array()
    var diff = 0.0, norm = 0.0
    for view in resumed.model.table.views where !view.name.hasSuffix("token_mixing/Dense_1/bias") {
      for i in view.range { diff += Double(a[i] - b[i]) * Double(a[i] - b[i]); norm += Double(b[i]) * Double(b[i]) }
    }
    XCTAssertLessThan((diff / norm).squareRoot(), 1e-4)
    // one rank throughout: bit-identical
    var single = first
    single.checkpointDirectory = try makeTemporaryDirectory(self).appendingPathComponent("checkpoints").path
    let stopped = try Trainer(config: single, comm: SingleProcessCommunicator(), faults: FaultPlan(stopAfterStep: 4), overwrite: true)
    _ = try stopped.run()
    let again = try Trainer(config: single, comm: SingleProcessCommunicator(), resume: "auto")
    _ = try again.run()
    XCTAssertEqual(again.model.parameters.array(), b)

    let (result, manifest) = try evaluateCheckpoint(
      path: single.checkpointDirectory!, data: nil, comm: SingleProcessCommunicator(), batchSize: 16)
    XCTAssertEqual(manifest.step, 8)
    XCTAssertEqual(manifest.config.model.task, .segmentation)
    XCTAssertEqual(result.meanIoU!, referenceSummary.evaluation!.meanIoU!, accuracy: 1e-12)
  }

  /// Fine-tuning across tasks: a classification checkpoint initialises a segmentation model's
  /// stem and blocks (the classification head is left out, the segmentation head starts at zero),
  /// and the other way round.
  func testInitFromACheckpointOfTheOtherTask() throws {
    let dir = try makeTemporaryDirectory(self)
    var classification = smallTrainConfig(runDirectory: dir.appendingPathComponent("c"), steps: 3)
    classification.checkpointDirectory = dir.appendingPathComponent("c-ck").path
    let source = try Trainer(config: classification, comm: SingleProcessCommunicator(), overwrite: true)
    _ = try source.run()

    var segmentation = segmentationConfig(dir, steps: 3)
    segmentation.checkpointDirectory = dir.appendingPathComponent("s-ck").path
    segmentation.initFrom = classification.checkpointDirectory
    let target = try Trainer(config: segmentation, comm: SingleProcessCommunicator(), overwrite: true)
    for view in target.model.table.views where !view.name.hasPrefix("segmentation_head/") {
      XCTAssertEqual(target.model.parameter(view.name), source.model.parameter(view.name), view.name)
    }
    XCTAssertEqual(Set(target.model.parameter("segmentation_head/kernel")!), [0])
    _ = try target.run()

    var back = classification
    back.runDirectory = dir.appendingPathComponent("b").path
    back.checkpointDirectory = nil
    back.initFrom = segmentation.checkpointDirectory
    let classifier = try Trainer(config: back, comm: SingleProcessCommunicator(), overwrite: true)
    XCTAssertEqual(
      classifier.model.parameter("MixerBlock_1/channel_mixing/Dense_0/kernel"),
      target.model.parameter("MixerBlock_1/channel_mixing/Dense_0/kernel"))
    XCTAssertEqual(Set(classifier.model.parameter("head/kernel")!), [0])
  }

  func testTaskAndDataMustAgree() throws {
    var config = segmentationConfig(try makeTemporaryDirectory(self))
    config.data = "shapes"
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("--task segmentation needs data with a class per pixel"), "\($0)")
    }
    config = smallTrainConfig(runDirectory: try makeTemporaryDirectory(self), steps: 2)
    config.data = "segshapes"
    config.model.classes = 6
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("holds segmentation masks: pass --task segmentation"), "\($0)")
    }
    config = segmentationConfig(try makeTemporaryDirectory(self))
    config.mixup = 0.5
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("--mixup does not apply to segmentation"), "\($0)")
    }
    config = segmentationConfig(try makeTemporaryDirectory(self))
    config.model.classes = 4
    XCTAssertThrowsError(try Trainer(config: config, comm: SingleProcessCommunicator(), overwrite: true)) {
      XCTAssertTrue("\($0)".contains("pass --classes 6"), "\($0)")
    }
  }
}
