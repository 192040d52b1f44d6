// Checkpoints: bit-identical resume (1 and 2 ranks, with and without ZeRO-1, with stochastic depth
// and dropout on), resharding between world sizes, corruption detection and fallback, refusing a
// checkpoint of another model, and malformed manifests.

import MixerTestSupport
import XCTest
import MixerCheckpoint
import MixerDistributed
import MixerModel
@testable import MixerTrain

final class CheckpointTests: XCTestCase {
  func config(_ dir: URL, steps: Int) -> TrainConfig {
    var c = smallTrainConfig(runDirectory: dir.appendingPathComponent("run"), steps: steps)
    c.validationExamples = 32
    c.evalBatch = 32
    c.stochasticDepth = 0.3
    c.dropout = 0.1
    c.bucketFloats = 4_000
    c.checkpointDirectory = dir.appendingPathComponent("checkpoints").path
    return c
  }

  /// Trains on `ranks` in-process ranks; returns rank 0's parameters and every rank's trainer.
  func train(_ c: TrainConfig, ranks: Int, resume: String? = nil) throws -> [Trainer] {
    if ranks == 1 {
      let trainer = try Trainer(config: c, comm: SingleProcessCommunicator(), resume: resume, overwrite: resume == nil)
      _ = try trainer.run()
      return [trainer]
    }
    return try LocalGroup(size: ranks).run { comm in
      let trainer = try Trainer(config: c, comm: comm, resume: resume, overwrite: resume == nil)
      _ = try trainer.run()
      return trainer
    }
  }

  func testResumeIsBitIdentical() throws {
    for (ranks, zero, hybrid) in [(1, 0, false), (2, 0, false), (2, 1, false), (1, 0, true)] {
      let straightDir = try makeTemporaryDirectory(self)
      var straight = config(straightDir, steps: 12)
      if hybrid {
        straight.model.blocks = 3
        straight.model.blockKinds = [.attention, .conv, .mixerAttention]
        straight.model.attentionHeads = 4
      }
      straight.zeroStage = zero
      straight.checkpointDirectory = nil
      let reference = try train(straight, ranks: ranks)[0].model.parameters.array()

      let dir = try makeTemporaryDirectory(self)
      var first = config(dir, steps: 12)
      first.model = straight.model
      first.zeroStage = zero
      first.saveEvery = 6
      // stop after 6 steps: the schedule still spans 12 (as a preempted job would)
      let stopped = try LocalGroupOrSingle(ranks) { comm -> Int in
        let trainer = try Trainer(config: first, comm: comm, faults: FaultPlan(stopAfterStep: 6), overwrite: true)
        _ = try trainer.run()
        return trainer.startStep
      }
      XCTAssertEqual(stopped[0], 0)
      XCTAssertEqual(listCheckpoints(in: URL(fileURLWithPath: first.checkpointDirectory!)).map(\.step), [6])
      let resumed = try train(first, ranks: ranks, resume: "auto")
      XCTAssertEqual(resumed[0].startStep, 6)
      XCTAssertEqual(resumed[0].model.parameters.array(), reference, "\(ranks) rank(s), ZeRO \(zero)")
    }
  }

  /// The big_vision recipe resumes bit for bit as well: `adam` (its moments saved and re-read as
  /// adamw's, under the name adam), the sigmoid loss with mixup and label smoothing on its
  /// targets, the head bias, a linear end and the warm-up from zero; 1 rank, and 2 under ZeRO-1.
  func testResumeWithTheBigVisionRecipeIsBitIdentical() throws {
    func recipe(_ c: inout TrainConfig) {
      c.optimizer.kind = .adam
      c.optimizer.weightDecay = 1e-3
      c.model.loss = .sigmoid
      c.headBiasInit = -2.3
      c.decay = .linear
      c.endLearningRate = 3e-4
      c.warmupFromZero = true
      c.mixup = 0.5
      c.labelSmoothing = 0.1
    }
    for (ranks, zero) in [(1, 0), (2, 1)] {
      var straight = config(try makeTemporaryDirectory(self), steps: 10)
      recipe(&straight)
      straight.zeroStage = zero
      straight.checkpointDirectory = nil
      let reference = try train(straight, ranks: ranks)[0].model.parameters.array()

      let dir = try makeTemporaryDirectory(self)
      var first = config(dir, steps: 10)
      recipe(&first)
      first.zeroStage = zero
      first.saveEvery = 5
      _ = try LocalGroupOrSingle(ranks) { comm -> Int in
        let trainer = try Trainer(config: first, comm: comm, faults: FaultPlan(stopAfterStep: 5), overwrite: true)
        _ = try trainer.run()
        return trainer.startStep
      }
      let saved = try XCTUnwrap(listCheckpoints(in: URL(fileURLWithPath: first.checkpointDirectory!)).first)
      let manifest = try TrainingManifest.read(from: saved.url)
      XCTAssertEqual(manifest.optimizer, "adam")
      XCTAssertEqual(manifest.config.model.loss, .sigmoid)
      let resumed = try train(first, ranks: ranks, resume: "auto")
      XCTAssertEqual(resumed[0].startStep, 5)
      XCTAssertEqual(resumed[0].model.parameters.array(), reference, "\(ranks) rank(s), ZeRO \(zero)")
    }
  }

