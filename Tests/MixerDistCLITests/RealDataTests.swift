// Training on real data formats end to end: a CIFAR-10 binary folder and an ImageNet-style JPEG/PNG
// folder, each written by the test in the exact format, on 1 and 2 ranks with augmentation on;
// and a corrupt image stopping the run with its file named, or skipped with --skip-bad-images.

import MixerTestSupport
import XCTest
import MixerCheckpoint

final class RealDataTests: XCTestCase {
  let model = ["--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
               "--batch", "16", "--steps", "6", "--threads", "1", "--log-every", "3"]

  func writeCIFAR(_ dir: URL) throws { try writeCIFARFolder(dir) }
}

/// A CIFAR-10 folder: 5 small data batches and a test batch; the label is the dominant colour.
func writeCIFARFolder(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    for (name, records) in [("data_batch_1.bin", 40), ("data_batch_2.bin", 40), ("data_batch_3.bin", 40),
                            ("data_batch_4.bin", 40), ("data_batch_5.bin", 40), ("test_batch.bin", 30)] {
      var bytes: [UInt8] = []
      for r in 0..<records {
        let label = UInt8(r % 10)
        bytes.append(label)
        for channel in 0..<3 {
          for p in 0..<1024 { bytes.append(UInt8((Int(label) * 25 + channel * 40 + p % 7) % 256)) }
        }
      }
      try Data(bytes).write(to: dir.appendingPathComponent(name))
    }
    try "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
      .write(to: dir.appendingPathComponent("batches.meta.txt"), atomically: true, encoding: .utf8)
}

extension RealDataTests {
  func testCIFARFolderTrainsOnOneAndTwoRanksIdentically() throws {
    let dir = try makeTemporaryDirectory(self)
    let data = dir.appendingPathComponent("cifar-10-batches-bin")
    try writeCIFAR(data)
    let common = model + ["--data", "cifar10:\(data.path)", "--randaugment", "2,10", "--mixup", "0.5", "--stochastic-depth", "0.1"]
    let one = try mixerDist(["train"] + common + ["--run-dir", dir.appendingPathComponent("one").path])
    XCTAssertEqual(one.status, 0, one.stderr)
    XCTAssertTrue(one.stdout.contains("200 train / 30 val"), one.stdout)
    let two = try mpirunMixerDist(ranks: 2, ["train"] + common + ["--run-dir", dir.appendingPathComponent("two").path])
    XCTAssertEqual(two.status, 0, two.stderr)
    let a = try Data(contentsOf: dir.appendingPathComponent("one/final-parameters.f32"))
    let b = try Data(contentsOf: dir.appendingPathComponent("two/final-parameters.f32"))
    XCTAssertEqual(a.count, b.count)
    // the same augmented, mixed global batches on 1 and 2 ranks: equal to float rounding
    let x = a.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    let y = b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    var diff = 0.0, norm = 0.0
    for i in 0..<x.count { diff += Double(x[i] - y[i]) * Double(x[i] - y[i]); norm += Double(x[i]) * Double(x[i]) }
    XCTAssertLessThan((diff / norm).squareRoot(), 1e-3)
  }

