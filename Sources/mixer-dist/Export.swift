// `mixer-dist export CHECKPOINT --output FILE.npz`: write a checkpoint's parameters as an official
// MLP-Mixer `.npz` (official keys, float32), readable by the public JAX/Flax code.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerTrain

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Export a checkpoint's parameters as an official MLP-Mixer .npz.")

  @Argument(help: "A checkpoint folder (step-N), a --checkpoint-dir (its newest valid checkpoint) or an imported weights folder.")
  var checkpoint: String
  @Option(help: "The .npz file to write.") var output: String

  func run() throws {
    try runReportingErrors {
      let log: (String) -> Void = { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) }
      let config = try exportOfficialNPZ(
        from: URL(fileURLWithPath: checkpoint), to: URL(fileURLWithPath: output), log: log)
      print(
        "wrote \(output): \(config.blocks) blocks, patch \(config.patch), C \(config.hidden), "
          + "\(config.classes) classes, \(grouped(config.parameterCount)) parameters")
      if config.gelu != .tanh {
        log("note: this model uses \(config.gelu.rawValue) GELU; the .npz does not record it (the official model uses tanh)")
      }
    }
  }
}
