// `mixer-dist eval CHECKPOINT`: top-1, top-5 and loss of a checkpoint on a validation set,
// distributed over the ranks of mpirun with exact totals.

import ArgumentParser
import Foundation
import MixerDistributed
import MixerKernels
import MixerTrain

struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a checkpoint (top-1, top-5, loss), alone or over mpirun ranks.")

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
        if comm.rank == 0 {
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
