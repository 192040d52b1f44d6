// Day-one trust in the run folder (issue 16): one run per folder, records tagged with a run id,
// every run ending with a checkpoint the other commands read, signals that save and stop, and
// resumes that say what they change.

import Foundation
import MixerTestSupport
import XCTest
import MixerCheckpoint
import MixerDistributed
import MixerModel
import MixerTelemetry
@testable import MixerTrain

final class RunFolderTests: XCTestCase {
  func config(_ dir: URL, steps: Int = 4) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir.appendingPathComponent("run"), steps: steps)
    c.validationExamples = 32
    c.logEvery = 1
    return c
  }

  func records(_ c: TrainConfig) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: c.runDirectory + "/metrics.jsonl", encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
  }

  /// A second run into a folder holding another run's records stops unless it resumes that run
  /// or is told to overwrite; with --overwrite only the new run's records remain.
  func testAnotherRunsFolderIsRefusedUnlessOverwritten() throws {
    let c = config(try makeTemporaryDirectory(self), steps: 2)
    _ = try Trainer(config: c, comm: SingleProcessCommunicator()).run()
    let first = try records(c)
    XCTAssertEqual(Set(first.compactMap { $0["run"] as? String }).count, 1, "one run id")
    XCTAssertThrowsError(try Trainer(config: c, comm: SingleProcessCommunicator()).run()) {
      XCTAssertTrue("\($0)".contains("another run's records are here"), "\($0)")
      XCTAssertTrue("\($0)".contains("--overwrite"), "\($0)")
    }
    _ = try Trainer(config: c, comm: SingleProcessCommunicator(), overwrite: true).run()
    let second = try records(c)
    XCTAssertEqual(second.count, first.count, "the old records are gone")
    XCTAssertNotEqual(second[0]["run"] as? String, first[0]["run"] as? String)
  }

  /// A folder in use by a running job cannot be used by a second one: the error names the holder.
  func testLockedRunFolderNamesTheHolder() throws {
    let c = config(try makeTemporaryDirectory(self), steps: 1)
    let held = try FolderLock(c.runDirectory, purpose: "the run folder")
    XCTAssertThrowsError(try Trainer(config: c, comm: SingleProcessCommunicator()).run()) {
      XCTAssertTrue("\($0)".contains("is in use by another run (host "), "\($0)")
      XCTAssertTrue("\($0)".contains("pid \(getpid())"), "\($0)")
    }
    held.release()
    XCTAssertNoThrow(try Trainer(config: c, comm: SingleProcessCommunicator()).run())
  }

  /// Every run ends with a checkpoint in its run folder, which eval reads from the run folder.
  func testEveryRunEndsWithACheckpointEvalReads() throws {
    let c = config(try makeTemporaryDirectory(self), steps: 2)
    let trainer = try Trainer(config: c, comm: SingleProcessCommunicator())
    let summary = try trainer.run()
    XCTAssertEqual(listCheckpoints(in: URL(fileURLWithPath: c.runDirectory + "/checkpoints")).map(\.step), [2])
    let (result, loaded) = try evaluateCheckpoint(path: c.runDirectory, data: nil, comm: SingleProcessCommunicator(), batchSize: 16)
    XCTAssertEqual(loaded.step, 2)
    XCTAssertEqual(result.top1, summary.evaluation?.top1)
  }

  /// A signal stops the run after the current step with a checkpoint; resuming finishes it with
  /// exactly the parameters of an uninterrupted run. The records continue the same run.
  func testSignalSavesAndResumeIsBitIdentical() throws {
    let straight = config(try makeTemporaryDirectory(self), steps: 4)
    let reference = try Trainer(config: straight, comm: SingleProcessCommunicator())
    _ = try reference.run()

    let c = config(try makeTemporaryDirectory(self), steps: 4)
    Interruption.install()
    defer { Interruption.reset() }
    Interruption.raise(SIGUSR1)
    let stopped = try Trainer(config: c, comm: SingleProcessCommunicator())
    let summary = try stopped.run()
    XCTAssertEqual(summary.interrupted?.step, 1)
    XCTAssertEqual(summary.interrupted?.signal, "SIGUSR1")
    XCTAssertEqual(listCheckpoints(in: URL(fileURLWithPath: c.checkpointFolder)).map(\.step), [1])
    Interruption.reset()
    let resumed = try Trainer(config: c, comm: SingleProcessCommunicator(), resume: "auto")
    XCTAssertEqual(resumed.startStep, 1)
    _ = try resumed.run()
    XCTAssertEqual(resumed.model.parameters.array(), reference.model.parameters.array())
    let ids = Set(try records(c).compactMap { $0["run"] as? String })
    XCTAssertEqual(ids.count, 1, "the resumed run continues the same run id")
  }

  /// Two ranks: whichever rank gets the signal, both stop after the same step.
  func testRanksAgreeOnTheStopStep() throws {
    let c = config(try makeTemporaryDirectory(self), steps: 4)
    Interruption.install()
    defer { Interruption.reset() }
    Interruption.raise(SIGTERM)  // the process-wide flag: every in-process rank sees it
    let steps = try LocalGroup(size: 2).run { comm -> Int in
      try Trainer(config: c, comm: comm).run().interrupted?.step ?? -1
    }
    XCTAssertEqual(steps, [1, 1])
  }

  /// Resuming a run that is already at --steps says so and trains nothing; --resume auto where
  /// every checkpoint is corrupt is an error saying exactly that; another model is refused.
  func testResumeChecks() throws {
    let c = config(try makeTemporaryDirectory(self), steps: 2)
    _ = try Trainer(config: c, comm: SingleProcessCommunicator()).run()
    let again = try Trainer(config: c, comm: SingleProcessCommunicator(), resume: "auto")
    XCTAssertEqual(again.startStep, 2)
    let summary = try again.run()
    XCTAssertEqual(summary.seconds, 0)
    XCTAssertTrue(summary.finalLoss.isNaN)
    XCTAssertNil(summary.evaluation)

    var other = c
    other.model.hidden = 48
    XCTAssertThrowsError(try Trainer(config: other, comm: SingleProcessCommunicator(), resume: "auto")) {
      XCTAssertTrue("\($0)".contains("holds another model (hidden 32 → 48)"), "\($0)")
    }

    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointFolder))[0].url
    let params = folder.appendingPathComponent("params.safetensors")
    var bytes = try Data(contentsOf: params)
    bytes[bytes.count - 3] ^= 0xFF
    try bytes.write(to: params)
    XCTAssertThrowsError(try Trainer(config: c, comm: SingleProcessCommunicator(), resume: "auto")) {
      XCTAssertTrue("\($0)".contains("--resume auto: no valid checkpoint in"), "\($0)")
    }
  }

  /// The settings a resume changes, as "key old → new".
  func testConfigDifferences() {
    var a = TrainConfig(model: TrainConfig.defaults.model), b = a
    b.learningRate = 1e-3
    b.globalBatch = 64
    XCTAssertEqual(configDifferences(a, b), ["globalBatch 128 → 64", "learningRate 0.002 → 0.001"])
    a.threads = 3
    XCTAssertEqual(configDifferences(a, b, ignoring: ["threads"]).count, 2)
  }

  /// Class names: the same list, another order (mapped by name), other classes.
  func testClassMatch() {
    XCTAssertEqual(ClassMatch(model: ["a", "b", "c"], data: ["a", "b", "c"]), .same)
    XCTAssertEqual(ClassMatch(model: ["a", "b", "c"], data: ["c", "a", "b"]), .reordered([2, 0, 1]))
    guard case .different(let text) = ClassMatch(model: ["a", "b", "c"], data: ["a", "b", "d"]) else {
      return XCTFail("other names must not match")
    }
    XCTAssertEqual(text, "not in the data: c; unknown to the model: d")
  }
}