  func LocalGroupOrSingle<T>(_ ranks: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
    ranks == 1 ? [try body(SingleProcessCommunicator())] : try LocalGroup(size: ranks).run { try body($0) }
  }

  /// Save with 4 ranks under ZeRO-1, resume with 2 and with 1 (and 1 → 4): the moments are
  /// the same numbers re-sliced, and training goes on.
  func testReshardingReslicesTheMoments() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = config(dir, steps: 4)
    c.zeroStage = 1
    let savers = try train(c, ranks: 4)
    // the full moments, assembled from the 4 shards in memory
    var first: [Float] = [], second: [Float] = []
    for t in savers { first += t.optimizer.firstMoment.array(); second += t.optimizer.secondMoment.array() }
    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!))[0].url
    for (ranks, zero) in [(2, 1), (1, 0), (2, 0)] {
      var next = c
      next.zeroStage = zero
      let loaded = try LocalGroupOrSingle(ranks) { comm -> (Range<Int>, [Float], [Float], [Float]) in
        let trainer = try Trainer(config: next, comm: comm, resume: folder.path)
        return (trainer.optimizer.range, trainer.optimizer.firstMoment.array(), trainer.optimizer.secondMoment.array(),
                trainer.model.parameters.array())
      }
      for (range, m, v, parameters) in loaded {
        XCTAssertEqual(m, Array(first[range]), "first moment, \(ranks) ranks ZeRO \(zero)")
        XCTAssertEqual(v, Array(second[range]), "second moment, \(ranks) ranks ZeRO \(zero)")
        XCTAssertEqual(parameters, savers[0].model.parameters.array())
      }
    }
    // 4 → 2 ranks, training goes on to step 8
    var more = c
    more.steps = 8
    let continued = try train(more, ranks: 2, resume: "auto")
    XCTAssertEqual(continued[0].startStep, 4)
    XCTAssertEqual(listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!)).first?.step, 8)
    // and back: 1 rank saves, 4 ranks resume under ZeRO-1
    let dir1 = try makeTemporaryDirectory(self)
    let single = config(dir1, steps: 4)
    let saver = try train(single, ranks: 1)[0]
    var four = single
    four.zeroStage = 1
    let shards = try LocalGroup(size: 4).run { comm -> [Float] in
      try Trainer(config: four, comm: comm, resume: "auto").optimizer.firstMoment.array()
    }
    XCTAssertEqual(Array(shards.joined()), saver.optimizer.firstMoment.array())
  }

  func testCorruptionIsDetectedAndAutoFallsBack() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = config(dir, steps: 6)
    c.saveEvery = 3
    _ = try train(c, ranks: 1)
    let checkpoints = listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!))
    XCTAssertEqual(checkpoints.map(\.step), [6, 3])
    let newest = checkpoints[0].url
    // a bit flip in the parameters
    let params = newest.appendingPathComponent("params.safetensors")
    var bytes = try Data(contentsOf: params)
    bytes[bytes.count - 10] ^= 0x04
    try bytes.write(to: params)
    XCTAssertThrowsError(try verifyCheckpoint(newest)) {
      XCTAssertTrue("\($0)".contains("params.safetensors: SHA-256 mismatch"), "\($0)")
    }
    var messages: [String] = []
    let chosen = try selectCheckpoint(resume: "auto", directory: URL(fileURLWithPath: c.checkpointDirectory!)) { messages.append($0) }
    XCTAssertEqual(chosen?.lastPathComponent, checkpoints[1].url.lastPathComponent)
    XCTAssertTrue(messages.first?.contains("skipping checkpoint step-00000006") ?? false, "\(messages)")
    // a truncated optimizer file in the older one
    let optimizerFile = checkpoints[1].url.appendingPathComponent("optimizer-rank-00000.safetensors")
    let full = try Data(contentsOf: optimizerFile)
    try full.prefix(full.count - 100).write(to: optimizerFile)
    XCTAssertThrowsError(try verifyCheckpoint(checkpoints[1].url)) {
      XCTAssertTrue("\($0)".contains("optimizer-rank-00000.safetensors") && "\($0)".contains("truncated"), "\($0)")
    }
    XCTAssertNil(try selectCheckpoint(resume: "auto", directory: URL(fileURLWithPath: c.checkpointDirectory!)) { _ in })
    // an explicit corrupt path is an error, not a silent fresh start
    XCTAssertThrowsError(try Trainer(config: c, comm: SingleProcessCommunicator(), resume: newest.path))
  }

  /// Resuming from step 2 past a corrupt step 4 and saving step 3 with `keep`: the folder just
  /// saved is always kept, the corrupt one of the abandoned future never is.
  func testKeepPrunesCorruptAndAbandonedFolders() throws {
    for (keep, expected) in [(1, [3]), (2, [3, 2])] {
      let dir = try makeTemporaryDirectory(self)
      var c = config(dir, steps: 4)
      c.saveEvery = 2
      _ = try train(c, ranks: 1)
      let directory = URL(fileURLWithPath: c.checkpointDirectory!)
      XCTAssertEqual(listCheckpoints(in: directory).map(\.step), [4, 2])
      let params = directory.appendingPathComponent(checkpointName(step: 4)).appendingPathComponent("params.safetensors")
      var bytes = try Data(contentsOf: params)
      bytes[bytes.count - 10] ^= 0x04
      try bytes.write(to: params)

      var resumed = c
      resumed.steps = 3
      resumed.saveEvery = 0
      resumed.keep = keep
      XCTAssertEqual(try train(resumed, ranks: 1, resume: "auto")[0].startStep, 2)
      let left = listCheckpoints(in: directory)
      XCTAssertEqual(left.map(\.step), expected, "keep \(keep)")
      for (_, url) in left { XCTAssertNoThrow(try verifyCheckpoint(url), "keep \(keep)") }
    }
  }

  /// Saving over an existing `step-N` replaces it only once the new folder is complete: a save
  /// that fails midway leaves the old checkpoint valid, and a good one leaves no stray folder.
  func testSaveReplacesAnExistingStepOnlyWhenCommitted() throws {
    let dir = try makeTemporaryDirectory(self)
    let c = config(dir, steps: 2)
    let trainer = try train(c, ranks: 1)[0]
    let directory = URL(fileURLWithPath: c.checkpointDirectory!)
    let folder = directory.appendingPathComponent(checkpointName(step: 2))
    let cursor = try verifyCheckpoint(folder).cursor
    let store = CheckpointStore<TrainConfig>(directory: directory, comm: SingleProcessCommunicator())
    // an optimizer that does not cover the shard: the save throws after the old code's delete
    let tooSmall = Optimizer(config: c.optimizer, table: trainer.model.table, range: 0..<1)
    XCTAssertThrowsError(
      try store.save(step: 2, model: trainer.model, optimizer: tooSmall, config: c, zeroStage: 0, cursor: cursor, keep: 0))
    XCTAssertEqual(listCheckpoints(in: directory).map(\.step), [2])
    XCTAssertNoThrow(try verifyCheckpoint(folder))

    try store.save(step: 2, model: trainer.model, optimizer: trainer.optimizer, config: c, zeroStage: 0, cursor: cursor, keep: 0)
    XCTAssertNoThrow(try verifyCheckpoint(folder))
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0 != ".lock" }
    XCTAssertEqual(names, [checkpointName(step: 2)], "nothing but the committed step (and the run's lock file)")
  }

  func testCheckpointOfAnotherModelListsMismatchedTensors() throws {
    let dir = try makeTemporaryDirectory(self)
    let c = config(dir, steps: 2)
    _ = try train(c, ranks: 1)
    var other = c
    other.model.channelsMLP = 48
    XCTAssertThrowsError(try Trainer(config: other, comm: SingleProcessCommunicator(), resume: "auto")) {
      let text = "\($0)"
      XCTAssertTrue(text.contains("holds another model (channelsMLP 64 → 48)"), text)
    }
  }

  func testMalformedManifestsAreErrors() throws {
    let dir = try makeTemporaryDirectory(self)
    let c = config(dir, steps: 2)
    _ = try train(c, ranks: 1)
    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!))[0].url
    let good = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
    XCTAssertNoThrow(try TrainingManifest.decode(good, source: "m"))
    var json = try JSONSerialization.jsonObject(with: good) as! [String: Any]
    let cases: [(String, (inout [String: Any]) -> Void, String)] = [
      ("version", { $0["version"] = 99 }, "version 99"),
      ("format", { $0["format"] = "zip" }, "not a mixer-dist checkpoint"),
      ("count", { $0["parameterCount"] = 5 }, "does not match its model"),
      ("shards", { $0["shards"] = [] }, "optimizer shards end at 0"),
      ("step", { $0["step"] = -1 }, "invalid step"),
      ("missing", { $0.removeValue(forKey: "files") }, "missing 'files'"),
    ]
    for (name, change, message) in cases {
      var broken = json
      change(&broken)
      XCTAssertThrowsError(try TrainingManifest.decode(JSONSerialization.data(withJSONObject: broken), source: "m"), name) {
        XCTAssertTrue("\($0)".contains(message), "\(name): \($0)")
      }
    }
    for garbage in ["", "[]", "{", "null", "{\"format\": 3}"] {
      XCTAssertThrowsError(try TrainingManifest.decode(Data(garbage.utf8), source: "m"))
    }
    json["files"] = [["name": "../escape", "bytes": 1, "sha256": "x"]]
    XCTAssertThrowsError(try TrainingManifest.decode(JSONSerialization.data(withJSONObject: json), source: "m"))
  }

  /// A manifest written before a setting existed (here: the settings added since, and an optimizer
  /// key) still reads, with today's defaults for what it lacks; a setting it has is kept.
  func testManifestsWithoutNewerSettingsReadWithDefaults() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = config(dir, steps: 2)
    c.zeroStage = 0
    c.bucketFloats = 777
    _ = try train(c, ranks: 1)
    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointDirectory!))[0].url
    let good = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
    let original = try TrainingManifest.decode(good, source: "m")
    var json = try JSONSerialization.jsonObject(with: good) as! [String: Any]
    var saved = json["config"] as! [String: Any]
    for key in ["overlap", "gradientCommunication", "precision"] {
      XCTAssertNotNil(saved.removeValue(forKey: key), key)
    }
    var optimizer = saved["optimizer"] as! [String: Any]
    XCTAssertNotNil(optimizer.removeValue(forKey: "weightDecay"))
    saved["optimizer"] = optimizer
    json["config"] = saved
    let old = try TrainingManifest.decode(JSONSerialization.data(withJSONObject: json), source: "m")
    XCTAssertEqual(old.config.bucketFloats, 777)
    XCTAssertEqual(old.config.overlap, TrainConfig.defaults.overlap)
    XCTAssertEqual(old.config.precision, .fp32)
    XCTAssertEqual(old.config.optimizer.weightDecay, TrainConfig.defaults.optimizer.weightDecay)
    var expected = original
    expected.config.optimizer.weightDecay = TrainConfig.defaults.optimizer.weightDecay
    XCTAssertEqual(old, expected)
    // the model's keys are never filled: a manifest without its model is still an error
    saved.removeValue(forKey: "model")
    json["config"] = saved
    XCTAssertThrowsError(try TrainingManifest.decode(JSONSerialization.data(withJSONObject: json), source: "m"))
  }
}

