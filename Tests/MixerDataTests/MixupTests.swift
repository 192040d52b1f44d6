// Tests of the global-batch pipeline: the augmented and mixed global batch is bit-identical on 1,
// 2 and 4 ranks, each sample mixes with its global predecessor, the Beta weights behave, soft
// targets sum to one, and the loader benchmark runs.

import MixerNumerics
import MixerTestSupport
import XCTest

@testable import MixerData

final class MixupTests: XCTestCase {
  /// 16 PNGs of 4 classes, augmented with crop, flip and RandAugment(2, 9).
  func makeFolder() throws -> ImageFolder {
    let root = try makeTemporaryDirectory(self, "mixup")
    for n in 0..<16 {
      for split in ["train", "val"] {
        try writePNGFile(
          root, "\(split)/class\(n % 4)/\(n).png",
          pixels: patternPixels(width: 40, height: 30, seed: n),
          width: 40, height: 30)
      }
    }
    var options = DataOptions()
    options.randAugment = RandAugment(layers: 2, magnitude: 9)
    return try ImageFolder(
      root: root.path, split: .train, imageHeight: 12, imageWidth: 12, seed: 11, options: options)
  }

  func testGlobalBatchIsIdenticalOnAnyNumberOfRanks() throws {
    let dataset = try makeFolder()
    let mixup = Mixup(alpha: 0.5, seed: 11)
    for step in [0, 1, 5] {
      var reference: (pixels: [Float], labels: [Int32], partners: [Int32])?
      for worldSize in [1, 2, 4] {
        var pixels: [Float] = []
        var labels: [Int32] = []
        var partners: [Int32] = []
        var weights: Set<Float> = []
        for rank in 0..<worldSize {
          let sampler = try ShardedSampler(
            datasetCount: dataset.count, globalBatch: 8, worldSize: worldSize, rank: rank, seed: 3)
          var batch = Batch()
          let mixed = try XCTUnwrap(
            try fillTrainingBatch(
              &batch, dataset: dataset, targets: .labels, sampler: sampler, step: step, mixup: mixup))
          XCTAssertEqual(batch.indices, sampler.indices(step: step))
          pixels += batch.pixels
          labels += batch.labels
          partners += mixed.partnerLabels
          weights.insert(mixed.weight)
        }
        XCTAssertEqual(weights.count, 1, "one weight per step on every rank")
        if let reference {
          XCTAssertEqual(
            pixels, reference.pixels, "step \(step), \(worldSize) ranks: pixels differ")
          XCTAssertEqual(labels, reference.labels)
          XCTAssertEqual(partners, reference.partners)
        } else {
          reference = (pixels, labels, partners)
        }
      }
    }
  }

  func testEachSampleMixesWithItsGlobalPredecessor() throws {
    let dataset = try makeFolder()
    let mixup = Mixup(alpha: 0.5, seed: 11)
    let step = 3
    let whole = try ShardedSampler(datasetCount: dataset.count, globalBatch: 8, seed: 3)
    let globalIndices = whole.globalIndices(step: step)
    let epoch = whole.epoch(ofStep: step)
    // The unmixed global batch, loaded one sample at a time.
    let unmixed = try globalIndices.map { try loadSample(dataset, $0, epoch: epoch) }
    let a = mixup.weight(step: step)
    XCTAssertGreaterThanOrEqual(a, 0.5)
    XCTAssertLessThanOrEqual(a, 1)
    let floats = dataset.pixelsPerImage
    for rank in 0..<4 {
      var batch = Batch()
      let mixed = try XCTUnwrap(
        try fillTrainingBatch(
          &batch, dataset: dataset, targets: .labels, globalIndices: globalIndices, rank: rank, worldSize: 4,
          epoch: epoch,
          step: step, mixup: mixup))
      XCTAssertEqual(mixed.weight, a)
      for local in 0..<2 {
        let g = rank * 2 + local
        let partner = (g + 7) % 8
        XCTAssertEqual(Mixup.partner(of: g, globalBatch: 8), partner)
        XCTAssertEqual(Int(batch.labels[local]), unmixed[g].0)
        XCTAssertEqual(Int(mixed.partnerLabels[local]), unmixed[partner].0)
        let expected = zip(unmixed[g].1, unmixed[partner].1).map { a * $0 + (1 - a) * $1 }
        XCTAssertEqual(
          Array(batch.pixels[local * floats..<(local + 1) * floats]), expected, "position \(g)")
      }
    }
    // Without mixup the batch is the plain augmented slice.
    var plain = Batch()
    XCTAssertNil(
      try fillTrainingBatch(
        &plain, dataset: dataset, targets: .labels, globalIndices: globalIndices, rank: 1, worldSize: 2, epoch: epoch,
        step: step))
    XCTAssertEqual(plain.pixels, unmixed[4..<8].flatMap { $0.1 })
  }

  func testBetaWeightsAndSoftTargets() {
    // a = max(Beta(α, α), 1 − ·): in [0.5, 1]; for α = 0.5 its mean is 1/2 + E|B − 1/2| = 1/2 + 1/π ≈ 0.818 (B arcsine-distributed).
    let mixup = Mixup(alpha: 0.5, seed: 1)
    let weights = (0..<4000).map { Double(mixup.weight(step: $0)) }
    XCTAssertTrue(weights.allSatisfy { $0 >= 0.5 && $0 <= 1 })
    let mean = weights.reduce(0, +) / Double(weights.count)
    XCTAssertEqual(mean, 0.5 + 1 / Double.pi, accuracy: 0.01)
    XCTAssertEqual(Mixup(alpha: 0, seed: 1).weight(step: 3), 1)
    // Beta(2, 5) has mean 2/7.
    var rng = CounterRNG(seed: 2)
    let beta = (0..<4000).map { _ in sampleBeta(2, 5, rng: &rng) }
    XCTAssertEqual(beta.reduce(0, +) / 4000, 2.0 / 7.0, accuracy: 0.01)

    var targets = [Float](repeating: -1, count: 2 * 4)
    let labels: [Int32] = [1, 3]
    let partners: [Int32] = [2, 3]
    mixupTargets(
      targets: &targets, labels: labels, partnerLabels: partners, weight: 0.75, batch: 2,
      classes: 4, smoothing: 0.1)
    XCTAssertEqual(targets[0], 0.025, accuracy: 1e-6)
    XCTAssertEqual(targets[1], 0.025 + 0.75 * 0.9, accuracy: 1e-6)
    XCTAssertEqual(targets[2], 0.025 + 0.25 * 0.9, accuracy: 1e-6)
    XCTAssertEqual(targets[7], 0.025 + 0.9, accuracy: 1e-6, "same label twice")
    XCTAssertEqual(targets[0..<4].reduce(0, +), 1, accuracy: 1e-6)
  }

  func testLoaderBenchmarkRuns() throws {
    let result = try measureLoaderThroughput(
      imageSize: (32, 32), threads: 2, imagesPerThread: 6, generatedImages: 4,
      generatedSize: (64, 48))
    XCTAssertEqual(result.images, 12)
    XCTAssertGreaterThan(result.imagesPerSecond, 0)
    XCTAssertTrue(result.description.contains("images/s"))
  }
}