/// `--epochs` sets the steps from the data; unspecified evaluation is every tenth of the run.
final class ResolveTests: XCTestCase {
  func testEpochsAndDefaultEvaluationInterval() throws {
    var c = smallTrainConfig(runDirectory: try makeTemporaryDirectory(self), steps: 1)
    c.trainExamples = 256
    c.globalBatch = 16
    let notes = try c.resolve([.steps, .evalEvery], epochs: 3)
    XCTAssertEqual(c.steps, 48)
    XCTAssertEqual(c.evalEvery, 4)
    XCTAssertEqual(notes, ["--epochs 3: 48 steps of 16 (16 per epoch of 256 images)"])
    var both = c
    XCTAssertThrowsError(try both.resolve([], epochs: 2)) { XCTAssertTrue("\($0)".contains("not both"), "\($0)") }
  }
}

/// --keep-best beside --keep: the newest checkpoint and the best one by the metric stay.
final class KeepBestTests: XCTestCase {
  func testTheBestCheckpointSurvivesPruning() throws {
    var c = smallTrainConfig(runDirectory: try makeTemporaryDirectory(self), steps: 8)
    c.validationExamples = 48
    c.evalEvery = 2
    c.saveEvery = 2
    c.keep = 1
    c.keepBest = "val_loss"
    _ = try Trainer(config: c, comm: SingleProcessCommunicator()).run()
    let text = try String(contentsOfFile: c.runDirectory + "/metrics.jsonl", encoding: .utf8)
    let evals = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
      .filter { $0["kind"] as? String == "eval" }
    let bestRecord = evals.min { ($0["val_loss"] as! Double) < ($1["val_loss"] as! Double) }!
    let bestStep = bestRecord["step"] as! Int
    let best = try JSONSerialization.jsonObject(
      with: Data(contentsOf: URL(fileURLWithPath: c.checkpointFolder + "/best.json"))) as! [String: Any]
    XCTAssertEqual(best["step"] as? Int, bestStep)
    XCTAssertEqual(best["metric"] as? String, "val_loss")
    let kept = listCheckpoints(in: URL(fileURLWithPath: c.checkpointFolder)).map(\.step)
    XCTAssertEqual(Set(kept), Set([8, bestStep]), "the newest (--keep 1) and the best")
    var wrong = c
    wrong.keepBest = "val_miou"
    XCTAssertThrowsError(try wrong.validate(worldSize: 1)) { XCTAssertTrue("\($0)".contains("not a metric of this task"), "\($0)") }
  }
}

