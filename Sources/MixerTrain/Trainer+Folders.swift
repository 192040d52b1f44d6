// The trainer's start-up and resume checks: the evaluation data, the checkpoint to resume from
// (and what the resume changes), the run and checkpoint folders (locks, run id, another run's
// records), and a fine-tuned head's classes by name.

import Foundation
import MixerCheckpoint
import MixerData
import MixerDistributed
import MixerModel
import MixerTelemetry

extension Trainer {
  /// Checks every evaluation file before step 1 (header and end, no decoding), on rank 0, so a
  /// bad file stops the run now rather than at the first evaluation: one line naming it and the
  /// flag that substitutes such files. With --skip-bad-images their count is said instead.
  func checkEvaluationData() throws {
    var problem = ""
    if comm.rank == 0 {
      var bad: [String] = []
      for index in 0..<validationSet.count {
        do { try validationSet.checkSample(index) } catch { bad.append("\(error)") }
      }
      if !bad.isEmpty {
        if config.dataOptions.skipBadImages {
          log.line("data: warning: \(bad.count) unreadable image(s) in the evaluation set, substituted (--skip-bad-images); first: \(bad[0])")
        } else {
          problem = "\(bad.count) unreadable image(s) in the evaluation set, found before training; first: \(bad[0]); "
            + "fix or remove them, or pass --skip-bad-images to substitute them"
        }
      }
    }
    problem = try comm.broadcast(problem, root: 0)
    if !problem.isEmpty { throw TrainError(problem) }
  }

  /// Picks the checkpoint on rank 0 (verifying checksums), tells every rank, compares its
  /// settings with this run's (saying each difference, refusing another model), and loads it;
  /// returns the step to continue from (0 when `auto` finds no checkpoint at all).
  func resumeFrom(_ resume: String) throws -> Int {
    let directory = URL(fileURLWithPath: checkpointFolder)
    var chosen = ""
    var problem = ""
    if comm.rank == 0 {
      do {
        chosen = try selectCheckpoint(resume: resume, directory: directory) { [logger] in
          logger.warning("\($0)")
        }?.path ?? ""
        if chosen.isEmpty, resume == "auto", !listCheckpoints(in: directory).isEmpty {
          problem = "--resume auto: no valid checkpoint in \(directory.path) (every step-N folder failed its checks, "
            + "see above): remove them or pass --overwrite to start again"
        }
      } catch {
        problem = describeError(error)
      }
    }
    problem = try comm.broadcast(problem, root: 0)
    if !problem.isEmpty { throw CheckpointError(problem) }
    chosen = try comm.broadcast(chosen, root: 0)
    guard !chosen.isEmpty else {
      log.line("mixer-dist: --resume \(resume): no checkpoint in \(directory.path) yet; starting from step 0")
      return 0
    }
    let saved = try verifyCheckpoint(URL(fileURLWithPath: chosen), config: TrainConfig.self).config
    if saved.model != config.model {
      throw CheckpointError(
        "\(chosen) holds another model (\(configDifferences(saved.model, config.model).joined(separator: ", "))): "
          + "resume with the checkpoint's model flags, or start a new run with --init-from")
    }
    for change in configDifferences(saved, config, ignoring: ["runDirectory", "checkpointDirectory", "threads"]) {
      log.line("mixer-dist: resume changes \(change)")
    }
    let manifest = try CheckpointStore<TrainConfig>.load(
      URL(fileURLWithPath: chosen), into: model, optimizer: optimizer, average: average)
    try Trainer.checkSameParameters(model.parameters, comm: comm)
    if let average {
      if let record = manifest.ema {
        average.since = record.since
      } else {
        // (the checkpoint's run had no --ema: the average starts here, as timm's starts from the model)
        average.reset(from: model.parameters.pointer)
        average.since = manifest.step
        log.line("mixer-dist: --ema: \(chosen) holds no EMA weights: the average starts from its parameters at step \(manifest.step)")
      }
    } else if let record = manifest.ema {
      log.line(
        "mixer-dist: \(chosen) holds EMA weights (--ema \(record.decay)) but this run has no --ema: they are dropped "
          + "(its checkpoints hold none); pass --ema \(record.decay)\(record.warmup ? " --ema-warmup" : "") to continue them")
    }
    resumedFrom = chosen
    secondsBefore = manifest.trainingSeconds ?? 0
    best = nil  // read after startStep is known (run)
    log.line("mixer-dist: resumed from \(chosen) (step \(manifest.step), saved by \(manifest.worldSize) rank(s))")
    return manifest.step
  }

