// Tests of the in-process communicators (LocalGroup, SingleProcessCommunicator): every
// collective against exact expectations, the documented summation order, and the failure modes
// (mismatched calls, a failing rank, abort) that must end in an error instead of a hang.

import XCTest

@testable import MixerDistributed

final class LocalGroupTests: XCTestCase {
  /// Rank `rank`'s exact integer input at `index`.
  private func input(_ rank: Int, _ index: Int) -> Float {
    CollectiveCheck.input(rank: rank, index: index)
  }

  func testAllReduceSumFloatAndDouble() throws {
    for size in 1...4 {
      for count in [0, 1, 5, 1001] {
        let results = try LocalGroup.run(size: size) { communicator -> ([Float], [Double]) in
          var floats = (0..<count).map { self.input(communicator.rank, $0) }
          try communicator.allReduceSum(&floats)
          var doubles = floats.map { Double($0) / 4 + Double(communicator.rank) }
          try communicator.allReduceSum(&doubles)
          return (floats, doubles)
        }
        let expected = (0..<count).map { CollectiveCheck.expectedSum(ranks: size, index: $0) }
        let rankSum = Double(size * (size - 1) / 2)
        for (floats, doubles) in results {
          XCTAssertEqual(floats, expected, "size \(size) count \(count)")
          XCTAssertEqual(doubles, expected.map { Double($0) * Double(size) / 4 + rankSum })
        }
      }
    }
  }

  func testAllReduceMaxMinAndScalars() throws {
    let results = try LocalGroup.run(size: 3) { communicator -> [Double] in
      var maxima = [Double(communicator.rank), -Double(communicator.rank), 7]
      var minima = maxima
      try communicator.allReduceMax(&maxima)
      try communicator.allReduceMin(&minima)
      let sum = try communicator.allReduceSum(Double(communicator.rank + 1))
      let maximum = try communicator.allReduceMax(Double(communicator.rank) * 2)
      let minimum = try communicator.allReduceMin(Double(communicator.rank) - 5)
      return maxima + minima + [sum, maximum, minimum]
    }
    for result in results {
      XCTAssertEqual(result, [2, 0, 7, 0, -2, 7, 6, 4, -5])
    }
  }

  /// The documented order: ((x0 + x1) + x2). 1e8 + 1 rounds back to 1e8 in Float, so this order
  /// gives 0 where (x0 + x2) + x1 would give 1.
  func testSummationOrderIsRankOrder() throws {
    let values: [Float] = [1e8, 1, -1e8]
    let results = try LocalGroup.run(size: 3) { communicator -> Float in
      var value = [values[communicator.rank]]
      try communicator.allReduceSum(&value)
      return value[0]
    }
    XCTAssertEqual(results, [0, 0, 0])
  }

  func testReduceScatterStandardAndUnevenBlocks() throws {
    for size in 1...4 {
      for count in [0, 1, 3, 10, 1001] {
        let results = try LocalGroup.run(size: size) { communicator -> [Float] in
          var values = (0..<count).map { self.input(communicator.rank, $0) }
          try values.withUnsafeMutableBufferPointer {
            try communicator.reduceScatterSum($0.baseAddress!, count: count)
          }
          return Array(values[communicator.shard(ofTotal: count)])
        }
        for (rank, result) in results.enumerated() {
          let shard = shardRanges(total: count, parts: size)[rank]
          XCTAssertEqual(result, shard.map { CollectiveCheck.expectedSum(ranks: size, index: $0) })
        }
      }
    }
    let counts = [3, 0, 5]
    let results = try LocalGroup.run(size: 3) { communicator -> [Float] in
      var values = (0..<8).map { self.input(communicator.rank, $0) }
      try values.withUnsafeMutableBufferPointer {
        try communicator.reduceScatterSum($0.baseAddress!, counts: counts)
      }
      return Array(values[blockRange(counts: counts, rank: communicator.rank)])
    }
    XCTAssertEqual(results[0], (0..<3).map { CollectiveCheck.expectedSum(ranks: 3, index: $0) })
    XCTAssertEqual(results[1], [])
    XCTAssertEqual(results[2], (3..<8).map { CollectiveCheck.expectedSum(ranks: 3, index: $0) })
  }

  func testAllGatherInPlace() throws {
    for size in 1...4 {
      for count in [0, 1, 3, 10, 1001] {
        let results = try LocalGroup.run(size: size) { communicator -> [Float] in
          let shard = communicator.shard(ofTotal: count)
          var values = (0..<count).map { shard.contains($0) ? Float(communicator.rank * 10_000 + $0) : .nan }
          try values.withUnsafeMutableBufferPointer {
            try communicator.allGather($0.baseAddress!, count: count)
          }
          return values
        }
        let shards = shardRanges(total: count, parts: size)
        let expected = (0..<count).map { index in
          Float(shards.firstIndex { $0.contains(index) }! * 10_000 + index)
        }
        for result in results { XCTAssertEqual(result, expected, "size \(size) count \(count)") }
      }
    }
  }

