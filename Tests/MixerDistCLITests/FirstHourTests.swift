// The friction a new user meets in the first hour (issue 24), each reproduced as the user met it
// with the real binary on real files: a symlink loop in a class folder, a relative data path read
// back from another directory, a warm-up longer than the run, the crop flags and the augmentation
// line, a bad value in a --config file, --version, the data kinds in --help, and Ctrl-C of a job
// under launch/mpirun ending with the ranks' 75.

import Foundation
import MixerTestSupport
import XCTest

/// Two classes of 16×16 PNGs: train/{red,blue}/0..3.png and val/{red,blue}/0..1.png.
func writeTwoClassFolder(_ root: URL) throws {
  for (c, name) in ["red", "blue"].enumerated() {
    for (split, count) in [("train", 4), ("val", 2)] {
      let folder = root.appendingPathComponent("\(split)/\(name)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      for i in 0..<count {
        var rgb = [UInt8](repeating: 20, count: 16 * 16 * 3)
        for p in 0..<(16 * 16) { rgb[p * 3 + 2 * c] = UInt8(120 + i * 20 + (split == "val" ? 7 : 0)) }
        try pngFile(width: 16, height: 16, rgb: rgb).write(to: folder.appendingPathComponent("\(i).png"))
      }
    }
  }
}

/// Train flags of a one-block model on 16 px images, one step.
let oneStepFlags = tinyModelFlags + ["--image-size", "16", "--batch", "4", "--steps", "1", "--threads", "1", "--eval-every", "0"]

final class FolderLinkCLITests: XCTestCase {
  /// `ln -s .. train/red/loop` made a 60-image folder train as 2,460 images.
  func testLoopAndLinksCountEachImageOnce() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("colours")
    try writeTwoClassFolder(root)
    try FileManager.default.createSymbolicLink(
      atPath: root.appendingPathComponent("train/red/loop").path, withDestinationPath: "..")
    // a link to a sibling class (blue is listed before red: already listed) and a link to a file
    // of another class (followed; the file counts once, in its own class)
    try FileManager.default.createSymbolicLink(
      atPath: root.appendingPathComponent("train/blue/also.png").path, withDestinationPath: "../red/0.png")
    try FileManager.default.createSymbolicLink(
      atPath: root.appendingPathComponent("train/red/blue-too").path, withDestinationPath: "../blue")
    let result = try mixerDist(["train"] + oneStepFlags + ["--data", "folder:\(root.path)", "--run-dir", dir.appendingPathComponent("run").path])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stdout.contains("(8 train / 4 val)"), result.stdout)
    XCTAssertTrue(
      result.stdout.contains(
        "symbolic links: 1 followed, 2 skipped (1 into a directory cycle, 1 to a folder already listed); "
          + "1 file reached twice counted once"),
      result.stdout)
  }
}

final class DataPathCLITests: XCTestCase {
  /// The data path was stored as given: `eval RUN` from another directory failed with
  /// "--data digits: no such directory".
  func testRelativeDataPathIsStoredAbsoluteAndEvalWorksFromElsewhere() throws {
    let dir = try makeTemporaryDirectory(self)
    try writeTwoClassFolder(dir.appendingPathComponent("colours"))
    let runFolder = dir.appendingPathComponent("run")
    let binary = try mixerDistBinary()
    let quoted = (oneStepFlags + ["--data", "folder:colours", "--run-dir", runFolder.path]).joined(separator: " ")
    let trained = try MixerDistCLITests.run("/bin/sh", ["-c", "cd '\(dir.path)' && exec '\(binary)' train \(quoted)"])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: runFolder.appendingPathComponent("config.json"))) as? [String: Any]
    XCTAssertEqual(config?["data"] as? String, "folder:\(dir.path)/colours")
    let evaluated = try MixerDistCLITests.run("/bin/sh", ["-c", "cd / && exec '\(binary)' eval '\(runFolder.path)'"])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    XCTAssertTrue(evaluated.stdout.contains("(4 images"), evaluated.stdout)
  }
}

