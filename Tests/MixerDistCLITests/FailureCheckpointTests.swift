// Every failure ends with a checkpoint and one line (issue 24): each class reproduces one failure
// as a user met it, on real files and real processes: a full filesystem and a read-only one (real
// tmpfs mounts, removed in teardown), a process killed before its first save, a corrupt JPEG met
// part-way, a loss that goes non-finite, a job under launch/resilient, wall-clock checkpoints and
// the training time of a resumed run. Each checks the message, the exit status and which
// checkpoint was left.

import Foundation
import MixerData
import MixerTestSupport
import XCTest

/// A small model and data that train in milliseconds a step.
let failureTestModel = [
  "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
  "--train-examples", "256", "--val-examples", "32", "--batch", "16", "--threads", "1", "--eval-every", "0",
]

/// A tmpfs of `megabytes` MB mounted on a fresh folder, unmounted (and removed) when the test ends,
/// however it ends. Needs root (launch/test runs as root).
func mountTemporaryFilesystem(_ test: XCTestCase, megabytes: Int) throws -> URL {
  let dir = try makeTemporaryDirectory(test, "tmpfs")
  let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", dir.path], timeout: 20)
  guard mounted.status == 0 else {
    throw MissingTestDependency("cannot mount a tmpfs (needs root): \(mounted.stderr)")
  }
  // registered after makeTemporaryDirectory's removal, so it runs first (teardown blocks run last-in first-out)
  test.addTeardownBlock { _ = try? run("/bin/umount", ["-l", dir.path], timeout: 20) }
  return dir
}

/// Remounts a tmpfs read-only (root ignores permission bits; a read-only mount it cannot ignore).
func remount(_ dir: URL, _ options: String) throws {
  let result = try run("/bin/mount", ["-o", "remount,\(options)", dir.path], timeout: 20)
  XCTAssertEqual(result.status, 0, result.stderr)
}

/// The step-N folders of a checkpoint folder and anything else it holds but the lock.
func checkpointContents(_ folder: URL) -> [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0 != ".lock" }.sorted()
}

/// The one line a failing command printed on stderr (fails the test when there are more).
func onlyLine(_ result: RunResult, file: StaticString = #filePath, line: UInt = #line) -> String {
  let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
  XCTAssertEqual(lines.count, 1, "one line expected:\n\(result.stderr)", file: file, line: line)
  XCTAssertFalse(result.stderr.contains("NSCocoaErrorDomain"), result.stderr, file: file, line: line)
  return String(lines.first ?? "")
}

final class FullFilesystemTests: XCTestCase {
  /// A 10 MB tmpfs holds one checkpoint of the tiny preset (6.9 MB) but not two: the second save is
  /// refused before it writes anything, naming both sizes and the path; the first is kept, no
  /// `.partial` folder is left, and once there is room the run continues to the same weights.
  func testSaveThatDoesNotFitKeepsThePreviousCheckpoint() throws {
    let disk = try mountTemporaryFilesystem(self, megabytes: 10)
    let dir = try makeTemporaryDirectory(self)
    let ck = disk.appendingPathComponent("ck")
    let base = ["train", "--batch", "16", "--train-examples", "128", "--val-examples", "16", "--threads", "1",
                "--eval-every", "0", "--steps", "10"]
    let args = base + ["--save-every", "5", "--run-dir", dir.appendingPathComponent("run").path, "--checkpoint-dir", ck.path]
    let full = try mixerDist(args)
    XCTAssertEqual(full.status, 1, full.stdout + full.stderr)
    let message = onlyLine(full)
    XCTAssertTrue(message.contains("the checkpoint of step 10 was not saved: not enough space in \(ck.path): the checkpoint needs "), message)
    XCTAssertTrue(message.contains(" MB, the filesystem has ") && message.contains(" free"), message)
    XCTAssertTrue(message.contains("the previous checkpoint \(ck.path)/step-00000005 is kept"), message)
    XCTAssertTrue(message.contains("continue from it with --resume auto"), message)
    XCTAssertEqual(checkpointContents(ck), ["step-00000005"], "no .partial folder left")
    let inspect = try mixerDist(["inspect", ck.appendingPathComponent("step-00000005").path])
    XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)

    // room again: the run continues from step 5 and ends where an uninterrupted run ends
    try remount(disk, "size=30m")
    let resumed = try mixerDist(args + ["--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from \(ck.path)/step-00000005"), resumed.stdout)
    let straight = dir.appendingPathComponent("straight")
    XCTAssertEqual(try mixerDist(base + ["--run-dir", straight.path]).status, 0)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: straight.appendingPathComponent("final-parameters.f32")))
  }
}

