// `mixer-dist inspect DIR`: summarise a checkpoint (or every checkpoint in a folder) and verify
// every file's size and SHA-256.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerTrain

struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Summarise a checkpoint and verify its checksums (exit 1 if any is invalid).")

  @Argument(help: "A checkpoint folder (step-N), a --checkpoint-dir or run folder holding several, or a weights folder from `mixer-dist import`.") var path: String

  func run() throws {
    try runReportingErrors {
      let url = URL(fileURLWithPath: path)
      if FileManager.default.fileExists(atPath: url.appendingPathComponent("model.json").path) {
        // a weights folder from `mixer-dist import`
        let (config, parameters, description) = try readParameterFolder(url)
        print("\(url.path): valid (\(description))")
        print("  model: \(config.imageHeight)x\(config.imageWidth) px, patch \(config.patch), C \(config.hidden), \(config.blocks) blocks, \(config.classes) classes, \(grouped(parameters.values.reduce(0) { $0 + $1.data.count })) parameters")
        print("  params.safetensors: every SHA-256 verified")
        return
      }
      var folders = FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path)
        ? [url] : listCheckpoints(in: url).map(\.url)
      if folders.isEmpty { folders = listCheckpoints(in: url.appendingPathComponent("checkpoints")).map(\.url) }
      guard !folders.isEmpty else { throw CheckpointError("\(path): no checkpoint here (no manifest.json, no step-N folders)") }
      var invalid = 0
      for folder in folders {
        do {
          let m = try verifyCheckpoint(folder, config: TrainConfig.self)
          let bytes = m.files.reduce(0) { $0 + $1.bytes }
          print("\(folder.path): valid")
          print("  step \(m.step) (epoch \(m.cursor.epoch), batch \(m.cursor.batchInEpoch), \(m.cursor.samplesSeen) samples seen)")
          print("  model \(m.config.preset): \(m.config.model.imageHeight)x\(m.config.model.imageWidth) px, patch \(m.config.model.patch), C \(m.config.model.hidden), \(m.config.model.blocks) blocks, \(m.config.model.classes) classes, \(grouped(m.parameterCount)) parameters")
          print("  optimizer \(m.optimizer), saved by \(m.worldSize) rank(s), ZeRO stage \(m.zeroStage)")
          if let ema = m.ema {
            print("  EMA weights: decay \(ema.decay)\(ema.warmup ? " with timm's warm-up" : ""), averaged since step \(ema.since) (--weights ema)")
          }
          print("  \(m.files.count) files, \(grouped(bytes)) bytes, every SHA-256 verified")
          for file in m.files { print("    \(file.name)  \(grouped(file.bytes)) bytes  \(file.sha256.prefix(16))…") }
        } catch {
          invalid += 1
          print("\(folder.path): INVALID: \(error)")
          if (try? verifyCheckpoint(folder, config: TrainConfig.self, parametersOnly: true)) != nil {
            print("  its manifest and params.safetensors verify: eval, predict, export and quantize can use it; training cannot resume from it")
          }
        }
      }
      if invalid > 0 { throw ExitCode(1) }
    }
  }
}
