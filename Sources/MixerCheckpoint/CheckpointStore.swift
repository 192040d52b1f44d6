// Sharded checkpoints: one directory per step holding a JSON manifest, the parameters under their
// official names (`params.safetensors`) and the optimizer moments as flat ranges, one file per rank
// (`optimizer-rank-R.safetensors`). Every file is listed in the manifest with its size and SHA-256.
//
// Commit protocol: every rank writes and fsyncs its files under `.partial-step-N/`; after a barrier
// rank 0 collects their checksums, writes the manifest, renames the folder to `step-N` and fsyncs
// the parent. A process killed in the middle leaves a `.partial-*` folder that is never loaded (and
// is removed by the next save); only folders with a manifest whose checksums hold are resumed.
// Saving a step that already has a folder moves the old one aside to `.replaced-step-N` only once
// the new one is complete, renames the new one in, then deletes the old (a crash in between leaves
// the old one aside, and the next save puts it back when no `step-N` took its place).
// Resume re-slices the flat moment ranges, so a checkpoint saved by N ranks loads on any M.
// A run with an exponential moving average of its parameters (`train --ema`) also writes the
// average's flat range of each rank (`ema-rank-R.safetensors`, tensor `ema`), recorded in the
// manifest's `ema`; it is re-sliced like the moments, and `readAveragedParameters` assembles it
// whole for inference.
// The directory must be visible to every rank (a shared filesystem on several nodes).

import Foundation
import MixerKernels
import MixerModel

/// What a run's config must tell the checkpoint layer: the model it describes. The training
/// layer's config conforms; the store writes and reads it whole.
public protocol CheckpointConfig: Codable, Equatable, Sendable {
  var model: MixerConfig { get }
  /// The values a config written before a setting existed is read with (nil: every key must be
  /// present). The model's keys are the model's own decoder's business and are not filled.
  static var decodingDefaults: Self? { get }
}

extension CheckpointConfig {
  public static var decodingDefaults: Self? { nil }

  /// The one migration of configs written by older versions: the JSON `data`, with every run
  /// setting the config (the member `key` of the object, or the whole object when nil) lacks
  /// taken from `decodingDefaults`, nested settings key by key; the model's keys are left alone.
  public static func migrating(_ data: Data, at key: String?) -> Data {
    guard let defaults = decodingDefaults,
      var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
      let config = (key == nil ? object : object[key!]) as? [String: Any],
      let encoded = try? JSONEncoder().encode(defaults),
      let fallback = (try? JSONSerialization.jsonObject(with: encoded)) as? [String: Any]
    else { return data }
    func filled(_ value: [String: Any], from fallback: [String: Any]) -> [String: Any] {
      var out = value
      for (key, defaultValue) in fallback where key != "model" {
        if let present = value[key] {
          if let nested = present as? [String: Any], let nestedDefault = defaultValue as? [String: Any] {
            out[key] = filled(nested, from: nestedDefault)
          }
        } else {
          out[key] = defaultValue
        }
      }
      return out
    }
    if let key { object[key] = filled(config, from: fallback) } else { object = filled(config, from: fallback) }
    return (try? JSONSerialization.data(withJSONObject: object)) ?? data
  }

  /// Decodes a config on its own (a run's `config.json`), migrated as the manifests' are.
  public static func decode(migrating data: Data) throws -> Self {
    try JSONDecoder().decode(Self.self, from: migrating(data, at: nil))
  }
}

/// Any run's config, read for its model alone (the other keys are left unread).
public struct ModelOnlyConfig: CheckpointConfig {
  public var model: MixerConfig
}

/// One file of a checkpoint or weights folder, with its size and SHA-256.
public struct CheckpointFile: Codable, Equatable, Sendable {
  public var name: String
  public var bytes: Int
  public var sha256: String
  public init(name: String, bytes: Int, sha256: String) {
    self.name = name
    self.bytes = bytes
    self.sha256 = sha256
  }
}

/// The optimizer moments of `start..<end` of the flat buffer are in `file`.
public struct OptimizerShard: Codable, Equatable, Sendable {
  public var rank: Int
  public var start: Int
  public var end: Int
  public var file: String
}