final class WarmupCLITests: XCTestCase {
  /// `--steps 10` with a 60-step warm-up never reached the peak learning rate, silently.
  func testWarmupLongerThanTheRunIsAnErrorWithTheFix() throws {
    let dir = try makeTemporaryDirectory(self)
    let given = try mixerDist(["train"] + tinyModelFlags + ["--steps", "10", "--warmup", "20", "--run-dir", dir.path])
    XCTAssertEqual(given.status, 78)  // refused before training
    XCTAssertTrue(given.stderr.contains("at least as long as the run (--steps 10)"), given.stderr)
    XCTAssertTrue(given.stderr.contains("--warmup 0.1"), given.stderr)
    XCTAssertEqual(given.stderr.split(separator: "\n").count, 1, given.stderr)
  }

  func testFractionOfTheStepsAndDefaultWarning() throws {
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("fraction")
    let fraction = try mixerDist(
      ["train"] + tinyModelFlags + ["--train-examples", "64", "--val-examples", "16", "--batch", "8", "--threads", "1",
                                    "--steps", "10", "--warmup", "0.3", "--run-dir", run.path])
    XCTAssertEqual(fraction.status, 0, fraction.stderr)
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("config.json"))) as? [String: Any]
    XCTAssertEqual(config?["warmupSteps"] as? Int, 3)
    // the default warm-up (60 steps) on a 10-step run: trained as ever, with a warning that says what to pass
    let plain = try mixerDist(
      ["train"] + tinyModelFlags + ["--train-examples", "64", "--val-examples", "16", "--batch", "8", "--threads", "1",
                                    "--steps", "10", "--run-dir", dir.appendingPathComponent("default").path])
    XCTAssertEqual(plain.status, 0, plain.stderr)
    XCTAssertTrue(plain.stdout.contains("warning: the default warm-up of 60 steps is at least as long as the run"), plain.stdout)
    let bad = try mixerDist(["train", "--warmup", "1.5"])
    XCTAssertEqual(bad.status, 78)
    XCTAssertTrue(bad.stderr.contains("below 1"), bad.stderr)
  }
}

final class CropFlagsCLITests: XCTestCase {
  /// The random-crop scale could not be set; the start-up line did not say which augmentation was on.
  func testCropFlagsAndTheAugmentationLine() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("colours")
    try writeTwoClassFolder(root)
    let base = ["train"] + oneStepFlags + ["--data", "folder:\(root.path)"]
    let defaults = try mixerDist(base + ["--run-dir", dir.appendingPathComponent("a").path])
    XCTAssertEqual(defaults.status, 0, defaults.stderr)
    XCTAssertTrue(defaults.stdout.contains("augmentation: random crop (area 5-100%, ratio 0.75-1.33), flip\n"), defaults.stdout)
    let set = try mixerDist(
      base + ["--crop-scale", "0.5,1", "--crop-ratio", "1,1", "--mixup", "0.2", "--run-dir", dir.appendingPathComponent("b").path])
    XCTAssertEqual(set.status, 0, set.stderr)
    XCTAssertTrue(set.stdout.contains("augmentation: random crop (area 50-100%, ratio 1-1), flip, mixup 0.2"), set.stdout)
    let noFlip = try mixerDist(base + ["--no-flip", "--run-dir", dir.appendingPathComponent("e").path])
    XCTAssertTrue(noFlip.stdout.contains("augmentation: random crop (area 5-100%, ratio 0.75-1.33)\n"), noFlip.stdout)
    let none = try mixerDist(base + ["--no-augment", "--run-dir", dir.appendingPathComponent("c").path])
    XCTAssertTrue(none.stdout.contains("augmentation: none"), none.stdout)
    for (flag, value) in [("--crop-scale", "0.8,0.5"), ("--crop-scale", "0,1"), ("--crop-ratio", "4/3"), ("--crop-ratio", "a,b")] {
      let bad = try mixerDist(base + [flag, value, "--run-dir", dir.appendingPathComponent("d").path])
      XCTAssertEqual(bad.status, 78, "\(flag) \(value)")
      XCTAssertTrue(bad.stderr.contains(flag), bad.stderr)
      XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
    }
  }
}

