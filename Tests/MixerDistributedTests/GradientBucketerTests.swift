// Tests of GradientBucketer on LocalGroup: exact sums for odd sizes, buckets larger and smaller
// than the buffer, markReady in random increments that differ between ranks, several steps, the
// ZeRO-1 reduce-scatter mode, overlap (buckets reduced before finish) and error propagation.

import XCTest

@testable import MixerDistributed

final class GradientBucketerTests: XCTestCase {
  /// Runs `steps` steps of a bucketer on `ranks` ranks, filling the buffer from the end in random
  /// increments (seeded by rank) and marking each increment ready. Returns each rank's shard of
  /// the buffer after the last step, with the shard.
  private func runBucketer(
    ranks: Int, count: Int, bucketSize: Int, mode: GradientBucketer.Mode, steps: Int = 2,
    overlap: Bool = true, value: @escaping (_ rank: Int, _ index: Int, _ step: Int) -> Float
  ) throws -> [(values: [Float], shard: Range<Int>)] {
    try LocalGroup.run(size: ranks) { communicator in
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
      defer { buffer.deallocate() }
      let bucketer = GradientBucketer(
        communicator: communicator, buffer: buffer, count: count, bucketSize: bucketSize, mode: mode,
        overlap: overlap)
      var generator = SystemRandomNumberGenerator()
      for step in 0..<steps {
        var bound = count
        while bound > 0 {
          let lower = max(0, bound - Int.random(in: 1...max(1, count / 4 + 1), using: &generator))
          for index in lower..<bound { buffer[index] = value(communicator.rank, index, step) }
          bucketer.markReady(upTo: lower)
          bound = lower
        }
        let timings = try bucketer.finish()
        XCTAssertEqual(timings.buckets, bucketer.buckets.count)
      }
      return (
        Array(UnsafeBufferPointer(start: buffer + bucketer.shard.lowerBound, count: bucketer.shard.count)),
        bucketer.shard
      )
    }
  }

  func testBucketsAreAlignedFromTheEnd() {
    let bucketer = GradientBucketer(
      communicator: SingleProcessCommunicator(), buffer: UnsafeMutablePointer<Float>.allocate(capacity: 1),
      count: 10, bucketSize: 4)
    XCTAssertEqual(bucketer.buckets, [6..<10, 2..<6, 0..<2])
    XCTAssertEqual(bucketer.shard, 0..<10)
  }

  func testAllReduceExactForOddSizesAndBucketSizes() throws {
    let value: (Int, Int, Int) -> Float = { rank, index, step in
      CollectiveCheck.input(rank: rank, index: index) + Float(step)
    }
    for ranks in [1, 2, 3] {
      for (count, bucketSize) in [(1, 1), (7, 3), (1001, 100), (1001, 5000), (4099, 1024), (37, 1)] {
        let results = try runBucketer(
          ranks: ranks, count: count, bucketSize: bucketSize, mode: .allReduce, value: value)
        let expected = (0..<count).map { CollectiveCheck.expectedSum(ranks: ranks, index: $0) + Float(ranks) }
        for result in results {
          XCTAssertEqual(result.shard, 0..<count)
          XCTAssertEqual(result.values, expected, "\(ranks) ranks, \(count) floats, buckets of \(bucketSize)")
        }
      }
    }
  }

  func testReduceScatterModeLeavesEachRankItsShard() throws {
    let value: (Int, Int, Int) -> Float = { rank, index, _ in CollectiveCheck.input(rank: rank, index: index)
    }
    for ranks in [2, 3, 4] {
      for (count, bucketSize) in [(7, 3), (1001, 100), (1001, 5000), (10, 1)] {
        let results = try runBucketer(
          ranks: ranks, count: count, bucketSize: bucketSize, mode: .reduceScatter, value: value)
        for (rank, result) in results.enumerated() {
          let shard = shardRanges(total: count, parts: ranks)[rank]
          XCTAssertEqual(result.shard, shard)
          XCTAssertEqual(result.values, shard.map { CollectiveCheck.expectedSum(ranks: ranks, index: $0) })
        }
      }
    }
  }