/// Where the data stream stands: the next step to run and what that means in epochs.
public struct DataCursor: Codable, Equatable, Sendable {
  public var step: Int
  public var epoch: Int
  public var batchInEpoch: Int
  public var samplesSeen: Int
  public init(step: Int, epoch: Int, batchInEpoch: Int, samplesSeen: Int) {
    self.step = step
    self.epoch = epoch
    self.batchInEpoch = batchInEpoch
    self.samplesSeen = samplesSeen
  }
}

/// An optimizer's state as the store saves it: named moment buffers over this rank's flat range
/// (of the full parameter layout). Saved as flat ranges, re-sliced on load to any world size.
public protocol ShardedOptimizerState: AnyObject {
  /// the optimizer's name in the manifest (`adamw`, `sgd`)
  var kindName: String { get }
  /// the part of the flat buffer this rank holds
  var range: Range<Int> { get }
  /// the moments over `range`, by name; empty buffers are not saved
  var moments: [(name: String, buffer: FlatBuffer)] { get }
}

/// A moving average of the parameters as the store saves it (`train --ema`): its values over this
/// rank's flat range (the optimizer's range), and what the manifest says of it.
public protocol ShardedParameterAverage: AnyObject {
  /// the part of the flat buffer this rank holds (the optimizer's range)
  var range: Range<Int> { get }
  /// the average over `range`
  var values: FlatBuffer { get }
  var decay: Float { get }
  /// the decay warms up (timm's `use_warmup`)
  var warmup: Bool { get }
  /// the step the average started from
  var since: Int { get }
}

/// The manifest's record of a checkpoint's moving average of the parameters (`train --ema`).
public struct ParameterAverageRecord: Codable, Equatable, Sendable {
  public var decay: Float
  public var warmup: Bool
  /// the step the average started from (0: the run's start)
  public var since: Int
  /// the average's flat ranges, one file per rank (`ema-rank-R.safetensors`, tensor `ema`)
  public var shards: [OptimizerShard]
  /// The tensor name in each shard file.
  public static let tensorName = "ema"
}

/// Which parameters of a checkpoint inference reads (`--weights`): the trained ones, or their
/// moving average (`train --ema`).
public enum WeightsChoice: String, Codable, CaseIterable, Sendable {
  case raw, ema
}

/// The manifest of one checkpoint (`manifest.json`).
public struct CheckpointManifest<Config: CheckpointConfig>: FolderManifest, Equatable {
  public static var fileName: String { "manifest.json" }
  public static var formatName: String { "mixer-dist-checkpoint" }
  public static var currentVersion: Int { 1 }
  public static var folderKind: String { "mixer-dist checkpoint" }
  public static var absenceNote: String? { "an unfinished save is never loaded" }

  public var format: String
  public var version: Int
  public var step: Int
  public var config: Config
  public var worldSize: Int
  public var zeroStage: Int
  /// the optimizer's name (`ShardedOptimizerState.kindName`)
  public var optimizer: String
  public var parameterCount: Int
  public var cursor: DataCursor
  public var shards: [OptimizerShard]
  public var files: [CheckpointFile]
  /// the run's training time up to this step, summed over its segments (nil: saved before it
  /// was recorded)
  public var trainingSeconds: Double?
  /// the moving average of the parameters (`train --ema`; nil: none saved)
  public var ema: ParameterAverageRecord?

  /// Throws unless the manifest describes a loadable checkpoint (after its format and version):
  /// sane counts, and moment shards that tile the flat buffer exactly.
  public func validateContents(source: String) throws {
    func fail(_ message: String) -> Error { CheckpointFormatError(source, message) }
    guard step >= 0, worldSize >= 1, zeroStage == 0 || zeroStage == 1 else {
      throw fail("invalid step \(step), world size \(worldSize) or ZeRO stage \(zeroStage)")
    }
    try config.model.validate()
    let expected = ParameterTable(config: config.model).count
    guard parameterCount == expected else {
      throw fail("parameter count \(parameterCount) does not match its model (\(expected))")
    }
    for (kind, list) in [("optimizer", shards), ("ema", ema?.shards ?? [])] where kind == "optimizer" || ema != nil {
      var next = 0
      for shard in list.sorted(by: { $0.start < $1.start }) {
        guard shard.start == next, shard.end >= shard.start else {
          throw fail("\(kind) shards do not tile the parameters (at \(shard.start), expected \(next))")
        }
        guard files.contains(where: { $0.name == shard.file }) else {
          throw fail("\(kind) shard file \(shard.file) is not in the file list")
        }
        next = shard.end
      }
      guard next == parameterCount else { throw fail("\(kind) shards end at \(next), expected \(parameterCount)") }
    }
    guard files.contains(where: { $0.name == "params.safetensors" }) else { throw fail("no params.safetensors") }
  }

