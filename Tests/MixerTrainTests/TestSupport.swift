// Helpers of the MixerTrain tests: the reference fixtures and a small training config.

import Foundation
import MixerModel
import MixerTestSupport
import MixerTrain
import XCTest

/// Reference folders produced by the official Flax model (copies of shared/reference, plus the
/// extra shapes made by tools/make_reference.py).
var referenceFolders: [URL] {
  let root = packageRoot.appendingPathComponent("Tests/Fixtures/reference")
  let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
  return names.sorted().map { root.appendingPathComponent($0) }
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
