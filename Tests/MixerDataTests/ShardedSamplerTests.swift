// Tests of the sampler and evaluation sharding: permutations, rank slices, resume by step,
// configuration errors, and exact coverage of evaluation sets.

import XCTest

@testable import MixerData

final class ShardedSamplerTests: XCTestCase {
  func testEachEpochIsAPermutationAndEpochsAndSeedsDiffer() throws {
    let sampler = try ShardedSampler(datasetCount: 1_000, globalBatch: 10, seed: 5)
    let epoch0 = sampler.permutation(epoch: 0), epoch1 = sampler.permutation(epoch: 1)
    XCTAssertEqual(epoch0.sorted(), Array(0..<1_000))
    XCTAssertEqual(epoch1.sorted(), Array(0..<1_000))
    XCTAssertNotEqual(epoch0, epoch1)
    XCTAssertNotEqual(epoch0, Array(0..<1_000))
    let other = try ShardedSampler(datasetCount: 1_000, globalBatch: 10, seed: 6)
    XCTAssertNotEqual(other.permutation(epoch: 0), epoch0)
    XCTAssertEqual(try ShardedSampler(datasetCount: 1_000, globalBatch: 10, seed: 5).permutation(epoch: 1), epoch1)
  }

  func testInvalidConfigurationsThrowClearErrors() {
    XCTAssertThrowsError(try ShardedSampler(datasetCount: 100, globalBatch: 10, worldSize: 4, rank: 0, seed: 0)) {
      XCTAssertTrue("\($0)".contains("does not divide by world size 4"), "\($0)")
    }
    XCTAssertThrowsError(try ShardedSampler(datasetCount: 100, globalBatch: 8, worldSize: 4, rank: 4, seed: 0))
    XCTAssertThrowsError(try ShardedSampler(datasetCount: 100, globalBatch: 0, seed: 0))
    XCTAssertThrowsError(try ShardedSampler(datasetCount: 7, globalBatch: 8, seed: 0))
    XCTAssertThrowsError(try ShardedSampler(datasetCount: 100, globalBatch: 8, worldSize: 0, seed: 0))
  }

  func testRankSlicesPartitionEveryGlobalBatch() throws {
    let count = 100, globalBatch = 8
    for worldSize in [1, 2, 4] {
      let samplers = try (0..<worldSize).map {
        try ShardedSampler(datasetCount: count, globalBatch: globalBatch, worldSize: worldSize, rank: $0, seed: 9)
      }
      XCTAssertEqual(samplers[0].batchesPerEpoch, 12)
      XCTAssertEqual(samplers[0].localBatch, globalBatch / worldSize)
      for epoch in 0..<3 {
        var seen = Set<Int>()
        for batch in 0..<12 {
          let step = samplers[0].step(epoch: epoch, batch: batch)
          let global = samplers[0].globalIndices(step: step)
          let joined = samplers.flatMap { $0.indices(step: step) }
          XCTAssertEqual(joined, global, "N=\(worldSize) step \(step)")
          XCTAssertEqual(global.count, globalBatch)
          seen.formUnion(global)
          // Every rank sees the same global batch.
          for sampler in samplers { XCTAssertEqual(sampler.globalIndices(step: step), global) }
        }
        // Drop-last: 96 distinct samples per epoch, the 4 left over are skipped.
        XCTAssertEqual(seen.count, 96, "N=\(worldSize) epoch \(epoch)")
      }
    }
  }

  func testResumingAtAStepGivesTheSameIndicesWithoutState() throws {
    let first = try ShardedSampler(datasetCount: 50, globalBatch: 12, worldSize: 2, rank: 1, seed: 3)
    let straight = (0..<40).map { first.indices(step: $0) }
    let resumed = try ShardedSampler(datasetCount: 50, globalBatch: 12, worldSize: 2, rank: 1, seed: 3)
    XCTAssertEqual((25..<40).map { resumed.indices(step: $0) }, Array(straight[25..<40]))
    // Out-of-order queries (as from several loader threads) give the same answers.
    XCTAssertEqual(resumed.indices(step: 3), straight[3])
    XCTAssertEqual(resumed.indices(step: 39), straight[39])
    XCTAssertEqual(first.epoch(ofStep: 13), 3)
    XCTAssertEqual(first.batchInEpoch(ofStep: 13), 1)
  }

  func testEvaluationShardsCountEverySampleExactlyOnce() {
    for (count, worldSize) in [(10, 3), (7, 4), (2, 4), (0, 3), (5_000, 3), (13, 1)] {
      let ranges = EvaluationSharding.ranges(count: count, worldSize: worldSize)
      XCTAssertEqual(ranges.count, worldSize)
      var hits = [Int](repeating: 0, count: count)
      for range in ranges {
        for index in range { hits[index] += 1 }
      }
      XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "\(count) over \(worldSize): \(ranges)")
      let sizes = ranges.map(\.count)
      XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "\(sizes)")
      for (rank, range) in ranges.enumerated() {
        XCTAssertEqual(EvaluationSharding.range(count: count, worldSize: worldSize, rank: rank), range)
        let batches = EvaluationSharding.batches(of: range, batchSize: 2)
        XCTAssertEqual(batches.flatMap { Array($0) }, Array(range))
      }
    }
    XCTAssertEqual(EvaluationSharding.ranges(count: 10, worldSize: 3), [0..<4, 4..<7, 7..<10])
    XCTAssertEqual(EvaluationSharding.ranges(count: 2, worldSize: 4), [0..<1, 1..<2, 2..<2, 2..<2])
  }
}