  /// Settings added since the manifest was written are read as `Config.decodingDefaults`, so a
  /// checkpoint stays resumable after a setting is added.
  public static func migrating(_ data: Data) -> Data { Config.migrating(data, at: "config") }
}

/// Checkpoint folder names: `step-00000040`.
public func checkpointName(step: Int) -> String { String(format: "step-%08d", step) }

/// Reads and fully verifies one checkpoint folder: manifest, then every file's size and SHA-256.
/// `parametersOnly`: check only `params.safetensors` (inference needs no optimizer state).
public func verifyCheckpoint<Config: CheckpointConfig>(
  _ folder: URL, config: Config.Type = ModelOnlyConfig.self, parametersOnly: Bool = false
) throws -> CheckpointManifest<Config> {
  try refuseQuantizedCheckpoint(folder)
  return try CheckpointManifest<Config>.read(from: folder) { !parametersOnly || $0.name == "params.safetensors" }
}

/// The committed checkpoint folders under `directory`, newest step first.
public func listCheckpoints(in directory: URL) -> [(step: Int, url: URL)] {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
  return names.compactMap { name -> (Int, URL)? in
    guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)) else { return nil }
    return (step, directory.appendingPathComponent(name))
  }.sorted { $0.0 > $1.0 }
}

/// Picks the checkpoint to resume from: `auto` = the newest valid one under `directory` (saying
/// which invalid ones it skipped and why), or an explicit folder, which must be valid.
/// `parametersOnly`: a checkpoint whose parameters verify is valid (for inference).
public func selectCheckpoint(
  resume: String, directory: URL?, parametersOnly: Bool = false, log: (String) -> Void
) throws -> URL? {
  if resume != "auto" {
    let url = URL(fileURLWithPath: resume)
    _ = try verifyCheckpoint(url, config: ModelOnlyConfig.self, parametersOnly: parametersOnly)
    return url
  }
  guard let directory else { throw CheckpointError("--resume auto needs --checkpoint-dir") }
  let candidates = listCheckpoints(in: directory)
  for (i, (_, url)) in candidates.enumerated() {
    do {
      _ = try verifyCheckpoint(url, config: ModelOnlyConfig.self, parametersOnly: parametersOnly)
      return url
    } catch {
      log("mixer-dist: skipping checkpoint \(url.lastPathComponent): \(error)"
        + (i + 1 < candidates.count ? "; falling back to an older one" : "; there is no older one"))
    }
  }
  return nil
}

/// One rank's part of a checkpoint, copied out of the training state at a step boundary: what a
/// save writes (a background save writes it while training goes on).
public struct CheckpointSnapshot<Config: CheckpointConfig> {
  public let step: Int
  /// this rank's range of the flat buffer (its optimizer file)
  let shard: Range<Int>
  let moments: [(name: String, array: NDArray)]
  /// this rank's range of the moving average of the parameters (`train --ema`; empty: none)
  let average: [(name: String, array: NDArray)]
  /// what the manifest records of the average (nil: none)
  let averageRecord: ParameterAverageRecord?
  /// the parameters under their official names (rank 0; empty elsewhere)
  let parameters: [(name: String, array: NDArray)]
  /// what the whole save writes over all ranks (the free-space check)
  let estimatedBytes: Int
  // what the manifest records (rank 0 writes it)
  let config: Config
  let zeroStage: Int
  let optimizerKind: String
  let parameterCount: Int
  let cursor: DataCursor
  let trainingSeconds: Double?
}