final class ReadOnlyFolderTests: XCTestCase {
  /// A run folder on a read-only filesystem: refused before training (status 78) in one line
  /// naming the path and the cause; so is `export` into it.
  func testReadOnlyRunFolderIsOneLine() throws {
    let disk = try mountTemporaryFilesystem(self, megabytes: 1)
    try remount(disk, "ro")
    let dir = try makeTemporaryDirectory(self)
    let run = disk.appendingPathComponent("run")
    let refused = try mixerDist(["train"] + failureTestModel + ["--steps", "2", "--run-dir", run.path])
    XCTAssertEqual(refused.status, 78, refused.stdout + refused.stderr)
    let message = onlyLine(refused)
    XCTAssertTrue(message.contains(run.path) && message.contains("read-only"), message)

    let trained = try mixerDist(["train"] + failureTestModel + ["--steps", "2", "--run-dir", dir.path])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let output = disk.appendingPathComponent("model.npz")
    let export = try mixerDist(["export", dir.path, "--output", output.path])
    XCTAssertNotEqual(export.status, 0)
    let exportMessage = onlyLine(export)
    XCTAssertTrue(exportMessage.contains(disk.path) && exportMessage.contains("read-only"), exportMessage)
  }

  /// A checkpoint folder on a read-only filesystem (a mount turned read-only under a running job
  /// cannot be: the job holds files open there): refused before training, in one line.
  func testReadOnlyCheckpointFolderIsOneLine() throws {
    let disk = try mountTemporaryFilesystem(self, megabytes: 1)
    try FileManager.default.createDirectory(at: disk.appendingPathComponent("ck"), withIntermediateDirectories: true)
    try remount(disk, "ro")
    let dir = try makeTemporaryDirectory(self)
    let ck = disk.appendingPathComponent("ck")
    let refused = try mixerDist(["train"] + failureTestModel + ["--steps", "2", "--run-dir", dir.path, "--checkpoint-dir", ck.path])
    XCTAssertEqual(refused.status, 78, refused.stdout + refused.stderr)
    let message = onlyLine(refused)
    XCTAssertTrue(message.contains(ck.path) && message.lowercased().contains("read-only"), message)
  }
}

final class KilledBeforeFirstSaveTests: XCTestCase {
  /// kill -9 before any checkpoint: `--resume auto` starts the same run again from step 0 (its
  /// run id kept, its records past step 0 dropped) and ends bit-identical to a straight run.
  func testResumeAutoStartsTheSameRunAgain() throws {
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("run")
    let args = ["train"] + failureTestModel + ["--steps", "600", "--log-every", "1"]
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try mixerDistBinary())
    process.arguments = args + ["--run-dir", run.path]
    process.environment = childEnvironment()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    addTeardownBlock { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    let metrics = run.appendingPathComponent("metrics.jsonl")
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning, Date() < deadline,
      ((try? String(contentsOf: metrics, encoding: .utf8)) ?? "").split(separator: "\n").count < 5
    {
      Thread.sleep(forTimeInterval: 0.002)
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationReason, .uncaughtSignal, "killed before the end")
    XCTAssertTrue(checkpointContents(run.appendingPathComponent("checkpoints")).filter { $0.hasPrefix("step-") }.isEmpty)
    let firstID = try XCTUnwrap(runIDs(metrics).first)

    let resumed = try mixerDist(args + ["--run-dir", run.path, "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
    XCTAssertTrue(
      resumed.stdout.contains("--resume auto: run \(firstID) left no checkpoint; starting it again from step 0"),
      resumed.stdout)
    XCTAssertEqual(Set(try runIDs(metrics)), [firstID], "one run, its id kept")
    let steps = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").filter { $0.contains("\"train\"") }.count
    XCTAssertEqual(steps, 600, "the killed run's records were dropped")
    let straight = dir.appendingPathComponent("straight")
    XCTAssertEqual(try mixerDist(args + ["--run-dir", straight.path]).status, 0)
    XCTAssertEqual(
      try Data(contentsOf: run.appendingPathComponent("final-parameters.f32")),
      try Data(contentsOf: straight.appendingPathComponent("final-parameters.f32")))
  }

  func runIDs(_ metrics: URL) throws -> [String] {
    try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").compactMap { line in
      (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["run"] as? String
    }
  }
}

