// Tests of shardRanges: contiguous, covering, near-equal ranges in rank order.

import XCTest

@testable import MixerDistributed

final class ShardRangesTests: XCTestCase {
  func testExamples() {
    XCTAssertEqual(shardRanges(total: 10, parts: 3), [0..<4, 4..<7, 7..<10])
    XCTAssertEqual(shardRanges(total: 2, parts: 4), [0..<1, 1..<2, 2..<2, 2..<2])
    XCTAssertEqual(shardRanges(total: 0, parts: 2), [0..<0, 0..<0])
    XCTAssertEqual(shardRanges(total: 7, parts: 1), [0..<7])
  }

  func testContiguousCoveringNearEqual() {
    for total in 0..<40 {
      for parts in 1..<9 {
        let ranges = shardRanges(total: total, parts: parts)
        XCTAssertEqual(ranges.count, parts)
        XCTAssertEqual(ranges.first?.lowerBound, 0)
        XCTAssertEqual(ranges.last?.upperBound, total)
        for (left, right) in zip(ranges, ranges.dropFirst()) {
          XCTAssertEqual(left.upperBound, right.lowerBound)
          XCTAssertGreaterThanOrEqual(left.count, right.count, "longer shards come first")
        }
        let lengths = ranges.map(\.count)
        XCTAssertLessThanOrEqual(lengths.max()! - lengths.min()!, 1, "total \(total) parts \(parts)")
      }
    }
  }

  func testCommunicatorHelpers() throws {
    let shards = try LocalGroup.run(size: 3) { communicator in
      (communicator.shard(ofTotal: 10), communicator.shardCounts(ofTotal: 10))
    }
    XCTAssertEqual(shards.map(\.0), [0..<4, 4..<7, 7..<10])
    XCTAssertEqual(shards[1].1, [4, 3, 3])
    XCTAssertEqual(blockRange(counts: [2, 0, 3], rank: 2), 2..<5)
  }
}
