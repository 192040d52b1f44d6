// Surviving a dead rank: launch/resilient reruns the MPI job from the newest valid checkpoint
// after one rank is SIGKILLed at a random step, and the restarted run ends with parameters
// bit-identical to an uninterrupted run. Also a save killed part-way is never loaded.

import MixerTestSupport
import XCTest

final class ResilienceTests: XCTestCase {
  let small = [
    "--hidden", "32", "--blocks", "2", "--tokens-mlp", "16", "--channels-mlp", "64", "--patch", "8",
    "--train-examples", "512", "--val-examples", "64", "--batch", "16", "--threads", "1",
    "--log-every", "1", "--stochastic-depth", "0.2",
  ]

  /// The PIDs of the mixer-dist rank processes whose command line mentions `marker`.
  func rankProcesses(_ marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
      guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
        comm.trimmingCharacters(in: .whitespacesAndNewlines) == "mixer-dist",
        let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
      else { return false }
      return String(decoding: cmdline, as: UTF8.self).contains(marker)
    }
  }

  /// The highest step recorded in a run folder's metrics.jsonl.
  func lastLoggedStep(_ run: URL) -> Int {
    guard let text = try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8) else { return 0 }
    return text.split(separator: "\n").compactMap { line -> Int? in
      guard let range = line.range(of: "\"step\":") else { return nil }
      return Int(line[range.upperBound...].prefix { $0.isNumber })
    }.max() ?? 0
  }

  func testKilledRankIsRestartedFromCheckpointBitIdentically() throws {
    guard let mpirun = which("mpirun") else { throw MissingTestDependency("mpirun is not on the PATH (launch/setup --deps)") }
    let binary = try mixerDistBinary()
    let dir = try makeTemporaryDirectory(self)
    let steps = 240
    func command(_ name: String) -> [String] {
      [mpirun, "-n", "2", "--oversubscribe", "--bind-to", "none", binary, "train"] + small + [
        "--steps", "\(steps)", "--run-dir", dir.appendingPathComponent(name).path,
        "--checkpoint-dir", dir.appendingPathComponent("\(name)-ck").path, "--save-every", "20",
        "--resume", "auto",
        // paced (a sleep, no bits change) so that a fast host is still mid-run at the kill step
        "--slow-rank", "1", "--slow-ms", "8",
      ]
    }
    let reference = try MixerDistCLITests.run(packageRoot.appendingPathComponent("launch/resilient").path, ["--max-restarts", "0", "--"] + command("straight"))
    XCTAssertEqual(reference.status, 0, reference.stderr)

    // the same job, with one rank SIGKILLed at a random step
    let killStep = Int.random(in: 30...150)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: packageRoot.appendingPathComponent("launch/resilient").path)
    process.arguments = ["--max-restarts", "2", "--"] + command("killed")
    process.environment = childEnvironment()
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let runFolder = dir.appendingPathComponent("killed")
    let deadline = Date().addingTimeInterval(120)
    var killed: Int32?
    while killed == nil && Date() < deadline && process.isRunning {
      if lastLoggedStep(runFolder) >= killStep, let victim = rankProcesses(runFolder.path).randomElement() {
        kill(victim, SIGKILL)
        killed = victim
      }
      Thread.sleep(forTimeInterval: 0.01)
    }
    let stderrText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    XCTAssertNotNil(killed, "the job finished before step \(killStep); nothing was killed")
    XCTAssertEqual(process.terminationStatus, 0, stderrText)
    XCTAssertTrue(stderrText.contains("restart 1 of 2"), stderrText)
    let a = try Data(contentsOf: dir.appendingPathComponent("straight/final-parameters.f32"))
    let b = try Data(contentsOf: runFolder.appendingPathComponent("final-parameters.f32"))
    XCTAssertEqual(a, b, "killed at step ≥ \(killStep), restarted: parameters must be bit-identical")
  }

  func testSaveKilledPartWayIsNeverLoaded() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let args = ["train"] + small + ["--steps", "30", "--run-dir", dir.path, "--checkpoint-dir", ck.path, "--save-every", "10"]
    let died = try mixerDist(args + ["--kill-in-save-at-step", "20"])
    XCTAssertNotEqual(died.status, 0)
    let names = try FileManager.default.contentsOfDirectory(atPath: ck.path).sorted()
    XCTAssertEqual(names, [".lock", ".partial-step-00000020", "step-00000010"], "the lock file stays; the lock went with the process")
    let inspect = try mixerDist(["inspect", ck.path])
    XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
    XCTAssertTrue(inspect.stdout.contains("step-00000010: valid"), inspect.stdout)
    XCTAssertFalse(inspect.stdout.contains("partial"), inspect.stdout)
    let resumed = try mixerDist(args + ["--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from \(ck.path)/step-00000010"), resumed.stdout)
    let straightDir = try makeTemporaryDirectory(self)
    let straight = try mixerDist(["train"] + small + ["--steps", "30", "--run-dir", straightDir.path])
    XCTAssertEqual(straight.status, 0)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("final-parameters.f32")),
      try Data(contentsOf: straightDir.appendingPathComponent("final-parameters.f32")))
    // the partial folder was cleared by the next save
    XCTAssertFalse(FileManager.default.fileExists(atPath: ck.appendingPathComponent(".partial-step-00000020").path))
  }

  func testInspectNamesACorruptFile() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    XCTAssertEqual(try mixerDist(["train"] + small + ["--steps", "4", "--run-dir", dir.path, "--checkpoint-dir", ck.path]).status, 0)
    let file = ck.appendingPathComponent("step-00000004/optimizer-rank-00000.safetensors")
    var bytes = try Data(contentsOf: file)
    bytes[100] ^= 1
    try bytes.write(to: file)
    let result = try mixerDist(["inspect", ck.appendingPathComponent("step-00000004").path])
    XCTAssertEqual(result.status, 1)
    XCTAssertTrue(result.stdout.contains("optimizer-rank-00000.safetensors: SHA-256 mismatch"), result.stdout)
  }
}

/// Resharding for real: a checkpoint saved by 2 mpirun ranks under ZeRO-1 resumes on 1 plain
/// process (and one saved by 1 resumes on 4 ranks), and training goes on to the end.
final class ReshardingCLITests: XCTestCase {
  func testSaveOnTwoRanksResumeOnOneAndBack() throws {
    let dir = try makeTemporaryDirectory(self)
    let common = ["train"] + tinyModelFlags + [
      "--train-examples", "256", "--val-examples", "32", "--batch", "16", "--threads", "1",
      "--checkpoint-dir", dir.appendingPathComponent("ck").path, "--run-dir", dir.appendingPathComponent("run").path,
    ]
    let saved = try mpirunMixerDist(ranks: 2, common + ["--steps", "6", "--zero", "1"])
    XCTAssertEqual(saved.status, 0, saved.stderr)
    let inspect = try mixerDist(["inspect", dir.appendingPathComponent("ck").path])
    XCTAssertTrue(inspect.stdout.contains("saved by 2 rank(s), ZeRO stage 1"), inspect.stdout)
    let resumed = try mixerDist(common + ["--steps", "10", "--resume", "auto"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from") && resumed.stdout.contains("saved by 2 rank(s)"), resumed.stdout)
    let four = try mpirunMixerDist(ranks: 4, common + ["--steps", "14", "--resume", "auto", "--zero", "1"])
    XCTAssertEqual(four.status, 0, four.stderr)
    XCTAssertTrue(four.stdout.contains("(step 10, saved by 1 rank(s))"), four.stdout)
  }
}