  func testBroadcastFloatsBytesAndStrings() throws {
    let results = try LocalGroup.run(size: 4) { communicator -> ([Float], [UInt8], String) in
      var floats: [Float] = communicator.rank == 2 ? [1, 2, 3] : [0, 0, 0]
      try communicator.broadcast(&floats, root: 2)
      var bytes: [UInt8] = communicator.rank == 0 ? [9, 8, 7, 6, 5] : [0, 0, 0, 0, 0]
      try bytes.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, byteCount: 5, root: 0) }
      let text = try communicator.broadcast(communicator.rank == 3 ? "from three" : "", root: 3)
      return (floats, bytes, text)
    }
    for (floats, bytes, text) in results {
      XCTAssertEqual(floats, [1, 2, 3])
      XCTAssertEqual(bytes, [9, 8, 7, 6, 5])
      XCTAssertEqual(text, "from three")
    }
  }

  func testAllAgreeNamesTheFailedRanks() throws {
    let results = try LocalGroup.run(size: 4) { communicator -> (Agreement, Agreement) in
      (try communicator.allAgree(true), try communicator.allAgree(communicator.rank % 2 == 0))
    }
    for (allGood, someBad) in results {
      XCTAssertTrue(allGood.allSucceeded)
      XCTAssertEqual(someBad.failedRanks, [1, 3])
      XCTAssertEqual(someBad.description, "failed on rank(s) 1, 3")
    }
  }

  func testLocalRanksPerSimulatedNode() throws {
    let results = try LocalGroup.run(size: 5, ranksPerNode: 2) { ($0.localRank, $0.localSize) }
    XCTAssertEqual(results.map(\.0), [0, 1, 0, 1, 0])
    XCTAssertEqual(results.map(\.1), [2, 2, 2, 2, 1])
  }

  func testMismatchedCallsThrowOnEveryRank() {
    XCTAssertThrowsError(
      try LocalGroup.run(size: 2) { communicator in
        var values = [Float](repeating: 1, count: 3 + communicator.rank)
        try communicator.allReduceSum(&values)
      }
    ) { error in
      guard case CommunicatorError.mismatch(let text)? = error as? CommunicatorError else {
        return XCTFail("expected a mismatch, got \(error)")
      }
      XCTAssertTrue(text.contains("count: 4"), text)
    }
  }

  func testFailingRankDoesNotLeaveOthersWaiting() {
    struct Boom: Error {}
    let start = Date()
    XCTAssertThrowsError(
      try LocalGroup.run(size: 3) { communicator in
        if communicator.rank == 1 { throw Boom() }
        try communicator.barrier()
        try communicator.barrier()
      }
    ) { error in XCTAssertTrue(error is Boom, "the failing rank's own error, got \(error)") }
    XCTAssertLessThan(Date().timeIntervalSince(start), 5)
  }

  func testAbortEndsTheGroup() {
    XCTAssertThrowsError(
      try LocalGroup.run(size: 3) { communicator in
        if communicator.rank == 2 { communicator.abort(message: "disk full", code: 7) }
        try communicator.barrier()
      }
    ) { error in
      XCTAssertEqual(error as? CommunicatorError, .aborted(rank: 2, message: "disk full", code: 7))
    }
  }

  func testInvalidArgumentsThrow() throws {
    _ = try LocalGroup.run(size: 2) { communicator in
      var values: [Float] = [1]
      XCTAssertThrowsError(try communicator.broadcast(&values, root: 2))
      XCTAssertThrowsError(
        try values.withUnsafeMutableBufferPointer { try communicator.allGather($0.baseAddress!, counts: [1]) }
      )
    }
    let single = SingleProcessCommunicator()
    var values: [Float] = [1, 2]
    XCTAssertThrowsError(try single.broadcast(&values, root: 1))
    try single.finalize()
    XCTAssertThrowsError(try single.barrier()) { XCTAssertEqual($0 as? CommunicatorError, .finalized) }
  }

  func testSingleProcessCollectivesAreIdentity() throws {
    let single = SingleProcessCommunicator()
    var values: [Float] = [1, 2, 3]
    try single.allReduceSum(&values)
    try values.withUnsafeMutableBufferPointer {
      try single.reduceScatterSum($0.baseAddress!, count: 3)
      try single.allGather($0.baseAddress!, count: 3)
    }
    try single.broadcast(&values, root: 0)
    XCTAssertEqual(values, [1, 2, 3])
    XCTAssertEqual(try single.allReduceMax(4), 4)
    XCTAssertEqual(try single.allAgree(false).failedRanks, [0])
    XCTAssertEqual(try CollectiveCheck(sizes: [0, 1, 7]).run(on: single), [])
  }

  func testCollectiveCheckPassesOnLocalGroups() throws {
    let check = CollectiveCheck(sizes: [0, 1, 7, 1000, 4099], bucketCases: [(1001, 100), (37, 1), (5, 64)])
    for size in [2, 3, 5] {
      let failures = try LocalGroup.run(size: size) { try check.run(on: $0) }
      XCTAssertEqual(failures.flatMap { $0 }, [], "\(size) ranks")
    }
  }

  func testMakeDefaultWithoutLauncherIsSingleProcess() throws {
    XCTAssertFalse(MPICommunicator.isLaunchedByMPI(environment: [:]))
    XCTAssertTrue(MPICommunicator.isLaunchedByMPI(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
    XCTAssertTrue(MPICommunicator.isLaunchedByMPI(environment: ["PMIX_RANK": "0"]))
    let communicator = try MPICommunicator.makeDefault(environment: ["HOME": "/root"])
    XCTAssertTrue(communicator is SingleProcessCommunicator)
    XCTAssertEqual(communicator.size, 1)
  }
}
