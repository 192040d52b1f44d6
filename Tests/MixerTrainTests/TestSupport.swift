// Shared helpers of the MixerTrain tests: fixture paths, temporary folders, the release binary.

import Foundation
import MixerModel
import MixerTrain
import XCTest

/// The package root (this file is Tests/MixerTrainTests/TestSupport.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

/// Reference folders produced by the official Flax model (copies of shared/reference, plus the
/// extra shapes made by tools/make_reference.py).
var referenceFolders: [URL] {
  let root = packageRoot.appendingPathComponent("Tests/Fixtures/reference")
  let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
  return names.sorted().map { root.appendingPathComponent($0) }
}

/// A fresh temporary folder, removed after the test.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("mixer-dist-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}

/// A model small enough to train a few steps in a debug build, on the embedded shapes data.
func smallTrainConfig(runDirectory: URL, steps: Int) -> TrainConfig {
  var c = TrainConfig(model: MixerConfig(
    imageHeight: 32, imageWidth: 32, patch: 8, hidden: 32, blocks: 2, tokensMLP: 16,
    channelsMLP: 64, classes: 10))
  c.steps = steps
  c.globalBatch = 16
  c.trainExamples = 256
  c.warmupSteps = 2
  c.learningRate = 3e-3
  c.threads = 1
  c.runDirectory = runDirectory.path
  return c
}
