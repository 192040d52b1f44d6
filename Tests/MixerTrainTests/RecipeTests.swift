// The big_vision recipe's settings in the trainer: the sigmoid loss in training and evaluation,
// the head bias at initialisation, both recorded in the run and its checkpoint; configs written
// before them read as the old defaults; the segmentation head refuses the sigmoid loss.

import Foundation
import MixerTestSupport
import XCTest
import MixerCheckpoint
import MixerDistributed
import MixerModel
@testable import MixerTrain

final class RecipeTests: XCTestCase {
  func recipeConfig(_ dir: URL) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir, steps: 2)
    c.validationExamples = 20
    c.evalBatch = 10
    c.model.loss = .sigmoid
    c.headBiasInit = -6.9
    c.optimizer.kind = .adam
    c.optimizer.weightDecay = 1e-4
    return c
  }

  /// With lr 0 the head keeps its initial values (kernel 0, bias -6.9: Adam's step is lr·s_t·adam,
  /// the decay touches kernels only), so every logit is -6.9 and the mean loss of one-hot targets
  /// over K = 10 classes is the sigmoid one, 10·softplus(-6.9) + 6.9, in training and evaluation
  /// (the softmax loss of equal logits would be log 10).
  func testSigmoidLossAndHeadBiasInTrainingAndEvaluation() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = recipeConfig(dir)
    c.learningRate = 0
    let trainer = try Trainer(config: c, comm: SingleProcessCommunicator(), overwrite: true)
    XCTAssertEqual(trainer.model.parameter("head/bias"), [Float](repeating: -6.9, count: 10))
    let summary = try trainer.run()
    let expected = 10 * Foundation.log1p(Foundation.exp(-6.9)) + 6.9
    XCTAssertEqual(summary.finalLoss, expected, accuracy: 1e-5)
    XCTAssertEqual(try XCTUnwrap(summary.evaluation).loss, expected, accuracy: 1e-5)
    XCTAssertEqual(trainer.model.parameter("head/bias"), [Float](repeating: -6.9, count: 10))
    // recorded: config.json and the checkpoint, which eval and predict read the loss from
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
    XCTAssertEqual((object["model"] as? [String: Any])?["loss"] as? String, "sigmoid")
    XCTAssertEqual(object["headBiasInit"] as? Double ?? 0, -6.9, accuracy: 1e-6)
    XCTAssertEqual((object["optimizer"] as? [String: Any])?["kind"] as? String, "adam")
    let loaded = try loadModel(dir.path)
    XCTAssertEqual(loaded.model.config.loss, .sigmoid)
  }

  /// predict reports the probabilities of the loss the model trained with: each logit's sigmoid
  /// (independent classes), or the softmax of the row.
  func testPredictionProbabilitiesFollowTheLoss() {
    let sigmoid = HeadLoss.sigmoid.probabilities([0, -6.9, 2])
    XCTAssertEqual(sigmoid[0], 0.5, accuracy: 1e-12)
    XCTAssertEqual(sigmoid[1], 1 / (1 + Foundation.exp(6.9)), accuracy: 1e-12)
    XCTAssertEqual(sigmoid[2], 1 / (1 + Foundation.exp(-2)), accuracy: 1e-12)
    let softmax = HeadLoss.softmax.probabilities([0, -6.9, 2])
    XCTAssertEqual(softmax.reduce(0, +), 1, accuracy: 1e-12)
    XCTAssertEqual(softmax[2] / softmax[0], Foundation.exp(2), accuracy: 1e-9)
  }

  /// The default is today's run: the softmax loss and a zero head bias.
  func testDefaultsAreSoftmaxAndZeroBias() throws {
    XCTAssertEqual(TrainConfig.defaults.model.loss, .softmax)
    XCTAssertEqual(TrainConfig.defaults.headBiasInit, 0)
    XCTAssertEqual(TrainConfig.defaults.endLearningRate, 0)
    XCTAssertFalse(TrainConfig.defaults.warmupFromZero)
    XCTAssertEqual(TrainConfig.defaults.optimizer.kind, .adamw)
  }

  /// A config written before the loss, the head bias, the end rate and the warm-up count existed
  /// (a manifest's or a run's config.json) reads as softmax, 0, 0 and (t+1)/W.
  func testOldConfigsReadAsTheOldDefaults() throws {
    var c = recipeConfig(try makeTemporaryDirectory(self))
    c.endLearningRate = 1e-5
    c.warmupFromZero = true
    var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as! [String: Any]
    var model = object["model"] as! [String: Any]
    XCTAssertEqual(model["loss"] as? String, "sigmoid")
    model["loss"] = nil
    object["model"] = model
    for key in ["headBiasInit", "endLearningRate", "warmupFromZero"] {
      XCTAssertNotNil(object[key], key)
      object[key] = nil
    }
    let old = try TrainConfig.decode(migrating: JSONSerialization.data(withJSONObject: object))
    XCTAssertEqual(old.model.loss, .softmax)
    XCTAssertEqual(old.headBiasInit, 0)
    XCTAssertEqual(old.endLearningRate, 0)
    XCTAssertFalse(old.warmupFromZero)
    XCTAssertEqual(old.optimizer.kind, .adam)
    // the model's own decoder, as model.json and quantized folders read it
    let modelOnly = try JSONDecoder().decode(MixerConfig.self, from: JSONSerialization.data(withJSONObject: model))
    XCTAssertEqual(modelOnly.loss, .softmax)
  }

  /// The per-pixel head trains with the softmax loss only, and says so.
  func testSegmentationRefusesTheSigmoidLoss() throws {
    var c = recipeConfig(try makeTemporaryDirectory(self))
    c.model.task = .segmentation
    XCTAssertThrowsError(try c.validate(worldSize: 1)) {
      XCTAssertTrue(
        "\($0)".contains("--loss sigmoid is not available for --task segmentation (its head trains with: softmax)"), "\($0)")
    }
  }

  func testLREndNeedsADecay() throws {
    var c = recipeConfig(try makeTemporaryDirectory(self))
    c.endLearningRate = 1e-5
    c.decay = .constant
    XCTAssertThrowsError(try c.validate(worldSize: 1)) { XCTAssertTrue("\($0)".contains("--lr-end"), "\($0)") }
    c.decay = .linear
    XCTAssertNoThrow(try c.validate(worldSize: 1))
    c.endLearningRate = -1
    XCTAssertThrowsError(try c.validate(worldSize: 1))
  }
}
