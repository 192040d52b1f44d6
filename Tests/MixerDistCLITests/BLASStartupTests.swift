// The start-up kernel choice end to end (BLASStartup in the binary): with the kernel OpenBLAS
// "picked" staged as Prescott (MIXER_DIST_TEST_OPENBLAS_CORE, read only by that check; the
// tests never set OPENBLAS_CORETYPE), the process starts itself again with the core this CPU
// calls for and says so in the start-up line, under a real 2-rank mpirun too, where the ranks
// must still join one job and train the same bits as without the detour. A user's own
// OPENBLAS_CORETYPE, when the environment sets one, is kept instead.

import Foundation
import MixerKernels
import MixerTestSupport
import XCTest

final class BLASStartupTests: XCTestCase {
  let staged = ["MIXER_DIST_TEST_OPENBLAS_CORE": "Prescott"]

  /// What the start-up line must say with OpenBLAS's pick staged as Prescott.
  func expectedNote() -> String {
    if let user = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !user.isEmpty {
      return "OPENBLAS_CORETYPE=\(user)"  // the environment's own choice is respected
    }
    guard BLASCore.target(for: .current) != nil else { return BLAS.coreName }  // nothing better to choose
    return "(chosen by mixer-dist for \(CPUFeatures.current.bestISA); OpenBLAS picked Prescott)"
  }

  func testStagedWeakCoreIsReplacedInBench() throws {
    let result = try MixerDistCLITests.run(
      try mixerDistBinary(), ["bench", "--preset", "tiny", "--batch", "4", "--steps", "1", "--warmup", "0", "--threads", "1"],
      environment: staged, timeout: 120)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    let header = result.stdout.split(separator: "\n").first { $0.hasPrefix("preset ") }.map(String.init) ?? ""
    XCTAssertTrue(header.contains(expectedNote()), "header: \(header)")
    if BLASCore.target(for: .current) != nil, ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil {
      XCTAssertTrue(header.contains("OpenBLAS core \(BLASCore.target(for: .current)!) (chosen"), header)
    }
  }