final class ConfigValueCLITests: XCTestCase {
  /// `steps: many` in a --config file did not name the file.
  func testBadValueNamesTheFileAndTheKey() throws {
    let dir = try makeTemporaryDirectory(self)
    for (key, value) in [("steps", "many"), ("decay", "sideways"), ("warmup", "lots")] {
      let yaml = dir.appendingPathComponent("\(key).yaml")
      try "lr: 0.001\n\(key): \(value)\n".write(to: yaml, atomically: true, encoding: .utf8)
      let result = try mixerDist(["train", "--config", yaml.path, "--run-dir", dir.path])
      XCTAssertEqual(result.status, 64, "a usage error, as the flag itself")
      XCTAssertTrue(result.stderr.contains("\(yaml.path): key '\(key)'"), result.stderr)
      XCTAssertTrue(result.stderr.contains(value), result.stderr)
      XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
    }
  }
}

final class VersionCLITests: XCTestCase {
  func testVersionNamesTheCommit() throws {
    let result = try mixerDist(["--version"])
    XCTAssertEqual(result.status, 0, result.stderr)
    let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    XCTAssertNotNil(
      line.range(of: "^mixer-dist [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit [0-9a-f]{40}(-modified)?\\)$", options: .regularExpression),
      "a build in a git clone knows its commit: \(line)")
  }

  /// Where the commit comes from without a clone: the environment, a `git archive` tarball's
  /// filled-in tools/build-commit, else "unknown".
  func testBuildInfoScriptOutsideAClone() throws {
    let dir = try makeTemporaryDirectory(self)
    let tree = dir.appendingPathComponent("tree")
    try FileManager.default.createDirectory(at: tree.appendingPathComponent("tools"), withIntermediateDirectories: true)
    let script = packageRoot.appendingPathComponent("tools/build-info.sh").path
    func commit(_ recorded: String, environment: [String: String] = [:]) throws -> String {
      try recorded.write(to: tree.appendingPathComponent("tools/build-commit"), atomically: true, encoding: .utf8)
      let out = dir.appendingPathComponent("out")
      let result = try MixerDistCLITests.run("/bin/sh", [script, tree.path, out.path], environment: environment)
      XCTAssertEqual(result.status, 0, result.stderr)
      return try String(contentsOf: out.appendingPathComponent("BuildInfo.swift"), encoding: .utf8)
    }
    let hash = String(repeating: "ab12", count: 10)
    XCTAssertTrue(try commit("$Format:%H$\n").contains("let buildCommit = \"unknown\""))
    XCTAssertTrue(try commit(hash + "\n").contains("let buildCommit = \"\(hash)\""))
    XCTAssertTrue(try commit(hash + "\n", environment: ["MIXER_BUILD_COMMIT": "v1-ci"]).contains("\"v1-ci\""))
    // and `git archive` fills tools/build-commit in (export-subst in .gitattributes)
    guard which("git") != nil else { throw MissingTestDependency("git is not on the PATH") }
    let archived = try MixerDistCLITests.run(
      "/bin/sh", ["-c", "cd '\(packageRoot.path)' && git archive HEAD tools/build-commit | tar -xO"])
    XCTAssertEqual(archived.status, 0, archived.stderr)
    XCTAssertNotNil(
      archived.stdout.range(of: "^[0-9a-f]{40}\n$", options: .regularExpression), "archived: \(archived.stdout)")
  }
}

