// `mixer-dist export CHECKPOINT --output FILE`: the format is the output's extension:
//   .npz          the parameters as an official MLP-Mixer `.npz` (official keys, float32), readable
//                 by the public JAX/Flax code
//   .safetensors  the same tensors as float32 safetensors
//   .onnx         the model as an ONNX graph (opset 17), which ONNX Runtime runs
//                 (tools/onnx_compare.py): any stem, block kind and head; fp32, or from a quantized
//                 checkpoint its int8 products as QuantizeLinear/DequantizeLinear nodes
// `--format` may say the same; a format that contradicts the extension is refused, and a file
// without one of these extensions needs `--format`.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerInference
import MixerModel
import MixerTrain

/// What `export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
  case npz, onnx, safetensors
}

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Export a checkpoint's parameters as an official MLP-Mixer .npz or .safetensors, or the model as ONNX.")

  @Argument(help: "A checkpoint folder (step-N), a --checkpoint-dir (its newest valid checkpoint), an imported weights folder, or (.onnx) a quantized checkpoint.")
  var checkpoint: String
  @Option(help: "The file to write; its extension names the format: .npz, .safetensors or .onnx.") var output: String
  @Option(help: "npz (official weights), safetensors (the same tensors) or onnx (the model: input images [B, H, W, 3], output logits; fp32, or int8 QDQ from a quantized checkpoint). Default: the output's extension; must agree with it.")
  var format: ExportFormat?
  @Option(help: "Which weights of a checkpoint: raw (the trained parameters) or ema (their moving average, saved by `train --ema`).") var weights: WeightsChoice = .raw

  /// The format the output's extension names, if any.
  private var formatOfOutput: ExportFormat? { ExportFormat(rawValue: (output as NSString).pathExtension.lowercased()) }

  func validate() throws {
    switch (format, formatOfOutput) {
    case (nil, nil):
      throw ValidationError("--output \(output): name the format by the extension (.npz, .safetensors or .onnx), or pass --format")
    case (let given?, let named?) where given != named:
      throw ValidationError("--format \(given.rawValue) contradicts --output \(output) (a .\(named.rawValue) file): drop --format or change the extension")
    default:
      break
    }
  }

  func run() throws {
    try runReportingErrors {
      let log: (String) -> Void = { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) }
      let url = URL(fileURLWithPath: output)
      let config: MixerConfig
      switch format ?? formatOfOutput! {
      case .onnx:
        let (data, exported, products) = try exportONNX(checkpoint, weights: weights)
        try data.write(to: url)
        print(
          "wrote \(output): ONNX opset 17, \(exported.blocks) blocks, patch \(exported.patch), C \(exported.hidden), "
            + "\(exported.classes) classes, \(grouped(exported.parameterCount)) parameters, \(products), \(grouped(data.count)) bytes")
        return
      case .npz:
        config = try exportOfficialNPZ(from: URL(fileURLWithPath: checkpoint), to: url, weights: weights, log: log)
      case .safetensors:
        config = try exportSafeTensors(checkpoint, to: url, weights: weights, log: log)
      }
      print(
        "wrote \(output): \(config.blocks) blocks, patch \(config.patch), C \(config.hidden), "
          + "\(config.classes) classes, \(grouped(config.parameterCount)) parameters")
      if config.gelu != .tanh {
        log("note: this model uses \(config.gelu.rawValue) GELU; the file does not record it (the official model uses tanh)")
      }
    }
  }
}
