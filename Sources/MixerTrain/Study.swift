// An architecture study: several variants trained with the same data, budget and seed, one row
// each (parameters, forward FLOPs, images/s, the task's metrics), written as a Markdown table
// and JSON. Runs alone or over the ranks of one job.

import Foundation
import MixerDistributed

/// One trained variant.
public struct StudyRow: Codable {
  public var name: String
  public var parameters: Int
  public var gflopsPerImage: Double
  public var imagesPerSecond: Double
  public var top1: Double
  public var top5: Double
  /// segmentation variants only
  public var meanIoU: Double?
  public var seconds: Double
}

/// Trains every `(name, config)` in turn on `comm`'s ranks and returns their rows.
public func runStudy(_ variants: [(name: String, config: TrainConfig)], comm: Communicator) throws -> [StudyRow] {
  var rows: [StudyRow] = []
  for (name, config) in variants {
    let trainer = try Trainer(config: config, comm: comm)
    let summary = try trainer.run()
    rows.append(StudyRow(
      name: name, parameters: trainer.model.table.count,
      gflopsPerImage: config.model.forwardFLOPsPerImage / 1e9, imagesPerSecond: summary.imagesPerSecond,
      top1: summary.evaluation?.top1 ?? .nan, top5: summary.evaluation?.top5 ?? .nan,
      meanIoU: summary.evaluation?.meanIoU, seconds: summary.seconds))
  }
  return rows
}

/// The rows as a Markdown table (a mIoU column when any variant has one).
public func studyTable(_ rows: [StudyRow]) -> String {
  let segmentation = rows.contains { $0.meanIoU != nil }
  var table = "| variant | parameters | forward GFLOPs/image | images/s |"
    + (segmentation ? " val mIoU |" : "") + " val top-1 | val top-5 | seconds |\n"
  table += "|---|---|---|---|" + (segmentation ? "---|" : "") + "---|---|---|\n"
  for r in rows {
    let miou = segmentation ? (r.meanIoU.map { String(format: " %.2f%% |", $0 * 100) } ?? " - |") : ""
    table += String(format: "| %@ | %@ | %.4f | %.0f |%@ %.2f%% | %.2f%% | %.0f |\n", r.name, grouped(r.parameters),
                    r.gflopsPerImage, r.imagesPerSecond, miou, r.top1 * 100, r.top5 * 100, r.seconds)
  }
  return table
}

/// Writes `study.md` and `study.json` into `output`; returns the table.
@discardableResult
public func writeStudy(_ rows: [StudyRow], to output: String) throws -> String {
  let table = studyTable(rows)
  try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
  try table.write(toFile: "\(output)/study.md", atomically: true, encoding: .utf8)
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
  try encoder.encode(rows).write(to: URL(fileURLWithPath: "\(output)/study.json"))
  return table
}
