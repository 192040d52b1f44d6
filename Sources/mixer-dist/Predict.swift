// `mixer-dist predict CHECKPOINT IMAGES...`: top-k class names with probabilities; for a
// segmentation checkpoint, a mask PNG per image and the share of each predicted class.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerKernels
import MixerTrain

struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Classify image files or folders (JPEG, PNG) with a checkpoint: top-k classes and probabilities (segmentation: a mask PNG per image).")

  @Argument(help: "A checkpoint folder, or a checkpoint directory (its newest valid checkpoint).") var checkpoint: String
  @Argument(help: "Image files or folders (searched recursively).") var images: [String]
  @Option(help: "How many classes to show per image.") var topK: Int = 5
  @Option(help: "Images per forward pass.") var batch: Int = 32
  @Option(help: "OpenBLAS threads.") var threads: Int?
  @Flag(help: "One JSON object per image instead of text.") var json = false
  @Option(help: "Matrix products in fp32, bf16 or int8 (int8 needs a checkpoint from `mixer-dist quantize`; default: the checkpoint's own).") var precision: Precision?
  @Option(help: "Which weights of a checkpoint: raw (the trained parameters) or ema (their moving average, saved by `train --ema`).") var weights: WeightsChoice = .raw
  @Option(help: "Segmentation checkpoints: the folder for the predicted masks (8-bit PNGs of class indices, one per image, at the image's size).") var maskDir: String = "predicted-masks"

  func run() throws {
    try runReportingErrors {
      guard batch > 0, topK > 0 else { throw ValidationError("--batch and --top-k must be positive") }
      Job.setBLASThreads(requested: threads)
      let predictions = try predict(
        checkpoint: checkpoint, files: try imageFiles(images),
        options: PredictionOptions(topK: topK, maskDirectory: maskDir), batchSize: batch, precision: precision, weights: weights,
        log: { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) })
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      for p in predictions {
        if json {
          print(String(decoding: try encoder.encode(p), as: UTF8.self))
        } else {
          let items = zip(p.classes, p.probabilities).map { String(format: "%@ %.3f", $0.0, $0.1) }
          if let mask = p.mask {
            print("\(p.file): mask \(mask); pixels: \(items.joined(separator: ", "))")
          } else {
            print("\(p.file): \(items.joined(separator: ", "))")
          }
        }
      }
    }
  }
}