/// Saves and restores the training state of one rank.
public struct CheckpointStore<Config: CheckpointConfig> {
  public let directory: URL
  /// the ranks that save together (their collectives; `SingleRankGroup` when alone)
  public let group: CheckpointGroup

  public init(directory: URL, group: CheckpointGroup = SingleRankGroup()) {
    self.directory = directory
    self.group = group
  }

  /// Every rank calls this after step `step` (the number of steps done); returns the committed
  /// folder (on every rank). `keep` > 0 prunes after the commit (see `prune`), sparing the steps
  /// in `protecting` (the best checkpoint of --keep-best). `trainingSeconds` is the run's training
  /// time so far (all segments), kept in the manifest.
  /// `beforeCommit` runs on every rank once its files are written, before the commit barrier.
  ///
  /// Rank 0 first checks that the save fits in the free space of the folder's filesystem. Any
  /// failure on any rank (no space, a read-only folder, ...) is learnt by every rank, which then
  /// all throw a `CheckpointSaveError` together; the `.partial-*` folder is removed and the
  /// previous checkpoints are left as they were.
  @discardableResult
  public func save(
    step: Int, model: MixerModel, optimizer: some ShardedOptimizerState, average: (any ShardedParameterAverage)? = nil,
    config: Config, zeroStage: Int, cursor: DataCursor, keep: Int, protecting: Set<Int> = [],
    trainingSeconds: Double? = nil, beforeCommit: (() -> Void)? = nil
  ) throws -> URL {
    var none: CheckpointSnapshot<Config>?
    let snapshot = try self.snapshot(
      step: step, model: model, optimizer: optimizer, average: average, config: config, zeroStage: zeroStage,
      cursor: cursor, trainingSeconds: trainingSeconds, reusing: &none)
    try begin(snapshot)
    let written = Result { try write(snapshot) }
    if case .success = written { beforeCommit?() }
    try agreeWritten(written, step: step)
    var problem = ""
    if group.rank == 0 {
      do { try commitWritten(snapshot, keep: keep, protecting: protecting) } catch { problem = describeError(error) }
    }
    problem = try group.broadcast(problem, root: 0)
    if !problem.isEmpty { throw saveFailure(step: step, problem) }
    return folder(step: step)
  }

  /// The committed folder of `step`.
  public func folder(step: Int) -> URL { directory.appendingPathComponent(checkpointName(step: step)) }

  /// The folder a save of `step` writes into before its commit.
  func partialFolder(step: Int) -> URL {
    directory.appendingPathComponent("." + "partial-" + checkpointName(step: step))
  }

  func saveFailure(step: Int, _ cause: String) -> CheckpointSaveError {
    CheckpointSaveError(step: step, directory: directory, cause: cause)
  }