final class HelpDataKindsTests: XCTestCase {
  /// `train --help` left `wds` out of the --data kinds.
  func testTrainHelpListsEveryDataKind() throws {
    let result = try mixerDist(["train", "--help"])
    XCTAssertEqual(result.status, 0)
    let help = result.stdout.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
    for kind in ["shapes", "folder", "cifar10", "cifar100", "mnist", "fashion-mnist", "segshapes", "segfolder", "wds"] {
      XCTAssertTrue(help.contains(" \(kind) (") || help.contains(" \(kind),"), "\(kind) missing from: \(help)")
    }
  }
}

final class MPIStopCLITests: XCTestCase {
  /// `mpirun ... train` stopped with Ctrl-C printed "(exit status 75)" but exited 1.
  func testCtrlCUnderLaunchMpirunSavesAndExits75() throws {
    try stopUnderLaunchMpirun(toGroup: false)
  }

  /// A terminal's Ctrl-C reaches the whole foreground process group: it also ended the script's
  /// `sleep` between its checks of mpirun, and `set -e` made the script exit 130 at once, while
  /// mpirun was still saving.
  func testCtrlCToTheProcessGroupUnderLaunchMpirunSavesAndExits75() throws {
    try stopUnderLaunchMpirun(toGroup: true)
  }

  func stopUnderLaunchMpirun(toGroup: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
    let dir = try makeTemporaryDirectory(self)
    let runFolder = dir.appendingPathComponent("run")
    let arguments = ["-n", "2", "--", "train"] + tinyModelFlags + [
      "--train-examples", "512", "--val-examples", "32", "--batch", "16", "--threads", "1", "--log-every", "50",
      "--eval-every", "0", "--steps", "100000", "--run-dir", runFolder.path,
    ]
    let result = try MixerDistCLITests.run(
      packageRoot.appendingPathComponent("launch/mpirun").path, arguments,
      environment: ["MIXER_DIST_BIN": try mixerDistBinary()], timeout: 120, signals: [(6, SIGINT)], toGroup: toGroup)
    XCTAssertFalse(result.timedOut, file: file, line: line)
    XCTAssertEqual(result.status, 75, result.stdout + result.stderr, file: file, line: line)
    XCTAssertTrue(result.stdout.contains("SIGUSR1: stopped after step"), result.stdout, file: file, line: line)
    let checkpoints = try FileManager.default.contentsOfDirectory(atPath: runFolder.appendingPathComponent("checkpoints").path)
    XCTAssertEqual(checkpoints.filter { $0.hasPrefix("step-") }.count, 1, "\(checkpoints)", file: file, line: line)
  }
}

