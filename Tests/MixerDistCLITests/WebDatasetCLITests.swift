// WebDataset shards end to end: `shard create` on 1 and 2 ranks writing the same shards, training
// on them giving the parameters of the image folder they came from (1 and 2 ranks, augmentation
// and mixup on), a resume mid-epoch ending bit-identical, `eval` and `bench` on shards, and bad
// shards stopping every rank with one line.

import Foundation
import MixerTestSupport
import XCTest

final class WebDatasetCLITests: XCTestCase {
  let model = [
    "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8", "--image-size", "32",
    "--batch", "12", "--threads", "1", "--log-every", "5", "--randaugment", "2,9", "--mixup", "0.4",
  ]

  /// 3 classes × 16 training and 4 validation PNGs of 40×48 px (a colour per class, a ramp per image).
  func writeFolder(_ root: URL) throws {
    for (split, count) in [("train", 16), ("val", 4)] {
      for (c, name) in ["red", "green", "blue"].enumerated() {
        let folder = root.appendingPathComponent("\(split)/\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<count {
          var rgb = [UInt8](repeating: 30, count: 40 * 48 * 3)
          for p in 0..<(40 * 48) {
            rgb[p * 3 + c] = UInt8((150 + i * 5 + p % 48) % 256)
            rgb[p * 3 + (c + 1) % 3] = UInt8((p / 48 * 3 + i) % 256)
          }
          try pngFile(width: 48, height: 40, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
        }
      }
    }
  }

  func parameters(_ run: URL) throws -> Data { try Data(contentsOf: run.appendingPathComponent("final-parameters.f32")) }

  func testShardsTrainAsTheirFolderOnOneAndTwoRanksAndResumeExactly() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images")
    try writeFolder(root)
    // shard create alone and on 2 ranks: the same shards, 7 samples each
    let one = dir.appendingPathComponent("shards"), two = dir.appendingPathComponent("shards2")
    let created = try mixerDist(["shard", "create", "--data", "folder:\(root.path)", "--output", one.path, "--shard-samples", "7"])
    XCTAssertEqual(created.status, 0, created.stderr)
    XCTAssertTrue(created.stdout.contains("train: 48 samples in 7 shard(s)"), created.stdout)
    XCTAssertTrue(created.stdout.contains("val: 12 samples in 2 shard(s)"), created.stdout)
    let parallel = try mpirunMixerDist(
      ranks: 2, ["shard", "create", "--data", "folder:\(root.path)", "--output", two.path, "--shard-samples", "7"])
    XCTAssertEqual(parallel.status, 0, parallel.stderr)
    XCTAssertTrue(parallel.stdout.contains("rank 1: \(two.path)/train-000001.tar"), parallel.stdout)
    let names = try FileManager.default.contentsOfDirectory(atPath: one.path).filter { !$0.hasSuffix(".wdsindex") }.sorted()
    XCTAssertEqual(names.count, 10)  // 7 + 2 shards and classes.txt
    for name in names {
      XCTAssertEqual(try Data(contentsOf: one.appendingPathComponent(name)), try Data(contentsOf: two.appendingPathComponent(name)), name)
    }

    // 10 steps of 12 over 48 images: epochs of 4 steps, so crops and order change twice
    // the 2-rank run below builds the indexes of its patterns on first use (both ranks at once)
    for name in ["train.wdsindex", "val.wdsindex"] { try FileManager.default.removeItem(at: one.appendingPathComponent(name)) }
    let args = ["train"] + model + ["--steps", "10"]
    func train(_ data: String, _ name: String, ranks: Int = 1, extra: [String] = []) throws -> RunResult {
      let arguments = args + ["--data", data, "--run-dir", dir.appendingPathComponent(name).path] + extra
      return ranks == 1 ? try mixerDist(arguments) : try mpirunMixerDist(ranks: ranks, arguments)
    }
    for (data, name, ranks) in [
      ("wds:\(one.path)/train-{000000..000006}.tar,\(one.path)/val-{000000..000001}.tar", "wds2", 2),
      ("folder:\(root.path)", "folder1", 1), ("wds:\(one.path)", "wds1", 1), ("folder:\(root.path)", "folder2", 2),
    ] {
      let result = try train(data, name, ranks: ranks)
      XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
      if name == "wds2" {
        for index in ["train.wdsindex", "val.wdsindex"] {
          XCTAssertTrue(FileManager.default.fileExists(atPath: one.appendingPathComponent(index).path), index)
        }
      }
    }
    XCTAssertEqual(try parameters(dir.appendingPathComponent("wds1")), try parameters(dir.appendingPathComponent("folder1")))
    XCTAssertEqual(try parameters(dir.appendingPathComponent("wds2")), try parameters(dir.appendingPathComponent("folder2")))
    // 1 and 2 ranks: the same global batches, equal to float rounding
    let x = try parameters(dir.appendingPathComponent("wds1")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    let y = try parameters(dir.appendingPathComponent("wds2")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    XCTAssertEqual(x.count, y.count)
    var difference = 0.0, norm = 0.0
    for i in 0..<x.count {
      difference += Double(x[i] - y[i]) * Double(x[i] - y[i])
      norm += Double(x[i]) * Double(x[i])
    }
    XCTAssertLessThan((difference / norm).squareRoot(), 1e-3)

    // killed while saving step 9, resumed from step 6 (mid-epoch): bit-identical
    let checkpoints = dir.appendingPathComponent("ck").path
    let died = try train("wds:\(one.path)", "resumed", extra: ["--checkpoint-dir", checkpoints, "--save-every", "3", "--kill-in-save-at-step", "9"])
    XCTAssertNotEqual(died.status, 0)
    let resumed = try train("wds:\(one.path)", "resumed", extra: ["--checkpoint-dir", checkpoints, "--save-every", "3", "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("step-00000006"), resumed.stdout)
    XCTAssertEqual(try parameters(dir.appendingPathComponent("resumed")), try parameters(dir.appendingPathComponent("wds1")))

    // eval and bench read shards as they read the folder
    func topOne(_ result: RunResult) -> String? {
      result.stdout.split(separator: "\n").first { $0.contains("top-1") }.map(String.init)
    }
    let evalFolder = try mixerDist(["eval", dir.appendingPathComponent("folder1").path, "--data", "folder:\(root.path)"])
    let evalShards = try mixerDist(["eval", dir.appendingPathComponent("folder1").path, "--data", "wds:\(one.path)"])
    XCTAssertEqual(evalShards.status, 0, evalShards.stderr)
    XCTAssertNotNil(topOne(evalShards), evalShards.stdout)
    XCTAssertEqual(topOne(evalShards), topOne(evalFolder))
    let bench = try mixerDist([
      "bench", "--data", "wds:\(one.path)", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32",
      "--patch", "8", "--image-size", "32", "--batch", "12", "--steps", "2", "--warmup", "1", "--threads", "1",
    ])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    XCTAssertTrue(bench.stdout.contains("images/s per thread (32x32 output)"), bench.stdout)
  }

  func testShardHelpListsItsSubcommands() throws {
    let root = try mixerDist(["--help"])
    XCTAssertTrue(root.stdout.contains("  shard "), root.stdout)
    let help = try mixerDist(["shard", "--help"])
    XCTAssertEqual(help.status, 0)
    for name in ["create", "index"] { XCTAssertTrue(help.stdout.contains("  \(name) "), help.stdout) }
    let create = try mixerDist(["shard", "create", "--help"])
    for flag in ["--data", "--output", "--shard-size", "--shard-samples"] { XCTAssertTrue(create.stdout.contains(flag), create.stdout) }
  }

  func testBadShardsStopEveryRankWithOneLine() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images"), shards = dir.appendingPathComponent("shards")
    try writeFolder(root)
    let created = try mixerDist(["shard", "create", "--data", "folder:\(root.path)", "--output", shards.path, "--shard-samples", "10"])
    XCTAssertEqual(created.status, 0, created.stderr)
    let args = ["train"] + model + ["--steps", "2"]
    // a shard of the pattern missing, on 2 ranks: both stop, nothing hangs
    let missing = try mpirunMixerDist(ranks: 2, args + [
      "--data", "wds:\(shards.path)/train-{000000..000009}.tar", "--run-dir", dir.appendingPathComponent("missing").path,
    ], timeout: 60)
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertFalse(missing.timedOut)
    XCTAssertTrue(missing.stderr.contains("shard \(shards.path)/train-000005.tar is missing"), missing.stderr)
    // shard create refuses a folder that already holds shards
    let again = try mixerDist(["shard", "create", "--data", "folder:\(root.path)", "--output", shards.path])
    XCTAssertEqual(again.status, 1)
    XCTAssertTrue(again.stderr.contains("already holds train-NNNNNN.tar shards"), again.stderr)
    // a shard rewritten after indexing
    let shard = shards.appendingPathComponent("train-000003.tar")
    try (try Data(contentsOf: shard) + Data(count: 1024)).write(to: shard)
    let changed = try mixerDist(args + ["--data", "wds:\(shards.path)", "--run-dir", dir.appendingPathComponent("changed").path])
    XCTAssertEqual(changed.status, 78, "refused before training")
    XCTAssertTrue(changed.stderr.contains("shard \(shard.path) changed since its index"), changed.stderr)
    XCTAssertEqual(changed.stderr.split(separator: "\n").count, 1, changed.stderr)
    let reindexed = try mixerDist(["shard", "index", shards.path])
    XCTAssertEqual(reindexed.status, 0, reindexed.stderr)
    XCTAssertTrue(reindexed.stdout.contains("\(shards.path)/train.wdsindex: 48 samples in 5 shard(s)"), reindexed.stdout)
    // labels outside the classes of classes.txt: named, or left out with --skip-bad-images
    try "red\ngreen\n".write(to: shards.appendingPathComponent("classes.txt"), atomically: true, encoding: .utf8)
    let outside = try mixerDist(args + ["--data", "wds:\(shards.path)", "--run-dir", dir.appendingPathComponent("outside").path])
    XCTAssertEqual(outside.status, 78, "refused before training")
    XCTAssertTrue(outside.stderr.contains("train-000003.tar: sample 000032 has label 2, outside the 2 classes"), outside.stderr)
    let skipped = try mixerDist(args + [
      "--data", "wds:\(shards.path)", "--skip-bad-images", "--run-dir", dir.appendingPathComponent("skipped").path,
    ])
    XCTAssertEqual(skipped.status, 0, skipped.stderr)
    XCTAssertTrue(skipped.stderr.contains("left out 16 bad sample(s)"), skipped.stderr)
    XCTAssertTrue(skipped.stdout.contains("32 images, 16 bad sample(s) left out"), skipped.stdout)
  }
}