/// A folder of 48 + 8 JPEGs in two classes, and `train/a/broken.jpg`: a JPEG start marker and then
/// nothing a decoder can read.
func writeFolderWithABrokenJPEG(_ dir: URL) throws -> (folder: URL, bad: URL) {
  let data = dir.appendingPathComponent("photos")
  try writeBenchmarkJPEGs(folder: data.appendingPathComponent("train"), count: 48, width: 32, height: 32)
  try writeBenchmarkJPEGs(folder: data.appendingPathComponent("val"), count: 8, width: 32, height: 32)
  let bad = data.appendingPathComponent("train/a/broken.jpg")
  try Data([0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 0x5A, count: 300)).write(to: bad)
  return (data, bad)
}

final class CorruptJPEGTests: XCTestCase {
  /// Real JPEG class folders with one corrupt file met part-way: the run saves the last completed
  /// step, says which file and how to continue, and exits 65 (a rerun would meet the same file).
  /// With the file removed, `--resume auto` continues from that checkpoint to the end.
  func testCorruptJPEGMetPartWaySavesTheLastStep() throws {
    let dir = try makeTemporaryDirectory(self)
    let (data, bad) = try writeFolderWithABrokenJPEG(dir)
    let ck = dir.appendingPathComponent("ck")
    let args = ["train"] + Array(failureTestModel.prefix(10)) + [
      "--data", "folder:\(data.path)", "--classes", "2", "--batch", "8", "--steps", "24", "--threads", "1", "--eval-every", "0",
      "--seed", "3", "--run-dir", dir.appendingPathComponent("run").path, "--checkpoint-dir", ck.path,
    ]
    let failed = try mixerDist(args)
    XCTAssertEqual(failed.status, 65, failed.stdout + failed.stderr)
    let message = onlyLine(failed)
    XCTAssertTrue(message.contains("broken.jpg"), message)
    let saved = try XCTUnwrap(checkpointContents(ck).last, "a checkpoint was left")
    let step = try XCTUnwrap(Int(saved.dropFirst("step-".count)))
    XCTAssertGreaterThan(step, 0)
    XCTAssertTrue(message.contains("at step \(step): "), message)
    XCTAssertTrue(
      message.contains("saved the last completed step \(step) as \(ck.path)/\(saved); continue with --resume auto"), message)
    XCTAssertEqual(checkpointContents(ck), [saved])

    try FileManager.default.removeItem(at: bad)
    let resumed = try mixerDist(args + ["--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from \(ck.path)/\(saved) (step \(step)"), resumed.stdout)
    XCTAssertTrue(FileManager.default.fileExists(atPath: ck.appendingPathComponent("step-00000024").path))
  }
}

extension CorruptJPEGTests {
  /// Under mpirun the corrupt JPEG is met by one rank only: it still takes part in the step's
  /// reductions and marks its batch failed, so every rank stops before that step's update and all
  /// save the last completed step together (a complete 2-rank checkpoint, plain and `--exact`);
  /// the failing rank names the file, the others name the rank; status 65. Without the bad file
  /// the run resumes from that checkpoint to the end.
  func testCorruptJPEGOnOneRankSavesOnEveryRank() throws {
    let dir = try makeTemporaryDirectory(self)
    var (data, bad) = try writeFolderWithABrokenJPEG(dir)
    for (name, extra) in [("plain", [String]()), ("exact", ["--exact", "--micro-batch", "2"])] {
      if name != "plain" { (data, bad) = try writeFolderWithABrokenJPEG(dir) }
      let ck = dir.appendingPathComponent("ck-\(name)")
      let args = ["train"] + Array(failureTestModel.prefix(10)) + [
        "--data", "folder:\(data.path)", "--classes", "2", "--batch", "8", "--steps", "24", "--threads", "1",
        "--eval-every", "0", "--seed", "3", "--timeout", "60", "--run-dir", dir.appendingPathComponent("run-\(name)").path,
        "--checkpoint-dir", ck.path,
      ] + extra
      let failed = try mpirunMixerDist(ranks: 2, args)
      let output = failed.stdout + failed.stderr
      XCTAssertEqual(failed.status, 65, "\(name): \(output)")
      let saved = try XCTUnwrap(checkpointContents(ck).last, "\(name): a checkpoint was left: \(output)")
      XCTAssertEqual(checkpointContents(ck), [saved], name)
      let step = try XCTUnwrap(Int(saved.dropFirst("step-".count)))
      XCTAssertGreaterThan(step, 0, name)
      XCTAssertTrue(output.contains("broken.jpg"), "\(name): \(output)")
      XCTAssertTrue(output.contains("could not make its batch of step \(step)"), "\(name): \(output)")
      XCTAssertTrue(output.contains("saved the last completed step \(step) as \(ck.path)/\(saved)"), "\(name): \(output)")
      let inspect = try mixerDist(["inspect", ck.appendingPathComponent(saved).path])
      XCTAssertTrue(inspect.stdout.contains("saved by 2 rank(s)"), "\(name): \(inspect.stdout)")

      try FileManager.default.removeItem(at: bad)
      let resumed = try mpirunMixerDist(ranks: 2, args + ["--resume", "auto"])
      XCTAssertEqual(resumed.status, 0, "\(name): \(resumed.stdout + resumed.stderr)")
      XCTAssertTrue(resumed.stdout.contains("resumed from \(ck.path)/\(saved) (step \(step)"), "\(name): \(resumed.stdout)")
    }
  }
}