  func testImageFolderWithABadFile() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images")
    // 3 classes × 12 PNGs of 40×48 px, solid colours with a stripe, written as valid PNG files
    for (c, name) in ["red", "green", "blue"].enumerated() {
      let folder = root.appendingPathComponent("train/\(name)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      for i in 0..<12 {
        var rgb = [UInt8](repeating: 30, count: 40 * 48 * 3)
        for p in 0..<(40 * 48) { rgb[p * 3 + c] = UInt8(150 + i * 5) }
        try pngFile(width: 48, height: 40, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
      }
    }
    let args = ["train"] + model + ["--data", "folder:\(root.path)", "--val-fraction", "0.25", "--classes", "3", "--batch", "8"]
    let ok = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("ok").path])
    XCTAssertEqual(ok.status, 0, ok.stderr)
    // a truncated file stops the run, naming it
    try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A]).write(to: root.appendingPathComponent("train/green/broken.png"))
    let stopped = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("bad").path, "--steps", "40"])
    XCTAssertNotEqual(stopped.status, 0)
    XCTAssertTrue(stopped.stderr.contains("broken.png"), stopped.stderr)
    let skipped = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("skip").path, "--steps", "40", "--skip-bad-images"])
    XCTAssertEqual(skipped.status, 0, skipped.stderr)
    XCTAssertTrue(skipped.stderr.contains("broken.png"), "a skipped file is logged: \(skipped.stderr)")
  }

  /// Without --classes the model predicts the folder's classes, and says so (it used to stop with
  /// "the data has 4 classes but the model has 10: pass --classes 4").
  func testFolderClassCountComesFromTheData() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images")
    for (c, name) in ["red", "green", "blue", "grey"].enumerated() {
      let folder = root.appendingPathComponent("train/\(name)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      for i in 0..<6 {
        var rgb = [UInt8](repeating: 30, count: 32 * 32 * 3)
        for p in 0..<(32 * 32) { rgb[p * 3 + c % 3] = UInt8(100 + 30 * c + i) }
        try pngFile(width: 32, height: 32, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
      }
    }
    let result = try mixerDist(["train"] + model + [
      "--data", "folder:\(root.path)", "--val-fraction", "0.25", "--batch", "8", "--steps", "2",
      "--run-dir", dir.appendingPathComponent("run").path,
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue((result.stdout + result.stderr).contains("the data has 4 classes: the model predicts 4"), result.stdout)
    let config = try String(contentsOf: dir.appendingPathComponent("run/config.json"), encoding: .utf8)
    XCTAssertTrue(config.contains("\"classes\" : 4"), config)
  }

  /// A corrupt file in val/ stops the run before step 1 (it used to be found at the final
  /// evaluation, after all the training), naming it and --skip-bad-images; the split is said.
  func testBadEvaluationFileStopsTheRunBeforeTraining() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images")
    for split in ["train", "val"] {
      for (c, name) in ["red", "green"].enumerated() {
        let folder = root.appendingPathComponent("\(split)/\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<(split == "train" ? 8 : 4) {
          var rgb = [UInt8](repeating: 30, count: 32 * 32 * 3)
          for p in 0..<(32 * 32) { rgb[p * 3 + c] = UInt8(150 + i * 5) }
          try pngFile(width: 32, height: 32, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
        }
      }
    }
    // a PNG cut short: its header is fine, its end is missing
    var cut = pngFile(width: 32, height: 32, rgb: [UInt8](repeating: 9, count: 32 * 32 * 3))
    cut.removeLast(20)
    try cut.write(to: root.appendingPathComponent("val/green/cut.png"))
    let args = ["train"] + model + ["--data", "folder:\(root.path)", "--batch", "8", "--steps", "3"]
    let stopped = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("bad").path])
    XCTAssertEqual(stopped.status, 78, "refused before training")
    XCTAssertTrue(stopped.stderr.contains("cut.png"), stopped.stderr)
    XCTAssertTrue(stopped.stderr.contains("--skip-bad-images"), stopped.stderr)
    XCTAssertFalse(stopped.stdout.contains("step 3/3"), "no step ran: \(stopped.stdout)")
    let skipped = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("skip").path, "--skip-bad-images"])
    XCTAssertEqual(skipped.status, 0, skipped.stderr)
    XCTAssertTrue(skipped.stdout.contains("1 unreadable image(s) in the evaluation set, substituted"), skipped.stdout)
    XCTAssertTrue(skipped.stdout.contains("data: validation: \(root.path)/val (9 images)"), skipped.stdout)
    // --val-fraction with a val/ folder: held out of train/, and it says val/ is not used
    let held = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("held").path, "--val-fraction", "0.5"])
    XCTAssertEqual(held.status, 0, held.stderr)
    XCTAssertTrue(held.stdout.contains("held out of \(root.path)/train (--val-fraction 0.5, by a hash of each file name with split seed 0)"), held.stdout)
    XCTAssertTrue(held.stdout.contains("val is not used because --val-fraction is given"), held.stdout)
  }

  func testMissingDataFolderIsAClearError() throws {
    let result = try mixerDist(["train", "--data", "cifar10:/nonexistent/cifar"])
    XCTAssertNotEqual(result.status, 0)
    XCTAssertTrue(result.stderr.contains("/nonexistent/cifar"), result.stderr)
    XCTAssertLessThanOrEqual(result.stderr.split(separator: "\n").count, 2, result.stderr)
  }
}

/// Bit-identical resume with image augmentation on (inception crop, flip, RandAugment, mixup):
/// every draw is keyed by (seed, epoch, sample), so a resumed run needs no RNG state.
final class AugmentedResumeTests: XCTestCase {
  func testResumeWithAugmentationIsBitIdentical() throws {
    let dir = try makeTemporaryDirectory(self)
    let data = dir.appendingPathComponent("cifar")
    try writeCIFARFolder(data)
    let args = [
      "train", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
      "--batch", "16", "--steps", "24", "--threads", "1", "--data", "cifar10:\(data.path)",
      "--randaugment", "2,9", "--mixup", "0.4", "--stochastic-depth", "0.1", "--dropout", "0.1",
    ]
    let straight = try mixerDist(args + ["--run-dir", dir.appendingPathComponent("straight").path])
    XCTAssertEqual(straight.status, 0, straight.stderr)
    // 24 steps over 200 images of batch 16: epochs change at step 12, so the resumed half
    // crosses an epoch boundary with new crops
    let ck = dir.appendingPathComponent("ck").path
    let run = dir.appendingPathComponent("resumed").path
    let died = try mixerDist(args + ["--run-dir", run, "--checkpoint-dir", ck, "--save-every", "10", "--kill-in-save-at-step", "20"])
    XCTAssertNotEqual(died.status, 0)
    let resumed = try mixerDist(args + ["--run-dir", run, "--checkpoint-dir", ck, "--save-every", "10", "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("step-00000010"), resumed.stdout)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("straight/final-parameters.f32")),
      try Data(contentsOf: URL(fileURLWithPath: run).appendingPathComponent("final-parameters.f32")))
  }
}

/// `bench --data`: loader images/s per thread, then training steps fed by the loader, saying
/// whether the step waited for data.
final class LoaderBenchTests: XCTestCase {
  func testBenchDataReportsThroughputAndWaits() throws {
    let dir = try makeTemporaryDirectory(self)
    try writeCIFARFolder(dir)
    let result = try mixerDist([
      "bench", "--data", "cifar10:\(dir.path)", "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8",
      "--channels-mlp", "32", "--patch", "8", "--batch", "16", "--steps", "3", "--warmup", "1", "--threads", "1",
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stdout.contains("images/s per thread (32x32 output)"), result.stdout)
    XCTAssertTrue(result.stdout.contains("the step waited for data in"), result.stdout)
  }
}