/// Every rank verifies what it reads (it used to be rank 0 alone, before resuming): a moment shard
/// damaged after the folder was chosen is caught by the rank that loads it.
final class RankVerifiesTests: XCTestCase {
  func testLoadVerifiesTheFilesThisRankReads() throws {
    let dir = try makeTemporaryDirectory(self)
    var c = smallTrainConfig(runDirectory: dir.appendingPathComponent("run"), steps: 2)
    c.zeroStage = 1
    c.validationExamples = 16
    _ = try LocalGroup(size: 2).run { comm in try Trainer(config: c, comm: comm).run() }
    let folder = listCheckpoints(in: URL(fileURLWithPath: c.checkpointFolder))[0].url
    let shard = folder.appendingPathComponent("optimizer-rank-00001.safetensors")
    var bytes = try Data(contentsOf: shard)
    bytes[bytes.count - 5] ^= 0x40
    try bytes.write(to: shard)
    let model = try MixerModel(config: c.model, seed: 0)
    let ranges = shardRanges(total: model.table.count, parts: 2)
    // rank 0's range does not touch the damaged shard; rank 1's does
    XCTAssertNoThrow(try CheckpointStore<TrainConfig>.load(
      folder, into: model, optimizer: Optimizer(config: c.optimizer, table: model.table, range: ranges[0])))
    XCTAssertThrowsError(try CheckpointStore<TrainConfig>.load(
      folder, into: model, optimizer: Optimizer(config: c.optimizer, table: model.table, range: ranges[1]))) {
      XCTAssertTrue("\($0)".contains("optimizer-rank-00001.safetensors: SHA-256 mismatch"), "\($0)")
    }
  }
}
