// The OpenBLAS kernel choice (a pure function of the CPU's flags, OpenBLAS's pick and the user's
// OPENBLAS_CORETYPE) and the sgemm self-test: OpenBLAS passes it, a wrong product is caught.

import Foundation
import MixerKernels
import XCTest

final class BLASCoreTests: XCTestCase {
  let amdAVX2 = CPUFeatures(flags: ["sse2", "avx", "avx2", "fma"], vendor: "AuthenticAMD")
  let intelAVX2 = CPUFeatures(flags: ["sse2", "avx", "avx2", "fma"], vendor: "GenuineIntel")
  let intelAVX512 = CPUFeatures(flags: ["avx2", "fma", "avx512f", "avx512bw", "avx512vl"], vendor: "GenuineIntel")
  let intelAMX = CPUFeatures(
    flags: ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile"], vendor: "GenuineIntel")
  let oldCPU = CPUFeatures(flags: ["sse2", "sse3"], vendor: "GenuineIntel")

  func testReadsFlagsAndVendorFromCpuinfo() {
    let text = """
      processor\t: 0
      vendor_id\t: AuthenticAMD
      flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512vl
      processor\t: 1
      vendor_id\t: GenuineIntel
      flags\t\t: fpu
      """
    let cpu = CPUFeatures(cpuinfo: text)
    XCTAssertEqual(cpu.vendor, "AuthenticAMD")
    XCTAssertTrue(cpu.hasAVX512)
    XCTAssertFalse(cpu.hasAVX512BF16)
    XCTAssertTrue(cpu.hasAVX2FMA)
  }

  func testTargetFollowsTheWidestInstructionSet() {
    XCTAssertEqual(BLASCore.target(for: intelAMX), "Cooperlake")
    XCTAssertEqual(BLASCore.target(for: intelAVX512), "SkylakeX")
    XCTAssertEqual(BLASCore.target(for: intelAVX2), "Haswell")
    XCTAssertEqual(BLASCore.target(for: amdAVX2), "Zen")
    XCTAssertNil(BLASCore.target(for: oldCPU))
    // AVX-512 F without BW/VL is not enough for OpenBLAS's SkylakeX kernels
    XCTAssertEqual(BLASCore.target(for: CPUFeatures(flags: ["avx2", "fma", "avx512f"], vendor: "GenuineIntel")), "Haswell")
  }

  /// The AMX VM's case: OpenBLAS 0.3.21 falls back to Prescott; the choice replaces it.
  func testWeakCoreIsReplaced() {
    XCTAssertEqual(BLASCore.choice(cpu: intelAMX, openBLASCore: "Prescott", userCoreType: nil), .replace(with: "Cooperlake"))
    XCTAssertEqual(BLASCore.choice(cpu: intelAMX, openBLASCore: "SkylakeX", userCoreType: nil), .replace(with: "Cooperlake"))
    XCTAssertEqual(BLASCore.choice(cpu: intelAVX512, openBLASCore: "Haswell", userCoreType: ""), .replace(with: "SkylakeX"))
    XCTAssertEqual(BLASCore.choice(cpu: amdAVX2, openBLASCore: "Sandybridge", userCoreType: nil), .replace(with: "Zen"))
    XCTAssertEqual(BLASCore.choice(cpu: intelAVX2, openBLASCore: "Prescott", userCoreType: nil), .replace(with: "Haswell"))
  }

  func testGoodCoreIsKept() {
    XCTAssertEqual(BLASCore.choice(cpu: amdAVX2, openBLASCore: "Zen", userCoreType: nil), .keep)
    XCTAssertEqual(BLASCore.choice(cpu: amdAVX2, openBLASCore: "Haswell", userCoreType: nil), .keep)  // same kernels' ISA
    XCTAssertEqual(BLASCore.choice(cpu: intelAMX, openBLASCore: "SapphireRapids", userCoreType: nil), .keep)
    XCTAssertEqual(BLASCore.choice(cpu: oldCPU, openBLASCore: "Prescott", userCoreType: nil), .keep)
    // never a kernel the CPU cannot run: OpenBLAS's SkylakeX on an AVX2 CPU is not "weaker"
    XCTAssertEqual(BLASCore.choice(cpu: amdAVX2, openBLASCore: "SkylakeX", userCoreType: nil), .keep)
  }

  func testUsersCoreTypeIsRespected() {
    XCTAssertEqual(BLASCore.choice(cpu: amdAVX2, openBLASCore: "Prescott", userCoreType: "Prescott"), .userSet(better: "Zen"))
    XCTAssertEqual(BLASCore.choice(cpu: intelAMX, openBLASCore: "Cooperlake", userCoreType: "cooperlake"), .userSet(better: nil))
  }

  /// A core the CPU cannot run (OpenBLAS takes OPENBLAS_CORETYPE=SkylakeX as given on an AVX2
  /// CPU) is named with what it lacks; cores it can run, and names the table does not know, pass.
  func testCoreTheCPUCannotRunIsNamed() {
    XCTAssertEqual(BLASCore.missingInstructions(core: "SkylakeX", cpu: amdAVX2), "AVX-512 F/BW/VL")
    XCTAssertEqual(BLASCore.missingInstructions(core: "cooperlake", cpu: intelAVX512), "AVX-512 with BF16")
    XCTAssertEqual(BLASCore.missingInstructions(core: "Haswell", cpu: oldCPU), "AVX2 and FMA")
    XCTAssertEqual(BLASCore.missingInstructions(core: "Zen", cpu: oldCPU), "AVX2 and FMA")
    XCTAssertNil(BLASCore.missingInstructions(core: "Cooperlake", cpu: intelAMX))
    XCTAssertNil(BLASCore.missingInstructions(core: "SkylakeX", cpu: intelAVX512))
    XCTAssertNil(BLASCore.missingInstructions(core: "Haswell", cpu: amdAVX2))
    XCTAssertNil(BLASCore.missingInstructions(core: "Prescott", cpu: oldCPU))
    XCTAssertNil(BLASCore.missingInstructions(core: "SkylakeX", cpu: CPUFeatures(flags: [], vendor: "unknown")))
  }

  func testSummarySaysHowTheCoreWasChosen() {
    XCTAssertEqual(BLASCore.summary(core: "Zen", cpu: amdAVX2, environment: [:]), "Zen")
    XCTAssertEqual(
      BLASCore.summary(core: "Zen", cpu: amdAVX2, environment: [BLASCore.replacedVariable: "Prescott", "OPENBLAS_CORETYPE": "Zen"]),
      "Zen (chosen by mixer-dist for AVX2/FMA; OpenBLAS picked Prescott)")
    XCTAssertEqual(
      BLASCore.summary(core: "Prescott", cpu: amdAVX2, environment: ["OPENBLAS_CORETYPE": "Prescott"]),
      "Prescott (OPENBLAS_CORETYPE=Prescott; this CPU could run Zen)")
    XCTAssertEqual(
      BLASCore.summary(core: "Haswell", cpu: intelAVX2, environment: ["OPENBLAS_CORETYPE": "haswell"]),
      "Haswell (OPENBLAS_CORETYPE=haswell)")
  }

  func testOpenBLASPassesTheSelfTest() {
    XCTAssertNil(BLASSelfTest.run())
    // the oracle itself, summing in another order than sgemm, passes too
    XCTAssertNil(BLASSelfTest.run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
      gemmNaive(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    })
  }

  /// A product wrong in one element of one shape, one that ignores beta, and one that returns
  /// NaN are each caught, with the shape named.
  func testWrongProductIsCaught() {
    let oneElement = BLASSelfTest.run { transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc in
      gemm(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
      if m == 131 { c[5 * ldc + 3] += 0.01 }
    }
    XCTAssertEqual(oneElement?.hasPrefix("sgemm NN 131x97x259 element 5,3:"), true, oneElement ?? "not caught")
    let noAccumulation = BLASSelfTest.run { transA, transB, m, n, k, a, lda, b, ldb, _, c, ldc in
      gemm(transA, transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: ldc)
    }
    XCTAssertEqual(noAccumulation?.hasPrefix("sgemm NT 33x17x65"), true, noAccumulation ?? "not caught")
    let notANumber = BLASSelfTest.run { _, _, m, n, _, _, _, _, _, _, c, ldc in
      for i in 0..<m { for j in 0..<n { c[i * ldc + j] = .nan } }
    }
    XCTAssertEqual(notANumber?.hasPrefix("sgemm NN 1x1x1"), true, notANumber ?? "not caught")
  }
}
