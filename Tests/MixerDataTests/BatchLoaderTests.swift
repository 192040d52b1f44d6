// Tests of batch assembly and the prefetching loader: same batches as direct assembly for any
// worker count, error propagation naming the sample, end of data, and stop() never hanging.

import Foundation
import XCTest

@testable import MixerData

/// A dataset that fails on one index and can be slowed down.
private struct FailingDataset: Dataset {
  let base = SyntheticShapes(split: .train, count: 200, seed: 2)
  let badIndex: Int
  var delay: TimeInterval = 0
  var count: Int { base.count }
  var numClasses: Int { base.numClasses }
  var classNames: [String] { base.classNames }
  var height: Int { base.height }
  var width: Int { base.width }

  struct Broken: Error, CustomStringConvertible {
    var description: String { "corrupt record" }
  }

  func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    if delay > 0 { Thread.sleep(forTimeInterval: delay) }
    if index == badIndex { throw Broken() }
    return try base.load(index, into: pixels)
  }
}

final class BatchLoaderTests: XCTestCase {
  let dataset = SyntheticShapes(split: .train, count: 200, seed: 2)

  func testAssemblyFromSeveralThreadsMatchesOneThread() throws {
    let indices = Array((0..<24).reversed())
    let whole = try Batch(dataset: dataset, indices: indices)
    XCTAssertEqual(whole.labels.map(Int.init), indices.map(dataset.label(of:)))
    var pixels = [Float](repeating: 0, count: whole.pixels.count)
    var labels = [Int32](repeating: -1, count: indices.count)
    let stride = dataset.pixelsPerImage
    let dataset = self.dataset
    pixels.withUnsafeMutableBufferPointer { pixelBuffer in
      labels.withUnsafeMutableBufferPointer { labelBuffer in
        let p = pixelBuffer.baseAddress!, l = labelBuffer.baseAddress!
        DispatchQueue.concurrentPerform(iterations: 4) { part in
          let slice = part * 6..<(part + 1) * 6
          try! assembleBatch(
            pixels: p + slice.lowerBound * stride, labels: l + slice.lowerBound,
            dataset: dataset, indices: indices[slice])
        }
      }
    }
    XCTAssertEqual(pixels, whole.pixels)
    XCTAssertEqual(labels, whole.labels)
  }

  func testLoaderYieldsDirectAssemblyInOrderForAnyWorkerCount() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 16, worldSize: 2, rank: 1, seed: 4)
    // Steps 3..<23 cross an epoch boundary (12 batches per epoch).
    let expected = try (3..<23).map { try Batch(dataset: dataset, indices: sampler.indices(step: $0), step: $0) }
    for workers in [1, 3] {
      let loader = try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, startStep: 3, workers: workers, depth: 2)
      for (offset, want) in expected.enumerated() {
        XCTAssertEqual(loader.nextStep, 3 + offset)
        let (batch, _) = try loader.next()
        XCTAssertEqual(batch.step, want.step, "workers \(workers)")
        XCTAssertEqual(batch.indices, want.indices, "workers \(workers) step \(want.step)")
        XCTAssertEqual(batch.labels, want.labels, "workers \(workers) step \(want.step)")
        XCTAssertTrue(batch.pixels == want.pixels, "workers \(workers) step \(want.step): pixels differ")
        if offset % 2 == 0 { loader.recycle(batch) }
      }
      loader.stop()
    }
  }

  func testLoaderStopsAtEndStep() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 8, seed: 4)
    let loader = try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, startStep: 5, endStep: 7, workers: 2)
    XCTAssertEqual(try loader.next().batch.step, 5)
    XCTAssertEqual(try loader.next().batch.step, 6)
    XCTAssertThrowsError(try loader.next()) { XCTAssertEqual($0 as? DataError, .endOfData(step: 7)) }
    loader.stop()
  }

  func testLoaderPropagatesALoadErrorNamingTheSample() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 8, seed: 4)
    let badStep = 4
    let badIndex = sampler.indices(step: badStep)[5]
    let failing = FailingDataset(badIndex: badIndex)
    let loader = try BatchLoader(dataset: failing, targets: .labels, sampler: sampler, workers: 3, depth: 3)
    for step in 0..<badStep {
      XCTAssertEqual(try loader.next().batch.step, step)
    }
    for _ in 0..<2 {  // the error stays: asking again throws it again
      XCTAssertThrowsError(try loader.next()) { error in
        XCTAssertEqual(
          error as? DataError, .sampleFailed(index: badIndex, step: badStep, reason: "corrupt record"))
        XCTAssertTrue("\(error)".contains("sample \(badIndex)"), "\(error)")
      }
    }
    loader.stop()
  }

  func testStopReturnsWhileWorkersWaitOnAFullQueue() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 8, seed: 4)
    let loader = try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, workers: 3, depth: 2)
    _ = try loader.next()
    Thread.sleep(forTimeInterval: 0.05)  // the queue fills and every worker waits
    let start = Date()
    loader.stop()
    loader.stop()
    XCTAssertLessThan(Date().timeIntervalSince(start), 2)
    XCTAssertThrowsError(try loader.next()) { XCTAssertEqual($0 as? DataError, .loaderStopped) }
  }

  func testStopWakesAConsumerWaitingInNext() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 8, seed: 4)
    let slow = FailingDataset(badIndex: -1, delay: 0.02)  // 0.16 s per batch
    let loader = try BatchLoader(dataset: slow, targets: .labels, sampler: sampler, workers: 1, depth: 2)
    let (first, waited) = try loader.next()
    XCTAssertEqual(first.step, 0)
    XCTAssertTrue(waited, "the first batch of a slow dataset cannot be ready at once")
    XCTAssertGreaterThan(loader.waitSeconds, 0)
    let consumerDone = expectation(description: "consumer woke up")
    DispatchQueue.global().async {
      while true {
        do {
          _ = try loader.next()
        } catch {
          XCTAssertEqual(error as? DataError, .loaderStopped)
          consumerDone.fulfill()
          return
        }
      }
    }
    Thread.sleep(forTimeInterval: 0.05)
    loader.stop()
    wait(for: [consumerDone], timeout: 5)
  }

  func testInvalidLoaderSettingsThrow() throws {
    let sampler = try ShardedSampler(datasetCount: 200, globalBatch: 8, seed: 4)
    XCTAssertThrowsError(try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, workers: 0))
    XCTAssertThrowsError(try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, depth: 0))
    XCTAssertThrowsError(try BatchLoader(dataset: dataset, targets: .labels, sampler: sampler, startStep: 5, endStep: 4))
  }
}
