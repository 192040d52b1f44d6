// `mixer-dist eval CHECKPOINT`: top-1, top-5 and loss of a checkpoint on a validation set (for a
// segmentation checkpoint: mIoU, per-class IoU and pixel accuracy), distributed over the ranks of
// mpirun with exact totals.

import ArgumentParser
import Foundation
import MixerDistributed
import MixerKernels
import MixerTrain

struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a checkpoint (top-1, top-5, loss; mIoU for segmentation), alone or over mpirun ranks.")

  @Argument(help: "A checkpoint folder, or a checkpoint directory (its newest valid checkpoint).") var checkpoint: String
  @Option(help: "Data source (default: the one the checkpoint was trained on).") var data: String?
  @Option(help: "Evaluation batch size per rank.") var batch: Int = 250
  @Option(help: "OpenBLAS threads per rank.") var threads: Int?
  @Flag(help: "Print one JSON object instead of text.") var json = false

  func run() throws {
    try runReportingErrors {
      guard batch > 0 else { throw ValidationError("--batch must be positive") }
      let comm = try MPICommunicator.makeDefault()
      BLAS.setThreads(threads ?? defaultThreadsPerRank(coresPerNode: onlineCPUCount(), localSize: comm.localSize))
      do {
        let (result, manifest) = try evaluateCheckpoint(path: checkpoint, data: data, comm: comm, batchSize: batch)
        if comm.rank == 0, let meanIoU = result.meanIoU {
          if json {
            let perClass = (result.classIoU ?? []).map { $0.map { "\($0)" } ?? "null" }.joined(separator: ",")
            print("{\"step\":\(manifest.step),\"count\":\(result.count),\"pixels\":\(result.pixels ?? 0),\"miou\":\(meanIoU),\"pixel_accuracy\":\(result.top1),\"class_iou\":[\(perClass)],\"loss\":\(result.loss)}")
          } else {
            let names = manifest.config.classNames
            let perClass = (result.classIoU ?? []).enumerated().map { k, iou in
              let name = names.indices.contains(k) ? names[k] : "class \(k)"
              return iou.map { String(format: "%@ %.1f", name, $0 * 100) } ?? "\(name) -"
            }
            print(String(format: "step %d: mIoU %.2f%%  pixel accuracy %.2f%%  loss %.4f  (%d images, %d rank(s))",
                         manifest.step, meanIoU * 100, result.top1 * 100, result.loss, result.count, comm.size))
            print("IoU per class (%): " + perClass.joined(separator: ", "))
          }
        } else if comm.rank == 0 {
          if json {
            print("{\"step\":\(manifest.step),\"count\":\(result.count),\"top1\":\(result.top1),\"top5\":\(result.top5),\"loss\":\(result.loss)}")
          } else {
            print(String(format: "step %d: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images, %d rank(s))",
                         manifest.step, result.top1 * 100, result.top5 * 100, result.loss, result.count, comm.size))
          }
        }
        try comm.finalize()
      } catch {
        if comm.size > 1 { comm.abort(message: "\(error)", code: 1) }
        throw error
      }
    }
  }
}