  /// Rank 0 takes the run and checkpoint folders (locks), decides the run id (a resumed run keeps
  /// its own; a new run refuses another run's records unless told to overwrite them), writes
  /// config.json and opens the metrics files. Returns the locks, held while the run runs.
  func claimFolders() throws -> [FolderLock] {
    var locks: [FolderLock] = []
    var problem = ""
    if comm.rank == 0 {
      do { locks = try claimFoldersOnRankZero() } catch { problem = describeError(error) }
    }
    // every rank learns rank 0's verdict, so none goes on into the first step alone
    problem = try comm.broadcast(problem, root: 0)
    if !problem.isEmpty { throw Refusal(underlying: TrainError(problem)) }
    return locks
  }

  func claimFoldersOnRankZero() throws -> [FolderLock] {
    let runFolder = config.runDirectory
    var locks = [try FolderLock(runFolder, purpose: "the run folder")]
    if URL(fileURLWithPath: checkpointFolder).standardizedFileURL != URL(fileURLWithPath: runFolder).standardizedFileURL {
      locks.append(try FolderLock(checkpointFolder, purpose: "the checkpoint folder"))
    }
    let records = RunRecords(folder: runFolder)
    let checkpoints = listCheckpoints(in: URL(fileURLWithPath: checkpointFolder))
    let runID: String
    if resumedFrom != nil {
      runID = records.lastRunID ?? newRunID()
      if records.count > 0 { try records.truncate(run: records.lastRunID, after: startStep) }
    } else if resumeRequest == "auto", records.count > 0, checkpoints.isEmpty {
      // the run died before its first checkpoint: it starts again, as itself
      runID = records.lastRunID ?? newRunID()
      try records.truncate(run: records.lastRunID, after: 0)
      log.line(
        "mixer-dist: --resume auto: run \(runID) left no checkpoint; starting it again from step 0 "
          + "(same run id; its metrics records past step 0 dropped)")
    } else if records.count > 0 || !checkpoints.isEmpty {
      guard overwrite else {
        var held: [String] = []
        if records.count > 0 { held.append("\(records.count) metrics records in \(runFolder)") }
        if !checkpoints.isEmpty { held.append("\(checkpoints.count) checkpoint(s) in \(checkpointFolder)") }
        throw TrainError(
          "another run's records are here (\(held.joined(separator: ", "))): pass --resume auto to continue it, "
            + "--overwrite to replace it, or choose another --run-dir")
      }
      try records.clear()
      for (_, url) in checkpoints { try FileManager.default.removeItem(at: url) }
      log.line("mixer-dist: --overwrite: removed the previous run's records and \(checkpoints.count) checkpoint(s)")
      runID = newRunID()
    } else {
      runID = newRunID()
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let configURL = URL(fileURLWithPath: runFolder).appendingPathComponent("config.json")
    try FileSystemError.mapping(path: configURL.path, operation: "write") {
      let settings = RunSettings(config: config, metrics: config.model.task.training.reportedMetrics)
      try encoder.encode(settings).write(to: configURL)
    }
    try log.open(runID: runID)
    return locks
  }

  /// After `--init-from` with the same number of classes: the checkpoint's classes by name
  /// against the data's. The same names in another order permute the head's columns; other
  /// names re-initialise the head (they are other classes).
  static func alignHead(_ model: MixerModel, with sourceNames: [String], dataNames: [String], log: (String) -> Void) {
    guard sourceNames.count == model.config.classes, dataNames.count == model.config.classes else { return }
    let head = model.config.head.scope
    guard let kernel = model.table[head + "/kernel"], let bias = model.table[head + "/bias"] else { return }
    let k = model.config.classes, perClass = kernel.shape[1] / k
    switch ClassMatch(model: sourceNames, data: dataNames) {
    case .same:
      return
    case .reordered(let permutation) where perClass == 1:
      // data class i was checkpoint class permutation[i]: column i takes that column
      let w = model.parameters.array(kernel.range), b = model.parameters.array(bias.range)
      let rows = kernel.shape[0]
      var newW = w, newB = b
      for i in 0..<k {
        newB[i] = b[permutation[i]]
        for r in 0..<rows { newW[r * k + i] = w[r * k + permutation[i]] }
      }
      model.parameters.copy(from: newW, at: kernel.offset)
      model.parameters.copy(from: newB, at: bias.offset)
      log("the data's classes are the checkpoint's in another order: head columns mapped by class name")
    case .reordered, .different:
      model.parameters.copy(from: [Float](repeating: 0, count: kernel.count), at: kernel.offset)
      model.parameters.copy(from: [Float](repeating: 0, count: bias.count), at: bias.offset)
      if case .different(let detail) = ClassMatch(model: sourceNames, data: dataNames) {
        log("head re-initialised: the data's classes are not the checkpoint's (\(detail))")
      } else {
        log("head re-initialised: the data's classes are the checkpoint's in another order")
      }
    }
  }
}