  /// This rank's part of a save of `step`, copied out of the model and optimizer (the training
  /// may change them as soon as this returns): its range of the optimizer moments (and of the
  /// moving average `average`, when the run keeps one), and on rank 0 the parameters and what the
  /// manifest needs. `reusing` (taken: left nil) is an earlier snapshot of the same shapes whose
  /// buffers are overwritten instead of allocated (fresh memory costs its page faults on every
  /// save).
  public func snapshot(
    step: Int, model: MixerModel, optimizer: some ShardedOptimizerState, average: (any ShardedParameterAverage)? = nil,
    config: Config, zeroStage: Int, cursor: DataCursor, trainingSeconds: Double?,
    reusing spare: inout CheckpointSnapshot<Config>?
  ) throws -> CheckpointSnapshot<Config> {
    let total = model.table.count
    let range = group.shardRanges(total: total)[group.rank]
    let local = range.lowerBound - optimizer.range.lowerBound
    guard local >= 0, range.upperBound <= optimizer.range.upperBound else {
      throw CheckpointError("rank \(group.rank): optimizer range \(optimizer.range) does not cover its shard \(range)")
    }
    let momentSources = optimizer.moments.filter { $0.buffer.count > 0 }.map { ($0.name, $0.buffer.pointer + local, range.count) }
    var averageSources: [(String, UnsafeMutablePointer<Float>, Int)] = []
    if let average {
      guard average.range == optimizer.range else {
        throw CheckpointError("rank \(group.rank): the moving average covers \(average.range), the optimizer \(optimizer.range)")
      }
      averageSources = [(ParameterAverageRecord.tensorName, average.values.pointer + local, range.count)]
    }
    let parameterSources = group.rank == 0
      ? model.table.views.map { ($0.name, model.parameters.pointer + $0.range.lowerBound, $0.range.count) } : []
    // moved out of the spare so that each buffer has one owner and is overwritten in place
    var previous = spare.take()
    var reusedMoments = previous?.moments, reusedParameters = previous?.parameters, reusedAverage = previous?.average
    previous = nil
    func copies(
      _ sources: [(String, UnsafeMutablePointer<Float>, Int)], shapes: [[Int]],
      into reused: inout [(name: String, array: NDArray)]?
    ) -> [(name: String, array: NDArray)] {
      if var arrays = reused.take(), arrays.count == sources.count,
        zip(arrays, sources).allSatisfy({ $0.name == $1.0 && $0.array.data.count == $1.2 })
      {
        for i in arrays.indices {
          arrays[i].array.data.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: sources[i].1, count: sources[i].2) }
        }
        return arrays
      }
      return zip(sources, shapes).map { ($0.0, NDArray(shape: $1, data: Array(UnsafeBufferPointer(start: $0.1, count: $0.2)))) }
    }
    let moments = copies(momentSources, shapes: momentSources.map { [$0.2] }, into: &reusedMoments)
    let averaged = copies(averageSources, shapes: averageSources.map { [$0.2] }, into: &reusedAverage)
    let parameters = copies(
      parameterSources, shapes: group.rank == 0 ? model.table.views.map(\.shape) : [], into: &reusedParameters)
    let headers = 64 * model.table.views.count + 4096 * (group.size * (1 + averaged.count) + 2)
    return CheckpointSnapshot(
      step: step, shard: range, moments: moments, average: averaged,
      averageRecord: average.map {
        ParameterAverageRecord(decay: $0.decay, warmup: $0.warmup, since: $0.since, shards: [])
      },
      parameters: parameters,
      estimatedBytes: MemoryLayout<Float>.size * total * (1 + moments.count + averaged.count) + headers, config: config,
      zeroStage: zeroStage, optimizerKind: optimizer.kindName, parameterCount: total, cursor: cursor,
      trainingSeconds: trainingSeconds)
  }

  /// Every rank, at the start of a save: rank 0 prepares the `.partial` folder (and checks the
  /// space); every rank learns its verdict, and all throw together when it failed.
  public func begin(_ snapshot: CheckpointSnapshot<Config>) throws {
    let partial = partialFolder(step: snapshot.step)
    var problem = ""
    if group.rank == 0 {
      do {
        try prepare(partial: partial, bytes: snapshot.estimatedBytes, step: snapshot.step)
      } catch {
        problem = describeError(error)
        try? FileManager.default.removeItem(at: partial)
      }
    }
    problem = try group.broadcast(problem, root: 0)
    if !problem.isEmpty { throw saveFailure(step: snapshot.step, problem) }
  }

  /// Every rank, once its files are written (or failed): all learn whether every rank succeeded,
  /// and all throw together (rank 0 removing the `.partial` folder) when one did not.
  func agreeWritten(_ written: Result<Void, Error>, step: Int) throws {
    let failedRanks = try group.failedRanks({ if case .success = written { return true } else { return false } }())
    if !failedRanks.isEmpty {
      if group.rank == 0 { try? FileManager.default.removeItem(at: partialFolder(step: step)) }
      if case .failure(let error) = written { throw saveFailure(step: step, describeError(error)) }
      throw saveFailure(
        step: step, "rank(s) \(failedRanks.map(String.init).joined(separator: ", ")) could not write their part")
    }
  }

  /// Rank 0, once every rank's files are written: the manifest, the rename and the pruning; on a
  /// failure the `.partial` folder is removed. No collective: a background save calls it too.
  func commitWritten(_ snapshot: CheckpointSnapshot<Config>, keep: Int, protecting: Set<Int>) throws {
    let partial = partialFolder(step: snapshot.step)
    do {
      try commit(step: snapshot.step, partial: partial, final: folder(step: snapshot.step), snapshot: snapshot)
      if keep > 0 { prune(keep: keep, saved: snapshot.step, protecting: protecting) }
    } catch {
      try? FileManager.default.removeItem(at: partial)
      throw error
    }
  }

  /// Rank 0, before a save: removes unfinished saves, puts back a folder a crashed replacement
  /// left aside, checks the free space against `bytes` and creates the `.partial-*` folder.
  private func prepare(partial: URL, bytes: Int, step: Int) throws {
    let fileManager = FileManager.default
    try FileSystemError.mapping(path: directory.path, operation: "create") {
      try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
    }
    for name in (try? fileManager.contentsOfDirectory(atPath: directory.path)) ?? [] {
      let url = directory.appendingPathComponent(name)
      if name.hasPrefix(".partial-") { try? fileManager.removeItem(at: url) }
      if name.hasPrefix(".replaced-") {
        // a save died between moving the old folder aside and renaming the new one in
        let original = directory.appendingPathComponent(String(name.dropFirst(".replaced-".count)))
        if fileManager.fileExists(atPath: original.path) {
          try? fileManager.removeItem(at: url)
        } else {
          try renameFolder(url, to: original)
        }
      }
    }
    if let free = freeBytes(at: directory.path), free < Int64(bytes) {
      throw CheckpointSpaceError(directory: directory.path, needed: bytes, free: free)
    }
    try FileSystemError.mapping(path: partial.path, operation: "create") {
      try fileManager.createDirectory(at: partial, withIntermediateDirectories: true)
    }
  }

  /// Every rank: writes its snapshot into the `.partial` folder (its slice of the optimizer
  /// moments and of the moving average, rank 0 also the parameters), then its file list with
  /// checksums for rank 0 to collect. No collective: a background save runs it on its own thread.
  public func write(_ snapshot: CheckpointSnapshot<Config>) throws {
    let partial = partialFolder(step: snapshot.step)
    let range = snapshot.shard
    let optimizerFile = String(format: "optimizer-rank-%05d.safetensors", group.rank)
    // (each file hashed as it is written)
    func written(_ name: String, _ tensors: [(name: String, array: NDArray)], _ metadata: [String: String]) throws
      -> CheckpointFile
    {
      let url = partial.appendingPathComponent(name)
      let (bytes, sha256) = try FileSystemError.mapping(path: url.path, operation: "write") {
        try SafeTensors.write(tensors, metadata: metadata, to: url)
      }
      return CheckpointFile(name: name, bytes: bytes, sha256: sha256)
    }
    var entries = [
      try written(
        optimizerFile, snapshot.moments,
        ["start": "\(range.lowerBound)", "end": "\(range.upperBound)", "rank": "\(group.rank)", "step": "\(snapshot.step)"]),
    ]
    if !snapshot.average.isEmpty {
      entries.append(
        try written(
          Self.averageFile(rank: group.rank), snapshot.average,
          ["start": "\(range.lowerBound)", "end": "\(range.upperBound)", "rank": "\(group.rank)", "step": "\(snapshot.step)"]))
    }
    if group.rank == 0 {
      entries.append(
        try written("params.safetensors", snapshot.parameters, ["step": "\(snapshot.step)", "format": "mixer-dist"]))
    }
    let listURL = partial.appendingPathComponent(".files-rank-\(group.rank).json")
    try FileSystemError.mapping(path: listURL.path, operation: "write") {
      try AtomicFile.write(try JSONEncoder().encode(entries), to: listURL)
    }
  }

  /// Rank 0, once every rank wrote its files: the manifest, then the rename of `.partial-step-N`
  /// to `step-N` (moving an older folder of the same step aside until the new one is in).
  private func commit(step: Int, partial: URL, final: URL, snapshot: CheckpointSnapshot<Config>) throws {
    let total = snapshot.parameterCount
    let fileManager = FileManager.default
    let replaced = directory.appendingPathComponent("." + "replaced-" + checkpointName(step: step))
    var files: [CheckpointFile] = []
    for r in 0..<group.size {
      let url = partial.appendingPathComponent(".files-rank-\(r).json")
      try FileSystemError.mapping(path: url.path, operation: "read") {
        files += try JSONDecoder().decode([CheckpointFile].self, from: Data(contentsOf: url))
        try fileManager.removeItem(at: url)
      }
    }
    let shards = group.shardRanges(total: total).enumerated().map {
      OptimizerShard(rank: $0.offset, start: $0.element.lowerBound, end: $0.element.upperBound,
                               file: String(format: "optimizer-rank-%05d.safetensors", $0.offset))
    }
    var manifest = CheckpointManifest(
      format: CheckpointManifest<Config>.formatName, version: CheckpointManifest<Config>.currentVersion, step: step,
      config: snapshot.config, worldSize: group.size, zeroStage: snapshot.zeroStage, optimizer: snapshot.optimizerKind,
      parameterCount: total, cursor: snapshot.cursor, shards: shards, files: files.sorted { $0.name < $1.name })
    manifest.trainingSeconds = snapshot.trainingSeconds
    if var record = snapshot.averageRecord {
      record.shards = shards.map { OptimizerShard(rank: $0.rank, start: $0.start, end: $0.end, file: Self.averageFile(rank: $0.rank)) }
      manifest.ema = record
    }
    let manifestURL = partial.appendingPathComponent(CheckpointManifest<Config>.fileName)
    try FileSystemError.mapping(path: manifestURL.path, operation: "write") {
      try manifest.write(in: partial)
      try AtomicFile.syncDirectory(at: partial)
    }
    let replacing = fileManager.fileExists(atPath: final.path)
    if replacing { try renameFolder(final, to: replaced) }
    do {
      try renameFolder(partial, to: final)
    } catch {
      if replacing { try? renameFolder(replaced, to: final) }
      throw error
    }
    try AtomicFile.syncDirectory(at: directory)
    if replacing { try? fileManager.removeItem(at: replaced) }
  }

  /// Removes the checkpoint folders that `keep` does not keep. The folder of step `saved` (just
  /// committed) is always kept and counts as one; a folder of a later step belongs to an abandoned
  /// future (the run resumed from an older checkpoint) and is removed; of the older ones the newest
  /// `keep - 1` that verify are kept, and corrupt ones never count.
  private func prune(keep: Int, saved: Int, protecting: Set<Int>) {
    var kept = 1
    for (step, url) in listCheckpoints(in: directory) where step != saved && !protecting.contains(step) {
      if step < saved && kept < keep && (try? verifyCheckpoint(url)) != nil {
        kept += 1
      } else {
        try? FileManager.default.removeItem(at: url)
      }
    }
  }

  /// rename(2) of a folder, as a thrown one-line error.
  private func renameFolder(_ source: URL, to destination: URL) throws {
    guard rename(source.path, destination.path) == 0 else {
      throw FileSystemError(
        path: "\(source.path) to \(destination.path)", operation: "rename", cause: .init(errno: errno))
    }
  }

  /// The file of rank `rank`'s range of the moving average.
  static func averageFile(rank: Int) -> String { String(format: "ema-rank-%05d.safetensors", rank) }

  /// Loads parameters and this rank's moment range from a checkpoint, verifying the size and
  /// SHA-256 of every file this rank reads; returns its manifest. The model shapes must match; the optimizer must be the same kind.
  /// `average` (a run with --ema) gets this rank's range of the checkpoint's moving average when
  /// it has one (`manifest.ema`); otherwise it is left as it is, for the caller to start.
  public static func load(
    _ folder: URL, into model: MixerModel, optimizer: some ShardedOptimizerState,
    average: (any ShardedParameterAverage)? = nil
  ) throws -> CheckpointManifest<Config> {
    let manifest = try CheckpointManifest<Config>.read(from: folder, verifying: { _ in false })
    // every rank checks what it reads itself (a shared filesystem can serve one node a stale or
    // damaged copy): the parameters and the moment shards that overlap its range
    let entries = Dictionary(manifest.files.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    func overlapping(_ shards: [OptimizerShard]) -> [OptimizerShard] {
      shards.filter { $0.start < optimizer.range.upperBound && optimizer.range.lowerBound < $0.end }
    }
    let averageShards = average != nil ? overlapping(manifest.ema?.shards ?? []) : []
    let reads = ["params.safetensors"] + overlapping(manifest.shards).map(\.file) + averageShards.map(\.file)
    for name in reads {
      guard let entry = entries[name] else { throw CheckpointError("\(folder.path): \(name) is not in the manifest") }
      try verifyFile(entry, in: folder, manifest: CheckpointManifest<Config>.fileName)
    }
    let params = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("params.safetensors"))
    try checkShapes(params, model: model, source: folder.appendingPathComponent("params.safetensors").path)
    for view in model.table.views {
      model.parameters.copy(from: try params.floats(view.name), at: view.offset)
    }
    guard manifest.optimizer == optimizer.kindName else {
      throw CheckpointError(
        "\(folder.path) holds \(manifest.optimizer) state but the run uses \(optimizer.kindName): pass --optimizer \(manifest.optimizer)")
    }
    // re-slice: copy the overlap of every saved shard with this rank's range
    let mine = optimizer.range
    for shard in manifest.shards {
      let lo = max(shard.start, mine.lowerBound), hi = min(shard.end, mine.upperBound)
      guard lo < hi else { continue }
      let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(shard.file))
      let elements = (lo - shard.start)..<(hi - shard.start)
      for (name, buffer) in optimizer.moments where buffer.count > 0 {
        buffer.copy(from: try file.floats(name, elements: elements), at: lo - mine.lowerBound)
      }
    }
    if let average {
      guard average.range == mine else {
        throw CheckpointError("the moving average covers \(average.range), the optimizer \(mine)")
      }
      for shard in averageShards {
        let lo = max(shard.start, mine.lowerBound), hi = min(shard.end, mine.upperBound)
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(shard.file))
        average.values.copy(
          from: try file.floats(ParameterAverageRecord.tensorName, elements: (lo - shard.start)..<(hi - shard.start)),
          at: lo - mine.lowerBound)
      }
    }
    return manifest
  }

  /// Throws listing every tensor whose name or shape differs between a file and the model.
  public static func checkShapes(_ file: SafeTensorsFile, model: MixerModel, source: String) throws {
    var problems: [String] = []
    for view in model.table.views {
      guard let entry = try? file.info(view.name) else { problems.append("\(view.name) missing"); continue }
      if entry.shape != view.shape { problems.append("\(view.name) \(entry.shape) vs model \(view.shape)") }
    }
    let names = Set(model.table.views.map(\.name))
    problems += file.tensors.map(\.name).filter { !names.contains($0) }.map { "\($0) not in the model" }
    if !problems.isEmpty {
      throw CheckpointError(
        "\(source) is a checkpoint of another model; \(problems.count) mismatched tensor(s): "
          + problems.prefix(10).joined(separator: "; ") + (problems.count > 10 ? "; …" : ""))
    }
  }
}