final class NonFiniteLossTests: XCTestCase {
  /// A learning rate that blows the parameters up: the loss turns non-finite at step 1, the
  /// parameters of the last completed step are saved as a normal checkpoint, and one line says so.
  func testNonFiniteLossSavesTheLastCompletedStep() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let result = try mixerDist(["train"] + failureTestModel + [
      "--steps", "20", "--lr", "1e30", "--warmup", "0", "--run-dir", dir.path, "--checkpoint-dir", ck.path,
    ])
    XCTAssertEqual(result.status, 65, result.stdout + result.stderr)
    let message = onlyLine(result)
    XCTAssertTrue(message.contains("the loss is "), message)
    let saved = try XCTUnwrap(checkpointContents(ck).last)
    let step = try XCTUnwrap(Int(saved.dropFirst("step-".count)))
    XCTAssertGreaterThan(step, 0)
    XCTAssertTrue(message.contains("at step \(step): lower --lr"), message)
    XCTAssertTrue(message.contains("saved the last completed step \(step) as \(ck.path)/\(saved); continue with --resume auto"), message)
    let inspect = try mixerDist(["inspect", ck.appendingPathComponent(saved).path])
    XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
  }
}

extension NonFiniteLossTests {
  /// Under mpirun every rank sees the same reduced loss, so all save the last completed step
  /// together (a complete 2-rank checkpoint) before the job ends with status 65.
  func testTwoRanksSaveTogether() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let result = try mpirunMixerDist(ranks: 2, ["train"] + failureTestModel + [
      "--steps", "20", "--lr", "1e30", "--warmup", "0", "--run-dir", dir.path, "--checkpoint-dir", ck.path, "--timeout", "60",
    ])
    XCTAssertEqual(result.status, 65, result.stdout + result.stderr)
    XCTAssertTrue(result.stderr.contains("saved the last completed step"), result.stderr)
    let saved = try XCTUnwrap(checkpointContents(ck).last)
    let inspect = try mixerDist(["inspect", ck.appendingPathComponent(saved).path])
    XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
    XCTAssertTrue(inspect.stdout.contains("saved by 2 rank(s)"), inspect.stdout)
  }
}

final class ResilientRestartTests: XCTestCase {
  var resilient: String { packageRoot.appendingPathComponent("launch/resilient").path }

  /// The command: a fault at step 30 of a run with no periodic checkpoints. The failure
  /// saves step 30, the one restart resumes there (the fault fires once: not in a run resumed at
  /// its step) and the job finishes bit-identical to a straight run.
  func testFailAtStepFinishesAfterOneRestart() throws {
    let dir = try makeTemporaryDirectory(self)
    let args = ["train"] + failureTestModel + ["--steps", "40"]
    let job = try MixerDistCLITests.run(
      resilient,
      ["--max-restarts", "2", "--", try mixerDistBinary()] + args + [
        "--run-dir", dir.appendingPathComponent("run").path, "--resume", "auto", "--fail-at-step", "30",
      ])
    XCTAssertEqual(job.status, 0, job.stdout + job.stderr)
    XCTAssertTrue(job.stderr.contains("injected fault at step 30"), job.stderr)
    XCTAssertTrue(job.stderr.contains("saved the last completed step 30"), job.stderr)
    XCTAssertTrue(job.stderr.contains("restart 1 of 2"), job.stderr)
    XCTAssertFalse(job.stderr.contains("restart 2 of 2"), job.stderr)
    XCTAssertEqual(try mixerDist(args + ["--run-dir", dir.appendingPathComponent("straight").path]).status, 0)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("straight/final-parameters.f32")))
  }

  /// A command refused before training (status 78) is not restarted: a rerun is refused again.
  func testRefusalIsNotRetried() throws {
    let dir = try makeTemporaryDirectory(self)
    let job = try MixerDistCLITests.run(
      resilient,
      ["--max-restarts", "2", "--", try mixerDistBinary(), "train"] + failureTestModel + [
        "--steps", "4", "--keep=-1", "--run-dir", dir.path, "--resume", "auto",
      ])
    XCTAssertEqual(job.status, 78, job.stderr)
    XCTAssertTrue(job.stderr.contains("--keep must be non-negative"), job.stderr)
    XCTAssertTrue(job.stderr.contains("refused before training (status 78)"), job.stderr)
    XCTAssertFalse(job.stderr.contains("restart 1"), job.stderr)
  }

  /// The fault-injection flags are for tests: not in `train --help`.
  func testFaultFlagsAreHidden() throws {
    let help = try mixerDist(["train", "--help"])
    XCTAssertEqual(help.status, 0)
    for flag in [
      "--fail-at-step", "--fail-rank", "--stall-at-step", "--kill-in-save-at-step", "--fail-in-save-at-step", "--slow-rank",
      "--slow-ms",
    ] {
      XCTAssertFalse(help.stdout.contains(flag), "\(flag) is in train --help")
    }
    XCTAssertTrue(help.stdout.contains("--save-every-minutes"), help.stdout)
  }
}