/// --init-from compares class names: the same names in another order permute the head's
/// columns (and bias), other names re-initialise the head.
final class AlignHeadTests: XCTestCase {
  func testHeadFollowsClassNames() throws {
    let config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 8, hidden: 4, blocks: 1, tokensMLP: 4, channelsMLP: 8, classes: 3)
    let model = try MixerModel(config: config, seed: 1)
    let kernel = model.table["head/kernel"]!, bias = model.table["head/bias"]!
    model.parameters.copy(from: (0..<kernel.count).map { Float($0) }, at: kernel.offset)
    model.parameters.copy(from: [10, 11, 12], at: bias.offset)
    Trainer.alignHead(model, with: ["a", "b", "c"], dataNames: ["c", "a", "b"]) { _ in }
    // data class 0 is "c", the checkpoint's class 2: column 0 takes column 2
    XCTAssertEqual(model.parameters.array(bias.range), [12, 10, 11])
    XCTAssertEqual(Array(model.parameters.array(kernel.range).prefix(3)), [2, 0, 1])
    var said: [String] = []
    Trainer.alignHead(model, with: ["a", "b", "c"], dataNames: ["x", "y", "z"]) { said.append($0) }
    XCTAssertEqual(model.parameters.array(bias.range), [0, 0, 0])
    XCTAssertTrue(said.first?.contains("head re-initialised") == true, "\(said)")
  }
}