extension LostNodeTests {
  /// Plain `mpirun` (not launch/mpirun) waited more than 400 s after the watchdog fired when a
  /// host was lost for good. With the per-user MCA file `launch/setup --mca-params` writes, the
  /// same plain mpirun line ends in bounded time and leaves nothing on the reachable hosts.
  func testPlainMpirunWithSetupMCAParamsEndsOnALostHost() throws {
    let cluster = try LocalCluster(self, hosts: 3)
    let dir = try makeTemporaryDirectory(self)
    let home = dir.appendingPathComponent("home")
    try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
    let setup = try MixerDistCLITests.run(packageRoot.appendingPathComponent("launch/setup").path, ["--mca-params"], environment: ["HOME": home.path])
    XCTAssertEqual(setup.status, 0, setup.stderr)
    let written = try String(contentsOf: home.appendingPathComponent(".openmpi/mca-params.conf"), encoding: .utf8)
    XCTAssertTrue(written.contains("oob_tcp_keepalive_time = 10"), written)
    // the options a local cluster needs (its launch agent, interfaces), as the hostfile lists them
    // for launch/mpirun: a real cluster needs none of them
    let hostfileText = try String(contentsOfFile: cluster.hostfile, encoding: .utf8)
    let clusterOptions = hostfileText.split(separator: "\n").filter { $0.hasPrefix("# launch/mpirun-options:") }
      .flatMap { $0.dropFirst("# launch/mpirun-options:".count).split(separator: " ").map(String.init) }
    XCTAssertFalse(clusterOptions.contains { $0.contains("keepalive") }, "the keepalive comes from the file: \(clusterOptions)")
    guard let mpirun = which("mpirun") else { throw MissingTestDependency("mpirun is not on the PATH") }
    let job = try Background(
      mpirun,
      ["-n", "3", "--hostfile", cluster.hostfile] + clusterOptions
        + ["-x", "OPENBLAS_NUM_THREADS=1", try mixerDistBinary()] + arguments(dir, steps: 100_000, batch: 24, timeout: 30),
      environment: ["HOME": home.path, "OPENBLAS_NUM_THREADS": "1"], folder: dir)
    XCTAssertTrue(waitForStep(20, run: dir.appendingPathComponent("run"), while: job), "never reached step 20: \(job.errors)")
    let down = try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "3", "down"], timeout: 30)
    XCTAssertEqual(down.status, 0, down.stderr)
    let cut = Date()
    let ended = job.wait(seconds: 30 + 60)
    let seconds = Date().timeIntervalSince(cut)
    print("PlainMpirun: link of host 3 down: plain mpirun ended after \(String(format: "%.1f", seconds)) s (--timeout 30)")
    XCTAssertTrue(ended, "plain mpirun still running \(seconds) s after the link went down: \(job.errors)")
    let left = cluster.waitUntilEmpty(seconds: 10)
    for host in [0, 1] {
      XCTAssertEqual(left[host], [], "host \(host + 1) still runs processes: \(left)")
    }
    if !ended { kill(job.process.processIdentifier, SIGKILL) }
  }
}

final class MPIErrorBannerCLITests: XCTestCase {
  /// A clean one-line error under mpirun was followed by OpenMPI's MPI_ABORT banner (or its
  /// ORTE_ERROR_LOG lines). Settings errors, every rank's alike, now end before MPI starts: one
  /// line from the first rank. (OpenMPI's own "exited with non-zero status" notice remains.)
  func testSettingsErrorUnderMpirunIsOneLineWithoutMPIAbort() throws {
    let dir = try makeTemporaryDirectory(self)
    for (extra, message) in [
      (["--data", "folder:\(dir.path)/missing"], "image folder \(dir.path)/missing does not exist"),
      (["--lr=-1"], "learning rate must be non-negative"),
      (["--batch", "15"], "global batch 15 does not divide by 2 ranks"),
    ] {
      let result = try mpirunMixerDist(ranks: 2, ["train", "--steps", "10", "--run-dir", dir.path] + extra, timeout: 60)
      XCTAssertEqual(result.status, 78, result.stderr)
      XCTAssertEqual(result.stderr.components(separatedBy: "mixer-dist: error: ").count, 2, result.stderr)
      XCTAssertTrue(result.stderr.contains(message), result.stderr)
      XCTAssertFalse(result.stderr.contains("MPI_ABORT"), result.stderr)
      XCTAssertFalse(result.stderr.contains("ORTE_ERROR_LOG"), result.stderr)
    }
    // a bad --config file: a usage error (64), said by the first rank only
    let yaml = dir.appendingPathComponent("bad.yaml")
    try "steps: many\n".write(to: yaml, atomically: true, encoding: .utf8)
    let config = try mpirunMixerDist(ranks: 2, ["train", "--config", yaml.path, "--run-dir", dir.path], timeout: 60)
    XCTAssertEqual(config.status, 64, config.stderr)
    XCTAssertEqual(config.stderr.components(separatedBy: "mixer-dist: error: ").count, 2, config.stderr)
    XCTAssertTrue(config.stderr.contains("\(yaml.path): key 'steps'"), config.stderr)
  }
}