  /// Bucketing must not change the result: the same bits as one all-reduce of the whole buffer
  /// (LocalGroup sums in rank order whatever the range).
  func testBucketedEqualsWholeBufferBitForBit() throws {
    let count = 3001
    let value: (Int, Int, Int) -> Float = { rank, index, _ in
      Float(sin(Double(index * 7 + rank * 131)) * 1e3) / 7
    }
    let bucketed = try runBucketer(
      ranks: 3, count: count, bucketSize: 256, mode: .allReduce, steps: 1, value: value)
    let whole = try LocalGroup.run(size: 3) { communicator -> [Float] in
      var values = (0..<count).map { value(communicator.rank, $0, 0) }
      try communicator.allReduceSum(&values)
      return values
    }
    XCTAssertEqual(bucketed[0].values, whole[0])
    XCTAssertEqual(bucketed[2].values, whole[0])
  }

  func testWithoutOverlapSameBits() throws {
    let value: (Int, Int, Int) -> Float = { rank, index, _ in Float(cos(Double(index + rank * 17))) * 3 }
    for mode in [GradientBucketer.Mode.allReduce, .reduceScatter] {
      let overlapped = try runBucketer(
        ranks: 3, count: 1001, bucketSize: 64, mode: mode, steps: 1, value: value)
      let inline = try runBucketer(
        ranks: 3, count: 1001, bucketSize: 64, mode: mode, steps: 1, overlap: false, value: value)
      XCTAssertEqual(overlapped.map(\.values), inline.map(\.values))
    }
  }

  func testBucketsStartBeforeFinish() throws {
    let timings = try LocalGroup.run(size: 2) { communicator -> GradientBucketer.Timings in
      let count = 4000
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
      defer { buffer.deallocate() }
      buffer.initialize(repeating: 1, count: count)
      let bucketer = GradientBucketer(
        communicator: communicator, buffer: buffer, count: count, bucketSize: 1000)
      bucketer.markReady(upTo: 2000)  // Two complete buckets: they reduce while "backward" goes on.
      Thread.sleep(forTimeInterval: 0.3)
      let timings = try bucketer.finish()
      XCTAssertEqual(
        Array(UnsafeBufferPointer(start: buffer, count: count)), [Float](repeating: 2, count: count))
      return timings
    }
    for timing in timings {
      XCTAssertEqual(timing.buckets, 4)
      XCTAssertEqual(timing.bucketsDoneBeforeFinish, 2)
      XCTAssertGreaterThan(timing.communicationSeconds, 0)
    }
  }

  func testCommunicationErrorIsThrownByFinish() throws {
    let results = try LocalGroup.run(size: 2) { communicator -> Bool in
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 10)
      defer { buffer.deallocate() }
      buffer.initialize(repeating: 0, count: 10)
      let failing = FailingCommunicator(wrapping: communicator)
      let bucketer = GradientBucketer(communicator: failing, buffer: buffer, count: 10, bucketSize: 4)
      do {
        try bucketer.finish()
        return false
      } catch {
        return (error as? CommunicatorError) == .invalidArgument("injected")
      }
    }
    XCTAssertEqual(results, [true, true])
  }

  func testSingleRankIsANoOp() throws {
    var values: [Float] = [1, 2, 3, 4, 5]
    try values.withUnsafeMutableBufferPointer { pointer in
      let bucketer = GradientBucketer(
        communicator: SingleProcessCommunicator(), buffer: pointer.baseAddress!, count: 5, bucketSize: 2,
        mode: .reduceScatter)
      bucketer.markReady(upTo: 3)
      let timings = try bucketer.finish()
      XCTAssertEqual(timings.buckets, 3)
      XCTAssertEqual(bucketer.shard, 0..<5)
    }
    XCTAssertEqual(values, [1, 2, 3, 4, 5])
  }
}

/// A 2-rank communicator whose all-reduce always throws (the error path of the bucketer).
private final class FailingCommunicator: Communicator {
  let inner: Communicator
  init(wrapping inner: Communicator) { self.inner = inner }
  var rank: Int { inner.rank }
  var size: Int { inner.size }
  var localRank: Int { inner.localRank }
  var localSize: Int { inner.localSize }
  func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    throw CommunicatorError.invalidArgument("injected")
  }
  func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
  func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
  func allReduceMin(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
  func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {}
  func allReduceSum(_ buffer: UnsafeMutablePointer<Int128>, count: Int) throws {
    throw CommunicatorError.invalidArgument("injected")
  }
  func reduceScatterSum(_ buffer: UnsafeMutablePointer<Int128>, counts: [Int]) throws {}
  func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {}
  func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {}
  func broadcast(_ bytes: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {}
  func barrier() throws {}
  func abort(message: String, code: Int32) -> Never { inner.abort(message: message, code: code) }
  func finalize() throws {}
}
