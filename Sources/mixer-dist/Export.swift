// `mixer-dist export CHECKPOINT --output FILE.npz`: write a checkpoint's parameters as an official
// MLP-Mixer `.npz` (official keys, float32), readable by the public JAX/Flax code.
// `--format onnx --output model.onnx`: the classification model as an ONNX graph (opset 17), which
// ONNX Runtime runs (tools/onnx_compare.py): fp32, or from a quantized checkpoint its int8 products
// as QuantizeLinear/DequantizeLinear nodes (bf16-kept products fp32).

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerInference
import MixerTrain

/// What `export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
  case npz, onnx
}

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Export a checkpoint's parameters as an official MLP-Mixer .npz, or the model as ONNX.")

  @Argument(help: "A checkpoint folder (step-N), a --checkpoint-dir (its newest valid checkpoint), an imported weights folder, or (--format onnx) a quantized checkpoint.")
  var checkpoint: String
  @Option(help: "The file to write (.npz, or .onnx with --format onnx).") var output: String
  @Option(help: "npz (official weights) or onnx (the classification model: input images [B, H, W, 3], output logits [B, K]; fp32, or int8 QDQ from a quantized checkpoint).")
  var format: ExportFormat = .npz

  func run() throws {
    try runReportingErrors {
      let log: (String) -> Void = { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) }
      if format == .onnx {
        let (data, config, products) = try exportONNX(checkpoint)
        try data.write(to: URL(fileURLWithPath: output))
        print(
          "wrote \(output): ONNX opset 17, \(config.blocks) blocks, patch \(config.patch), C \(config.hidden), "
            + "\(config.classes) classes, \(grouped(config.parameterCount)) parameters, \(products), \(grouped(data.count)) bytes")
        return
      }
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