final class PeriodicSaveTests: XCTestCase {
  /// `--save-every-minutes` saves by training time (here every 0.06 s), kept by --keep's rules,
  /// and does not change the weights.
  func testWallClockCheckpointsKeepTheWeights() throws {
    let dir = try makeTemporaryDirectory(self)
    let args = ["train"] + failureTestModel + ["--steps", "1500"]
    let ck = dir.appendingPathComponent("ck")
    let timed = try mixerDist(args + [
      "--save-every-minutes", "0.001", "--keep", "3", "--run-dir", dir.appendingPathComponent("timed").path,
      "--checkpoint-dir", ck.path,
    ])
    XCTAssertEqual(timed.status, 0, timed.stderr)
    let saves = timed.stdout.split(separator: "\n").filter { $0.hasPrefix("checkpoint ") }
    XCTAssertGreaterThan(saves.count, 2, "saved by the clock before the end: \(timed.stdout)")
    XCTAssertEqual(checkpointContents(ck).count, 3, "--keep 3: \(checkpointContents(ck))")
    let off = try mixerDist(args + ["--save-every-minutes", "0", "--run-dir", dir.appendingPathComponent("off").path])
    XCTAssertEqual(off.status, 0, off.stderr)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("timed/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("off/final-parameters.f32")))
  }

  /// Two ranks save the same steps (rank 0's clock decides, here every 0.06 s): every checkpoint
  /// is complete.
  func testTwoRanksSaveTheSameSteps() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let result = try mpirunMixerDist(ranks: 2, ["train"] + failureTestModel + [
      "--steps", "2000", "--save-every-minutes", "0.001", "--run-dir", dir.appendingPathComponent("run").path,
      "--checkpoint-dir", ck.path, "--timeout", "60",
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    let folders = checkpointContents(ck)
    XCTAssertGreaterThan(folders.count, 2, "\(folders)")
    for folder in folders {
      let inspect = try mixerDist(["inspect", ck.appendingPathComponent(folder).path])
      XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
      XCTAssertTrue(inspect.stdout.contains("saved by 2 rank(s)"), inspect.stdout)
    }
  }
}

final class ResumedTrainingTimeTests: XCTestCase {
  /// The training time of a resumed run adds the checkpoint's: in the manifest, in the metrics
  /// (which the report's total time reads) and in the console's "done" line.
  func testTrainingTimeSumsOverSegments() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let args = ["train"] + failureTestModel + ["--run-dir", dir.path, "--checkpoint-dir", ck.path, "--log-every", "1"]
    XCTAssertEqual(try mixerDist(args + ["--steps", "200"]).status, 0)
    let first = try trainingSeconds(ck.appendingPathComponent("step-00000200"))
    XCTAssertGreaterThan(first, 0)
    let resumed = try mixerDist(args + ["--steps", "220", "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    let total = try trainingSeconds(ck.appendingPathComponent("step-00000220"))
    XCTAssertGreaterThan(total, first)
    let records = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    let last = try XCTUnwrap(records.last { $0["kind"] as? String == "train" }?["seconds"] as? Double)
    XCTAssertGreaterThan(last, first, "the metrics' seconds go on from the checkpoint's")
  }

  func trainingSeconds(_ folder: URL) throws -> Double {
    let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("manifest.json")))
    return try XCTUnwrap((manifest as? [String: Any])?["trainingSeconds"] as? Double)
  }
}
