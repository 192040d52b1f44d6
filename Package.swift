// swift-tools-version:5.9
// mixer-dist: a data-parallel MLP-Mixer trainer on OpenBLAS and OpenMPI.
import Foundation
import PackageDescription

// The vectorised kernels (SIMD16 GELU, LayerNorm) need AVX2/FMA code generation to be fast; the
// Swift default targets baseline x86-64 (SSE2). MIXER_TARGET_CPU overrides (e.g. "native").
#if arch(x86_64)
let targetCPU: String? = ProcessInfo.processInfo.environment["MIXER_TARGET_CPU"] ?? "haswell"
#else
let targetCPU: String? = ProcessInfo.processInfo.environment["MIXER_TARGET_CPU"]
#endif
let cpuFlags: [String] = targetCPU.map { ["-target-cpu", $0] } ?? []
let optimize: [SwiftSetting] = [
  .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
  .unsafeFlags(cpuFlags),
]

let package = Package(
  name: "mixer-dist",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "mixer-dist", targets: ["mixer-dist"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
  ],
  targets: [
    // System-library shims: a module map and a header, nothing else.
    .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
    .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
    .systemLibrary(name: "CMixerZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // oneDNN (bf16/int8 matrix products); Debian ships no .pc file for it, the module map links it
    .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
    .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),

    // numbers without C: bf16 rounding, the counter RNG, the SIMD vector type (for the data layer
    // and the gradient wire format, which need no BLAS)
    .target(name: "MixerNumerics", swiftSettings: optimize),
    // the elementwise kernels of training in C, one build per instruction set (baseline, AVX2,
    // AVX-512) chosen at run time; no contraction into FMAs, so every build gives the same bits
    .target(name: "CMixerVector", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"])]),
    .target(name: "MixerKernels", dependencies: ["CBLAS", "CDNNL", "CMixerVector", "MixerNumerics"], swiftSettings: optimize),
    // the per-rank timeline of `train --trace` (no dependencies: every layer may record spans)
    .target(name: "MixerTrace", swiftSettings: optimize),
    .target(name: "MixerModel", dependencies: ["MixerKernels", "MixerTrace"], swiftSettings: optimize),
    .target(name: "MixerDistributed", dependencies: ["CMPI", "MixerNumerics", "MixerTrace"], swiftSettings: optimize),
    .target(name: "MixerData", dependencies: ["MixerNumerics", "CTurboJPEG", "CPNG", "CMixerZlib", "CArchive"], swiftSettings: optimize),
    .target(
      name: "MixerCheckpoint",
      dependencies: [
        "MixerModel", "MixerTrace", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        .product(name: "Crypto", package: "swift-crypto"),
      ],
      swiftSettings: optimize),
    // run telemetry: console, metrics.jsonl, TensorBoard event files, the HTML report
    .target(
      name: "MixerTelemetry", dependencies: [.product(name: "Logging", package: "swift-log")],
      swiftSettings: optimize),
    // inference: the per-layer precision plan (fp32/bf16/int8 products), calibration, quantized
    // checkpoints, ONNX export
    .target(
      name: "MixerInference", dependencies: ["MixerKernels", "MixerModel", "MixerCheckpoint"],
      swiftSettings: optimize),
    .target(
      name: "MixerTrain",
      dependencies: [
        "MixerKernels", "MixerModel", "MixerDistributed", "MixerData", "MixerCheckpoint", "MixerTelemetry", "MixerInference",
        "MixerTrace", .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: optimize),
    .executableTarget(
      name: "mixer-dist",
      dependencies: [
        "MixerTrain", "MixerCheckpoint", "MixerData", "MixerDistributed", "MixerKernels", "MixerModel", "MixerInference",
        "MixerTelemetry", "MixerTrace", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: optimize,
      // BuildInfo.swift: the commit `mixer-dist --version` prints (tools/build-info.sh)
      plugins: ["BuildInfo"]),
    .plugin(name: "BuildInfo", capability: .buildTool()),

    .executableTarget(
      name: "mixer-comm-check",
      dependencies: ["MixerDistributed", "MixerTrain", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: optimize),

    // Helpers every test target shares (temporary folders, float checks, finite differences,
    // format-error checks, PNG chunks, python3).
    .target(name: "MixerTestSupport", dependencies: ["CMixerZlib", "MixerCheckpoint"], path: "Tests/MixerTestSupport"),
    .testTarget(name: "MixerKernelsTests", dependencies: ["MixerKernels", "MixerTestSupport"]),
    .testTarget(name: "MixerModelTests", dependencies: ["MixerModel", "MixerTestSupport"]),
    .testTarget(name: "MixerDataTests", dependencies: ["MixerData", "MixerNumerics", "MixerTestSupport"]),
    .testTarget(name: "MixerCheckpointTests", dependencies: ["MixerCheckpoint", "MixerTestSupport"]),
    .testTarget(name: "MixerDistributedTests", dependencies: ["MixerDistributed", "MixerTestSupport"]),
    .testTarget(name: "MixerInferenceTests", dependencies: ["MixerInference", "MixerCheckpoint", "MixerTestSupport"]),
    .testTarget(name: "MixerTrainTests", dependencies: ["MixerTrain", "MixerTestSupport"]),
    .testTarget(name: "MixerTelemetryTests", dependencies: ["MixerTelemetry", "MixerTestSupport"]),
    // End-to-end: runs the mixer-dist binary (alone and under real mpirun) as a user would.
    .testTarget(name: "MixerDistCLITests", dependencies: ["MixerCheckpoint", "MixerDistributed", "MixerTestSupport", "MixerData"]),
  ]
)
