// The embedded segmentation set: a pure function of (seed, split, index), disjoint splits, every
// class present, masks that match what is drawn; the batch path for masks (any number of ranks
// gives the same global batch, out-of-range classes are caught by sample, mixup is refused); the
// `--data` spelling.

import MixerNumerics
import XCTest

@testable import MixerData

final class SyntheticSegmentationTests: XCTestCase {
  let side = SyntheticSegmentation.side

  func sample(_ dataset: SyntheticSegmentation, _ index: Int, epoch: Int = 0) throws -> ([Float], [Int32]) {
    var pixels = [Float](repeating: .nan, count: dataset.pixelsPerImage)
    var mask = [Int32](repeating: 99, count: dataset.pixelsPerMask)
    try dataset.load(index, epoch: epoch, into: &pixels, mask: &mask)
    return (pixels, mask)
  }

  func testScenesArePureFunctionsOfSeedSplitAndIndex() throws {
    let a = SyntheticSegmentation(split: .train, count: 100, seed: 4)
    let b = SyntheticSegmentation(split: .train, count: 100, seed: 4)
    let other = SyntheticSegmentation(split: .train, count: 100, seed: 5)
    let validation = SyntheticSegmentation(split: .validation, count: 100, seed: 4)
    for index in [0, 17, 99] {
      let first = try sample(a, index)
      let again = try sample(b, index, epoch: 3)  // no augmentation: the epoch does not matter
      XCTAssertEqual(first.0, again.0)
      XCTAssertEqual(first.1, again.1)
      XCTAssertNotEqual(first.0, try sample(other, index).0)
      XCTAssertNotEqual(first.0, try sample(validation, index).0)
      XCTAssertNotEqual(first.0, try sample(a, index + 1 == 100 ? 0 : index + 1).0)
      XCTAssertTrue(first.0.allSatisfy { $0 >= -1 && $0 <= 1 })
    }
    XCTAssertEqual(a.count, 100)
    XCTAssertEqual(SyntheticSegmentation(split: .validation).count, 5_000)
    XCTAssertThrowsError(try sample(a, 100))
  }

  func testEveryClassOccursAndMasksMatchTheDrawing() throws {
    let dataset = SyntheticSegmentation(split: .train, count: 300, seed: 0)
    var pixelsPerClass = [Int](repeating: 0, count: dataset.numClasses)
    var checked = 0
    for index in 0..<dataset.count {
      let (pixels, mask) = try sample(dataset, index)
      for label in mask {
        XCTAssertTrue((0..<Int32(dataset.numClasses)).contains(label))
        pixelsPerClass[Int(label)] += 1
      }
      // a scene with one shape class: its pixels have another colour than the background's
      let present = Set(mask).subtracting([0])
      XCTAssertFalse(present.isEmpty, "scene \(index) has no shape in its mask")
      guard present.count == 1 else { continue }
      var inside = SIMD3<Double>(), outside = SIMD3<Double>()
      var insideCount = 0.0, outsideCount = 0.0
      for p in 0..<(side * side) {
        let colour = SIMD3<Double>(Double(pixels[3 * p]), Double(pixels[3 * p + 1]), Double(pixels[3 * p + 2]))
        if mask[p] == 0 { outside += colour; outsideCount += 1 } else { inside += colour; insideCount += 1 }
      }
      let difference = inside / insideCount - outside / outsideCount
      XCTAssertGreaterThan((difference * difference).sum().squareRoot(), 0.4, "scene \(index)")
      checked += 1
    }
    XCTAssertGreaterThan(checked, 50)
    let total = Double(pixelsPerClass.reduce(0, +))
    for (k, count) in pixelsPerClass.enumerated() {
      XCTAssertGreaterThan(Double(count) / total, 0.01, "class \(SyntheticSegmentation.names[k]) is too rare")
    }
    XCTAssertLessThan(Double(pixelsPerClass[0]) / total, 0.9, "background dominates")
  }

