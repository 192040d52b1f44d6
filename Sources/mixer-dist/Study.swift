// `mixer-dist study SPEC.yaml`: trains a list of model variants with the same data, budget and
// seed, and writes a table (parameters, FLOPs, images/s, final accuracy) as Markdown and JSON.
// Segmentation variants (`task: segmentation`) add a validation mIoU column; their top-1 and
// top-5 are over labelled pixels.
//
// SPEC: `output: DIR`, `common: {flag: value, ...}` (train flags for every variant), and
// `variants: [{name: NAME, flags: {flag: value, ...}}, ...]`. Runs alone or under mpirun.

import ArgumentParser
import Foundation
import MixerTrain
import Yams

struct Study: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a list of variants with the same data, budget and seed; write a comparison table.")

  @Argument(help: "The study spec (YAML): output, common flags, variants with their flags.") var spec: String

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
      let common = try ConfigFile.flags(
        from: (root["common"] as? [String: Any]) ?? [:], source: spec, validNames: flagNames(ofSubcommand: "train"))
      // every variant parses as a `train` command line before anything runs
      var plans: [(name: String, config: TrainConfig)] = []
      for variant in variants {
        guard let name = variant["name"] as? String, !name.isEmpty, !name.contains("/") else {
          throw ConfigFileError("\(spec): every variant needs a 'name' (no '/')")
        }
        let flags = try ConfigFile.flags(
          from: (variant["flags"] as? [String: Any]) ?? [:], source: "\(spec): \(name)",
          validNames: flagNames(ofSubcommand: "train"))
        let train = try Train.parse(common + flags + ["--run-dir", "\(output)/\(name)"])
        plans.append((name, try train.trainConfig().0))
      }
      try Job.run { comm in
        let rows = try runStudy(plans, comm: comm)
        if comm.rank == 0 {
          print(try writeStudy(rows, to: output), terminator: "")
          print("wrote \(output)/study.md and \(output)/study.json")
        }
      }
    }
  }
}
