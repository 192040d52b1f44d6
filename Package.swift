// swift-tools-version:5.9
// mixer-dist: a data-parallel MLP-Mixer trainer on OpenBLAS and OpenMPI.
import PackageDescription

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

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
  ],
  targets: [
    // System-library shims: a module map and a header, nothing else.
    .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

    .target(name: "MixerKernels", dependencies: ["CBLAS"], swiftSettings: optimize),
    .target(name: "MixerModel", dependencies: ["MixerKernels"], swiftSettings: optimize),
    .target(name: "MixerDistributed", dependencies: ["CMPI"], swiftSettings: optimize),
    .target(name: "MixerData", dependencies: ["MixerKernels"], swiftSettings: optimize),
    .target(
      name: "MixerCheckpoint",
      dependencies: ["MixerModel", .product(name: "ZIPFoundation", package: "ZIPFoundation")],
      swiftSettings: optimize),
    .target(
      name: "MixerTrain",
      dependencies: [
        "MixerKernels", "MixerModel", "MixerDistributed", "MixerData", "MixerCheckpoint",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: optimize),
    .executableTarget(
      name: "mixer-dist",
      dependencies: ["MixerTrain", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      swiftSettings: optimize),

    .executableTarget(
      name: "mixer-comm-check", dependencies: ["MixerDistributed"], swiftSettings: optimize),

    .testTarget(name: "MixerKernelsTests", dependencies: ["MixerKernels"]),
    .testTarget(name: "MixerModelTests", dependencies: ["MixerModel", "MixerCheckpoint"]),
    .testTarget(name: "MixerDataTests", dependencies: ["MixerData"]),
    .testTarget(name: "MixerCheckpointTests", dependencies: ["MixerCheckpoint"]),
    .testTarget(name: "MixerDistributedTests", dependencies: ["MixerDistributed"]),
    .testTarget(name: "MixerTrainTests", dependencies: ["MixerTrain"]),
  ]
)