/// The moving average of the parameters a checkpoint holds (`train --ema`), whole, in the flat
/// layout of its model's `ParameterTable`: every rank's `ema-rank-R.safetensors` read and verified
/// (size and SHA-256). A checkpoint without one is an error that says so.
public func readAveragedParameters<Config: CheckpointConfig>(
  _ folder: URL, manifest: CheckpointManifest<Config>
) throws -> [Float] {
  guard let record = manifest.ema else {
    throw CheckpointError(
      "\(folder.path) holds no EMA weights (trained without --ema): use --weights raw, or train with --ema DECAY")
  }
  let entries = Dictionary(manifest.files.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
  var values = [Float](repeating: 0, count: manifest.parameterCount)
  for shard in record.shards where shard.end > shard.start {
    guard let entry = entries[shard.file] else { throw CheckpointError("\(folder.path): \(shard.file) is not in the manifest") }
    try verifyFile(entry, in: folder, manifest: CheckpointManifest<Config>.fileName)
    let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(shard.file))
    let part = try file.floats(ParameterAverageRecord.tensorName)
    guard part.count == shard.end - shard.start else {
      throw CheckpointError("\(folder.path)/\(shard.file) holds \(part.count) values, its manifest says \(shard.end - shard.start)")
    }
    values.replaceSubrange(shard.start..<shard.end, with: part)
  }
  return values
}
