// `mixer-dist import FILE.npz --output DIR`: turn a released MLP-Mixer `.npz` into a weights
// folder (params.safetensors + model.json) that `train --init-from DIR` reads, and name its preset.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerTrain

struct Import: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Import official MLP-Mixer weights (.npz) into a weights folder for --init-from.")

  @Argument(help: "A released .npz (e.g. Mixer-B_16.npz: official keys, float32).") var file: String
  @Option(help: "The weights folder to write (params.safetensors + model.json).") var output: String
  @Option(help: "Pre-training image size (square); needed only when the token grid is not square.")
  var imageSize: Int?
  @Option(help: "Pre-training image height (with --image-width, for a non-square grid).") var imageHeight: Int?
  @Option(help: "Pre-training image width (with --image-height).") var imageWidth: Int?

  func validate() throws {
    if (imageHeight == nil) != (imageWidth == nil) {
      throw ValidationError("--image-height and --image-width go together")
    }
    if imageSize != nil && imageHeight != nil {
      throw ValidationError("give either --image-size or --image-height/--image-width")
    }
  }

  func run() throws {
    try runReportingErrors {
      let url = URL(fileURLWithPath: file)
      let size = imageSize.map { (height: $0, width: $0) } ?? imageHeight.map { (height: $0, width: imageWidth!) }
      let (config, parameters, preset) = try importOfficialNPZ(url, imageSize: size)
      try writeWeightsFolder(
        config: config, parameters: parameters, preset: preset, source: url.lastPathComponent,
        to: URL(fileURLWithPath: output))
      print(
        "\(url.lastPathComponent): preset \(preset ?? "none (custom shape)"), \(config.imageHeight)x\(config.imageWidth) px, "
          + "patch \(config.patch), C \(config.hidden), \(config.blocks) blocks, D_S \(config.tokensMLP), "
          + "D_C \(config.channelsMLP), \(config.classes) classes, \(grouped(config.parameterCount)) parameters")
      print("wrote \(output) (params.safetensors + model.json); fine-tune with: mixer-dist train --init-from \(output) ...")
    }
  }
}
