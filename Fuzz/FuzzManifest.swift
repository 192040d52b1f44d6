// FuzzManifest.swift: libFuzzer entry point for the checkpoint manifest parser
// (`TrainingManifest.decode`: JSON decoding, then validation of format, counts, the model config
// and the shard tiling). Every input must either throw a CheckpointFormatError or ConfigError, or
// decode to a manifest that survives an encode/decode round trip unchanged. Built by run.sh against
// MixerTrain and the modules under it.
//
// Seeds come from the code, so they follow the manifest's fields: run the binary with
// FUZZ_MANIFEST_SEEDS=DIR and it writes valid manifests (1 rank AdamW, 3 ranks SGD with ZeRO-1)
// into DIR and exits.

import Foundation
import MixerCheckpoint
import MixerDistributed
import MixerModel
import MixerTrain

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  let data = start.map { Data(bytes: $0, count: count) } ?? Data()
  do {
    let manifest = try TrainingManifest.decode(data, source: "fuzz.json")
    let again = try TrainingManifest.decode(JSONEncoder().encode(manifest), source: "fuzz.json")
    precondition(again == manifest, "encode/decode round trip changed the manifest")
  } catch is CheckpointFormatError {
  } catch is ConfigError {
  } catch {
    fatalError("unexpected error type \(type(of: error)): \(error)")
  }
  return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzManifestInitialize(
  _ argc: UnsafeMutablePointer<CInt>?,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
  guard let directory = ProcessInfo.processInfo.environment["FUZZ_MANIFEST_SEEDS"] else { return 0 }
  try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  for (name, ranks, kind) in [("adamw-1", 1, OptimizerKind.adamw), ("sgd-3", 3, OptimizerKind.sgd)] {
    var config = TrainConfig(model: MixerConfig(
      imageHeight: 32, imageWidth: 40, patch: 8, hidden: 16, blocks: 2, tokensMLP: 8, channelsMLP: 32, classes: 10))
    config.optimizer.kind = kind
    config.zeroStage = ranks > 1 ? 1 : 0
    config.checkpointDirectory = "/tmp/checkpoints"
    config.threads = 1
    let total = ParameterTable(config: config.model).count
    let shards: [[String: Any]] = shardRanges(total: total, parts: ranks).enumerated().map {
      ["rank": $0.offset, "start": $0.element.lowerBound, "end": $0.element.upperBound,
       "file": String(format: "optimizer-rank-%05d.safetensors", $0.offset)]
    }
    let files: [[String: Any]] = (["params.safetensors"] + shards.map { $0["file"] as! String }).map {
      ["name": $0, "bytes": 1234, "sha256": String(repeating: "ab", count: 32)]
    }
    // the manifest's memberwise initialiser is internal: build its JSON (a stale field fails below)
    let manifest: [String: Any] = [
      "format": TrainingManifest.formatName, "version": TrainingManifest.currentVersion, "step": 40,
      "config": try! JSONSerialization.jsonObject(with: JSONEncoder().encode(config)),
      "worldSize": ranks, "zeroStage": config.zeroStage, "optimizer": kind.rawValue, "parameterCount": total,
      "cursor": ["step": 40, "epoch": 1, "batchInEpoch": 8, "samplesSeen": 5120], "shards": shards, "files": files,
    ]
    let data = try! JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
    _ = try! TrainingManifest.decode(data, source: "\(name).json")
    try! data.write(to: URL(fileURLWithPath: directory).appendingPathComponent("\(name).json"))
  }
  exit(0)
}
