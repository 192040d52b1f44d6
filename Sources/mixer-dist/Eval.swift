// `mixer-dist eval CHECKPOINT`: top-1, top-5 and loss of a checkpoint on a validation set (for a
// segmentation checkpoint: mIoU, per-class IoU and pixel accuracy), distributed over the ranks of
// mpirun with exact totals.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerKernels
import MixerTrain

struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a checkpoint (top-1, top-5, loss; mIoU for segmentation), alone or over mpirun ranks.")

  @Argument(help: "A checkpoint folder, a checkpoint directory or run folder (its newest valid checkpoint), or a weights folder from `mixer-dist import` (with --data).") var checkpoint: String
  @Option(help: "Data source (default: the one the checkpoint was trained on).") var data: String?
  @Option(help: "Evaluation batch size per rank.") var batch: Int = 250
  @Option(help: "OpenBLAS threads per rank.") var threads: Int?
  @Flag(help: "Print one JSON object instead of text.") var json = false
  @Flag(help: "Evaluate by class index even when the data's class names are not the checkpoint's.") var ignoreClassNames = false
  @Option(help: "Matrix products in fp32, bf16 or int8 (int8 needs a checkpoint from `mixer-dist quantize`; default: the checkpoint's own).") var precision: Precision?
  @Option(help: "Which weights of a checkpoint: raw (the trained parameters) or ema (their moving average, saved by `train --ema`).") var weights: WeightsChoice = .raw

  func run() throws {
    try runReportingErrors {
      guard batch > 0 else { throw ValidationError("--batch must be positive") }
      try Job.run { comm in
        Job.setBLASThreads(requested: threads, comm: comm)
        let (result, loaded) = try evaluateCheckpoint(
          path: checkpoint, data: data, comm: comm, batchSize: batch, ignoreClassNames: ignoreClassNames,
          precision: precision, weights: weights, log: { if comm.rank == 0 { FileHandle.standardError.write(Data("mixer-dist: \($0)\n".utf8)) } })
        guard comm.rank == 0 else { return }
        let task = loaded.model.config.task.training
        let step = loaded.step ?? 0
        let source = (loaded.step.map { "step \($0)" } ?? "imported weights") + (weights == .ema ? " (EMA weights)" : "")
        if json {
          let encoder = JSONEncoder()
          encoder.outputFormatting = [.sortedKeys]
          print(String(decoding: try encoder.encode(task.evaluationJSON(result, step: step)), as: UTF8.self))
        } else {
          let lines = task.evaluationRecord(result, classNames: loaded.config.classNames).lines
          print("\(source): \(lines[0])  (\(result.count) images, \(comm.size) rank(s))")
          for line in lines.dropFirst() { print(line) }
        }
      }
    }
  }
}