  func testStagedWeakCoreIsReplacedOnEveryRankUnderMpirun() throws {
    guard let mpirun = which("mpirun") else { throw MissingTestDependency("mpirun is not on the PATH (launch/setup --deps)") }
    func train(_ extra: [String]) throws -> (RunResult, Data) {
      let dir = try makeTemporaryDirectory(self)
      let arguments = ["-n", "2", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1"] + extra
        + [try mixerDistBinary()] + MPITrainTests.smallArguments + ["--steps", "4", "--run-dir", dir.path]
      let result = try MixerDistCLITests.run(mpirun, arguments, environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 120)
      XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
      return (result, (try? Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))) ?? Data())
    }
    let (replaced, replacedBits) = try train(["-x", "MIXER_DIST_TEST_OPENBLAS_CORE=Prescott"])
    let line = replaced.stdout.split(separator: "\n").first { $0.contains("rank(s)") }.map(String.init) ?? ""
    XCTAssertTrue(line.contains("2 rank(s)") && line.contains(expectedNote()), "start-up line: \(line)")
    // the staged pick is only what the check sees: the core chosen is the one OpenBLAS runs here
    // anyway on this kind of host, so the run must match a run without the detour bit for bit
    if BLASCore.choice(cpu: .current, openBLASCore: BLAS.coreName, userCoreType: nil) == .keep,
      BLASCore.target(for: .current)?.lowercased() == BLAS.coreName.lowercased()
    {
      let (_, plainBits) = try train([])
      XCTAssertFalse(plainBits.isEmpty)
      XCTAssertEqual(replacedBits, plainBits, "final parameters differ after the re-exec")
    }
  }

  /// MIXER_ISA: the baseline build of the elementwise kernels trains the bits of the best build
  /// this CPU runs (the default); a name that is not a level ends the run in one line.
  func testKernelInstructionSetChangesNoBits() throws {
    func train(_ environment: [String: String]) throws -> (RunResult, Data) {
      let dir = try makeTemporaryDirectory(self)
      let result = try MixerDistCLITests.run(
        try mixerDistBinary(), MPITrainTests.smallArguments + ["--steps", "4", "--run-dir", dir.path],
        environment: environment, timeout: 120)
      return (result, (try? Data(contentsOf: dir.appendingPathComponent("final-parameters.f32"))) ?? Data())
    }
    let (best, bestBits) = try train([:])
    XCTAssertEqual(best.status, 0, best.stdout + best.stderr)
    XCTAssertTrue(best.stdout.contains("kernels \(KernelISA.best))"), best.stdout)
    let (baseline, baselineBits) = try train([KernelISA.variable: "baseline"])
    XCTAssertEqual(baseline.status, 0, baseline.stdout + baseline.stderr)
    XCTAssertTrue(baseline.stdout.contains("kernels baseline)"), baseline.stdout)
    XCTAssertFalse(bestBits.isEmpty)
    XCTAssertEqual(baselineBits, bestBits, "final parameters differ between the baseline and \(KernelISA.best) kernels")

    let (wrong, _) = try train([KernelISA.variable: "avx1024"])
    XCTAssertEqual(wrong.status, 1)
    XCTAssertEqual(
      wrong.stderr.trimmingCharacters(in: .whitespacesAndNewlines),
      "mixer-dist: error: MIXER_ISA=avx1024 is not an instruction set of the kernels (baseline, avx2, avx512)")
  }

  /// A build of the kernels that fails its start-up self-check (staged: the check sees one bit of
  /// its layernorm forward off) is passed over for the next one, and the start-up line says why;
  /// asked for by MIXER_ISA, it stops the run with one line.
  func testAKernelBuildThatFailsItsSelfCheckIsPassedOver() throws {
    let best = KernelISA.best
    func train(_ environment: [String: String]) throws -> RunResult {
      let dir = try makeTemporaryDirectory(self)
      return try MixerDistCLITests.run(
        try mixerDistBinary(), MPITrainTests.smallArguments + ["--steps", "1", "--run-dir", dir.path],
        environment: environment, timeout: 120)
    }
    if best != .baseline {
      let next = KernelISA.supported.dropLast().last!
      let passedOver = try train(["MIXER_DIST_TEST_BROKEN_ISA": best.description])
      XCTAssertEqual(passedOver.status, 0, passedOver.stdout + passedOver.stderr)
      XCTAssertTrue(
        passedOver.stdout.contains(
          "kernels \(next) (\(best) failed its self-check: layernorm forward differs from the baseline build))"),
        passedOver.stdout)
    }
    let forced = try train(["MIXER_DIST_TEST_BROKEN_ISA": best.description, KernelISA.variable: best.description])
    XCTAssertEqual(forced.status, 1)
    XCTAssertEqual(
      forced.stderr.trimmingCharacters(in: .whitespacesAndNewlines),
      "mixer-dist: error: MIXER_ISA=\(best): the \(best) build of the kernels failed its self-check (layernorm forward differs from the baseline build); unset MIXER_ISA to run the best build that passes")
  }

  /// A command without a start-up line (eval here) notes the replaced kernel on stderr once it has
  /// succeeded; when it fails, its one-line error is all stderr holds.
  func testKernelNoteOfOtherCommandsFollowsSuccessOnly() throws {
    let dir = try makeTemporaryDirectory(self)
    let trained = try MixerDistCLITests.run(
      try mixerDistBinary(), MPITrainTests.smallArguments + ["--steps", "2", "--run-dir", dir.path], timeout: 120)
    XCTAssertEqual(trained.status, 0, trained.stdout + trained.stderr)
    let eval = try MixerDistCLITests.run(try mixerDistBinary(), ["eval", dir.path], environment: staged, timeout: 120)
    XCTAssertEqual(eval.status, 0, eval.stdout + eval.stderr)
    let lines = eval.stderr.split(separator: "\n").map(String.init)
    if BLASCore.target(for: .current) != nil, (ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "").isEmpty {
      XCTAssertEqual(lines.last.map { $0.hasPrefix("mixer-dist: OpenBLAS core ") && $0.contains(expectedNote()) }, true, eval.stderr)
    } else {  // nothing replaced: nothing to note
      XCTAssertFalse(eval.stderr.contains("OpenBLAS core"), eval.stderr)
    }
    let missing = dir.appendingPathComponent("no-such-run").path
    let failed = try MixerDistCLITests.run(try mixerDistBinary(), ["eval", missing], environment: staged, timeout: 120)
    XCTAssertEqual(failed.status, 1, failed.stdout + failed.stderr)
    let errorLines = failed.stderr.split(separator: "\n")
    XCTAssertEqual(errorLines.count, 1, failed.stderr)
    XCTAssertTrue(errorLines.first?.hasPrefix("mixer-dist: error: ") == true, failed.stderr)
  }

  /// A core this CPU cannot run (staged: the check sees an AVX2-only CPU and OpenBLAS's kernel as
  /// SkylakeX, as when a user sets OPENBLAS_CORETYPE=SkylakeX there) stops the run with one line
  /// before any product, on every rank of an mpirun job, instead of an illegal instruction.
  func testCoreTheCPUCannotRunStopsInOneLine() throws {
    let avx2Only = ["MIXER_DIST_TEST_CPU_FLAGS": "fpu sse2 avx avx2 fma", "MIXER_DIST_TEST_OPENBLAS_CORE": "SkylakeX"]
    let dir = try makeTemporaryDirectory(self)
    let bench = try MixerDistCLITests.run(
      try mixerDistBinary(), ["bench", "--preset", "tiny", "--batch", "4", "--steps", "1", "--warmup", "0", "--threads", "1"],
      environment: avx2Only, timeout: 120)
    XCTAssertEqual(bench.status, 1, bench.stdout + bench.stderr)
    let expected = "mixer-dist: error: OpenBLAS core SkylakeX"
    let lines = bench.stderr.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 1, bench.stderr)
    XCTAssertTrue(
      lines.first?.hasPrefix(expected) == true && lines.first?.contains("needs AVX-512 F/BW/VL, which this CPU does not have (it has AVX2/FMA)") == true
        && lines.first?.hasSuffix(" (\(CPUFeatures.current.vendor == "AuthenticAMD" ? "Zen" : "Haswell"))") == true,
      bench.stderr)
    XCTAssertFalse(bench.stdout.contains("step"), bench.stdout)

    guard let mpirun = which("mpirun") else { throw MissingTestDependency("mpirun is not on the PATH (launch/setup --deps)") }
    let arguments = ["-n", "2", "--oversubscribe", "--bind-to", "none"]
      + avx2Only.flatMap { ["-x", "\($0.key)=\($0.value)"] }
      + [try mixerDistBinary()] + MPITrainTests.smallArguments + ["--steps", "2", "--run-dir", dir.path]
    let job = try MixerDistCLITests.run(mpirun, arguments, environment: avx2Only, timeout: 120)
    XCTAssertNotEqual(job.status, 0, job.stdout + job.stderr)
    let errors = job.stderr.split(separator: "\n").filter { $0.hasPrefix(expected) }
    XCTAssertEqual(errors.count, 2, "one line from each rank: " + job.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("metrics.jsonl").path))
  }

  /// The re-executed process keeps its name: `ps`, `pgrep mixer-dist` and launch/chaos find ranks
  /// by it, and an exec through /proc/self/exe would otherwise leave every thread named `exe`.
  func testReplacedCoreKeepsTheProcessName() throws {
    let dir = try makeTemporaryDirectory(self)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try mixerDistBinary())
    process.arguments = MPITrainTests.smallArguments + ["--steps", "100000", "--log-every", "1", "--run-dir", dir.path]
    process.environment = childEnvironment(staged)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
    let deadline = Date().addingTimeInterval(60)
    let metrics = dir.appendingPathComponent("metrics.jsonl")
    while Date() < deadline, process.isRunning, !FileManager.default.fileExists(atPath: metrics.path) {
      Thread.sleep(forTimeInterval: 0.05)
    }
    XCTAssertTrue(process.isRunning, "the run ended before it logged a step")
    let pid = process.processIdentifier
    let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
    XCTAssertFalse(tasks.isEmpty)
    for task in tasks {
      let name = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)
      XCTAssertNotEqual(name.trimmingCharacters(in: .newlines), "exe", "thread \(task)")
    }
    let name = try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)
    XCTAssertEqual(name.trimmingCharacters(in: .newlines), "mixer-dist")
  }
}
