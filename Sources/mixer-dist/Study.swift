// `mixer-dist study SPEC.yaml`: trains a list of model variants with the same data, budget and
// seed, and writes a table (parameters, FLOPs, images/s, final accuracy) as Markdown and JSON.
// Segmentation variants (`task: segmentation`) add a validation mIoU column; their top-1 and
// top-5 are over labelled pixels.
//
// SPEC: `output: DIR`, `common: {flag: value, ...}` (train flags for every variant), and
// `variants: [{name: NAME, flags: {flag: value, ...}}, ...]`. Runs alone or under mpirun.

import ArgumentParser
import Foundation
import MixerDistributed
import MixerModel
import MixerTrain
import Yams

struct Study: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a list of variants with the same data, budget and seed; write a comparison table.")

  @Argument(help: "The study spec (YAML): output, common flags, variants with their flags.") var spec: String

  struct Row: Codable {
    var name: String
    var parameters: Int
    var gflopsPerImage: Double
    var imagesPerSecond: Double
    var top1: Double
    var top5: Double
    /// segmentation variants only
    var meanIoU: Double?
    var seconds: Double
  }

  func run() throws {
    try runReportingErrors {
      guard let text = try? String(contentsOfFile: spec, encoding: .utf8) else {
        throw ConfigFileError("cannot read study spec \(spec)")
      }
      guard let root = (try? Yams.load(yaml: text)) as? [String: Any],
        let variants = root["variants"] as? [[String: Any]], !variants.isEmpty
      else {
        throw ConfigFileError("\(spec): needs a non-empty 'variants' list of {name, flags}")
      }
      let output = (root["output"] as? String) ?? "runs/study"
      let common = try ConfigFile.flags(from: (root["common"] as? [String: Any]) ?? [:], source: spec)
      // every variant parses as a `train` command line before anything runs
      var plans: [(String, TrainConfig)] = []
      for variant in variants {
        guard let name = variant["name"] as? String, !name.isEmpty, !name.contains("/") else {
          throw ConfigFileError("\(spec): every variant needs a 'name' (no '/')")
        }
        let flags = try ConfigFile.flags(from: (variant["flags"] as? [String: Any]) ?? [:], source: "\(spec): \(name)")
        let train = try Train.parse(common + flags + ["--run-dir", "\(output)/\(name)"])
        plans.append((name, try train.trainConfig()))
      }
      let comm = try MPICommunicator.makeDefault()
      var rows: [Row] = []
      do {
        for (name, config) in plans {
          let trainer = try Trainer(config: config, comm: comm)
          let summary = try trainer.run()
          rows.append(Row(
            name: name, parameters: trainer.model.table.count,
            gflopsPerImage: config.model.forwardFLOPsPerImage / 1e9, imagesPerSecond: summary.imagesPerSecond,
            top1: summary.evaluation?.top1 ?? .nan, top5: summary.evaluation?.top5 ?? .nan,
            meanIoU: summary.evaluation?.meanIoU, seconds: summary.seconds))
        }
      } catch {
        if comm.size > 1 { comm.abort(message: "\(error)", code: 1) }
        throw error
      }
      if comm.rank == 0 {
        let segmentation = rows.contains { $0.meanIoU != nil }
        var table = "| variant | parameters | forward GFLOPs/image | images/s |"
          + (segmentation ? " val mIoU |" : "") + " val top-1 | val top-5 | seconds |\n"
        table += "|---|---|---|---|" + (segmentation ? "---|" : "") + "---|---|---|\n"
        for r in rows {
          let miou = segmentation ? (r.meanIoU.map { String(format: " %.2f%% |", $0 * 100) } ?? " - |") : ""
          table += String(format: "| %@ | %@ | %.4f | %.0f |%@ %.2f%% | %.2f%% | %.0f |\n", r.name, grouped(r.parameters),
                          r.gflopsPerImage, r.imagesPerSecond, miou, r.top1 * 100, r.top5 * 100, r.seconds)
        }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        try table.write(toFile: "\(output)/study.md", atomically: true, encoding: .utf8)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(rows).write(to: URL(fileURLWithPath: "\(output)/study.json"))
        print(table, terminator: "")
        print("wrote \(output)/study.md and \(output)/study.json")
      }
      try comm.finalize()
    }
  }
}
