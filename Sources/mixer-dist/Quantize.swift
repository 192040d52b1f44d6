// `mixer-dist quantize CHECKPOINT --calibration DATA --output DIR`: post-training int8
// quantization with a per-layer sensitivity table; the output is a checkpoint `eval`, `predict`
// and `bench --inference --checkpoint` load.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerInference
import MixerKernels
import MixerTrain

extension CalibrationMethod: ExpressibleByArgument {}

struct Quantize: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Post-training int8 quantization: calibrated activation ranges, per-output-channel weight scales, the most sensitive products kept in bf16.")

  @Argument(help: "An fp32 checkpoint (step-N folder, checkpoint directory or run folder).") var checkpoint: String
  @Option(help: "Calibration images: a --data spec, its training split (default: the checkpoint's data).") var calibration: String?
  @Option(help: "Calibration images.") var samples: Int = 256
  @Option(help: "Other training images the whole model's error against fp32 is measured on.") var evalSamples: Int = 32
  @Option(help: "Of those, the images each product's sensitivity is measured on (three partial forwards per product).")
  var sensitivitySamples: Int = QuantizationOptions().sensitivitySamples
  @Option(help: "Activation ranges: percentile (clip the outliers) or minmax.") var method: CalibrationMethod = .percentile
  @Option(help: "Percentile of the range (with --method percentile).") var percentile: Double = 99.99
  @Option(help: "A product whose int8 logit error alone (relative RMS) is above this stays bf16.") var maxLayerError: Double = 0.02
  @Option(help: "The folder to write the quantized checkpoint to.") var output: String
  @Option(help: "OpenBLAS and oneDNN threads.") var threads: Int?
  @Option(help: "Which weights of a checkpoint: raw (the trained parameters) or ema (their moving average, saved by `train --ema`).") var weights: WeightsChoice = .raw
  @Flag(help: "Print the report as one JSON object.") var json = false

  func run() throws {
    try runReportingErrors {
      guard samples > 0, evalSamples > 0, sensitivitySamples > 0 else {
        throw ValidationError("--samples, --eval-samples and --sensitivity-samples must be positive")
      }
      guard percentile > 50, percentile <= 100 else { throw ValidationError("--percentile must be in (50, 100]") }
      Job.setBLASThreads(requested: threads)
      var options = QuantizationOptions()
      options.calibrationData = calibration
      options.samples = samples
      options.evaluationSamples = evalSamples
      options.sensitivitySamples = sensitivitySamples
      options.method = method
      options.percentile = percentile
      options.maxLayerError = maxLayerError
      options.weights = weights
      let log: (String) -> Void = { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) }
      let report = try quantizeCheckpoint(path: checkpoint, output: URL(fileURLWithPath: output), options: options, log: log)
      if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(report), as: UTF8.self))
        return
      }
      print("per-layer sensitivity: relative logit error with only this product quantized (\(report.sensitivityImages ?? report.heldOutImages) held-out images)")
      print("| layer | K×N | MACs | int8 min-max | int8 percentile | bf16 | kept as |")
      print("|---|---|---|---|---|---|---|")
      for r in report.layers {
        print(String(
          format: "| %@ | %d×%d | %.1f%% | %.4f | %.4f | %.4f | %@ |", r.layer, r.inputs, r.outputs, r.macShare * 100,
          r.int8MinMax, r.int8Percentile, r.bf16, r.chosen.rawValue))
      }
      print("whole model against fp32 (\(report.heldOutImages) held-out images):")
      for s in report.summaries {
        print(String(format: "  %-28@ logit error %.4f  top-1 agreement %.2f%%", s.setting, s.relativeError, s.top1Agreement * 100))
      }
      print("wrote \(output) (params.safetensors \(grouped(report.bytes)) bytes)")
    }
  }
}