  func testGlobalBatchOfMasksIsTheSameOnAnyNumberOfRanks() throws {
    let dataset = SyntheticSegmentation(split: .train, count: 64, seed: 0)
    var reference: ([Float], [Int32])?
    for worldSize in [1, 2, 4] {
      var pixels: [Float] = [], masks: [Int32] = []
      for rank in 0..<worldSize {
        let sampler = try ShardedSampler(datasetCount: dataset.count, globalBatch: 8, worldSize: worldSize, rank: rank, seed: 3)
        var batch = Batch()
        XCTAssertNil(try fillTrainingBatch(&batch, dataset: dataset, targets: .masks, sampler: sampler, step: 9))
        XCTAssertEqual(batch.masks.count, batch.size * side * side)
        pixels += batch.pixels
        masks += batch.masks
      }
      if let reference {
        XCTAssertEqual(pixels, reference.0, "\(worldSize) ranks")
        XCTAssertEqual(masks, reference.1, "\(worldSize) ranks")
      } else {
        reference = (pixels, masks)
      }
    }
    let sampler = try ShardedSampler(datasetCount: dataset.count, globalBatch: 8, worldSize: 1, rank: 0, seed: 3)
    var batch = Batch()
    XCTAssertThrowsError(
      try fillTrainingBatch(&batch, dataset: dataset, targets: .masks, sampler: sampler, step: 0, mixup: Mixup(alpha: 0.5, seed: 0))
    ) { error in
      XCTAssertTrue("\(error)".contains("mixup does not apply to segmentation"), "\(error)")
    }
  }

  /// A dataset whose sample 3 has a pixel of class 7 (of 4) and sample 5 an ignored pixel.
  struct BadMasks: SegmentationDataset {
    var count: Int { 8 }
    var numClasses: Int { 4 }
    var classNames: [String] { ["a", "b", "c", "d"] }
    var height: Int { 2 }
    var width: Int { 3 }
    func load(_ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Int32>) throws {
      pixels.update(repeating: Float(index), count: 18)
      for p in 0..<6 { mask[p] = Int32(p % 4) }
      if index == 3 { mask[4] = 7 }
      if index == 5 { mask[0] = SegmentationMask.ignore }
    }
  }

  func testOutOfRangeMaskClassesNameTheSample() throws {
    var batch = Batch()
    try batch.fill(segmentation: BadMasks(), indices: [0, 5], epoch: 0, step: 2)
    XCTAssertEqual(batch.masks, [0, 1, 2, 3, 0, 1, -1, 1, 2, 3, 0, 1])
    XCTAssertEqual(batch.labels, [0, 0])
    XCTAssertThrowsError(try batch.fill(segmentation: BadMasks(), indices: [1, 3], epoch: 0, step: 2)) { error in
      XCTAssertEqual(
        error as? DataError,
        .sampleFailed(index: 3, step: 2, reason: "mask pixel 1,1 has class 7, outside 0..<4"))
    }
  }

  func testDataSpecNamesTheEmbeddedSegmentationSet() throws {
    XCTAssertEqual(try DataSpec("segshapes").resolved().kind, .segshapes)
    XCTAssertEqual(try DataSpec("segshapes:").resolved().kind, .segshapes)
    XCTAssertTrue(DataKind.segshapes.hasMasks)
    XCTAssertFalse(DataKind.shapes.hasMasks)
    var options = DataOptions()
    options.trainExamples = 10
    let dataset = try makeDataset(spec: "segshapes", split: .train, imageSize: (32, 32), seed: 0, options: options)
    XCTAssertTrue(dataset is SyntheticSegmentation)
    XCTAssertEqual(dataset.count, 10)
    XCTAssertEqual(dataset.classNames.first, "background")
    XCTAssertThrowsError(try makeDataset(spec: "segshapes", split: .train, imageSize: (64, 64), seed: 0)) { error in
      XCTAssertTrue("\(error)".contains("pass --image-size 32"), "\(error)")
    }
  }
}
