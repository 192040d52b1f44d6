// `mixer-dist shard create` (an image folder, CIFAR or MNIST → WebDataset tar shards, their
// indexes and classes.txt; in parallel over ranks under mpirun) and `mixer-dist shard index`
// (build or check the index of existing shards, e.g. written by Python's webdataset).

import ArgumentParser
import Foundation
import MixerData
import MixerTrain

struct Shard: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write or index WebDataset tar shards (train with --data wds:PATH).",
    subcommands: [ShardCreate.self, ShardIndexCommand.self])
}

struct ShardCreate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "create",
    abstract: "Turn --data KIND:PATH into train-NNNNNN.tar and val-NNNNNN.tar shards, their indexes and classes.txt.")

  @Option(help: "The data to convert: folder:PATH, cifar10:PATH, cifar100:PATH, mnist:PATH, fashion-mnist:PATH (or wds:PATH to re-shard).")
  var data: String
  @Option(help: "Folder to write the shards into (must not hold shards yet).") var output: String
  @Option(help: "Most source bytes per shard (e.g. 256MB, 1GB).") var shardSize = "256MB"
  @Option(help: "Most samples per shard.") var shardSamples = 100_000
  @Option(help: "Image folders without val/: the fraction of train/ held out for validation (default 0.1).")
  var valFraction: Double?

  func run() throws {
    try runReportingErrors {
      var options = DataOptions()
      options.valFraction = valFraction
      let plan = ShardPlan(shardBytes: try parseByteSize(shardSize), shardSamples: shardSamples)
      var splits: [(name: String, source: any EncodedImageSource)] = []
      for (name, split) in [("train", DataSplit.train), ("val", .validation)] {
        let dataset = try makeDataset(spec: data, split: split, imageSize: (32, 32), seed: 0, options: options)
        guard let source = dataset as? any EncodedImageSource else {
          throw ValidationError("--data \(data): shards are written from image folders, CIFAR, MNIST or shards")
        }
        splits.append((name, source))
      }
      try Job.run { comm in
        let written = try createShards(
          splits: splits, output: output, plan: plan, rank: comm.rank, worldSize: comm.size,
          barrier: { try comm.barrier() }, log: { print("rank \(comm.rank): \($0)") })
        if comm.rank == 0 {
          for (split, shards, samples) in written { print("\(split): \(samples) samples in \(shards) shard(s)") }
          print("train with: mixer-dist train --data wds:\(output)")
        }
      }
    }
  }
}

struct ShardIndexCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "index",
    abstract: "Build the index of shards (PATTERN such as 'DIR/train-{000000..000146}.tar', or a folder of train-/val- shards).")

  @Argument(help: "A brace pattern of shard files, or a folder holding train-NNNNNN.tar (and val-NNNNNN.tar).")
  var pattern: String

  func run() throws {
    try runReportingErrors {
      var sets: [ShardSet] = []
      if FileManager.default.fileExists(atPath: pattern), (try? FileManager.default.attributesOfItem(atPath: pattern)[.type] as? FileAttributeType) == .typeDirectory {
        sets = ["train", "val", "validation"].compactMap { ShardSet(directory: pattern, prefix: $0) }
        guard !sets.isEmpty else { throw ValidationError("\(pattern) holds no train-NNNNNN.tar or val-NNNNNN.tar shards") }
      } else {
        sets = [try ShardSet(pattern: pattern)]
      }
      for set in sets {
        for shard in set.shards where !FileManager.default.fileExists(atPath: shard) {
          throw ValidationError("shard \(shard) is missing")
        }
        let started = Date()
        let index = try ShardIndex.build(set)
        try index.write(to: set.indexPath)
        let seconds = Date().timeIntervalSince(started)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: set.indexPath)[.size] as? Int) ?? 0
        print(String(
          format: "%@: %d samples in %d shard(s), %d bytes, built in %.2f s", set.indexPath, index.count,
          set.shards.count, bytes, seconds))
      }
    }
  }
}
