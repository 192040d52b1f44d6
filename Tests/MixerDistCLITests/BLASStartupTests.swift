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
}
