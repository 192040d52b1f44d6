// CollectiveCheck: exact checks of every collective of a Communicator and of the
// GradientBucketer, run collectively on all ranks. Inputs are small integers stored in floats,
// so every sum is exact in any summation order and results are compared with `==`. The bf16
// collectives (`--grad-comm bf16`) round at every addition, so they are compared with the exact sum
// of their bf16 inputs rounded once, within a tolerance of bf16 ulps (see `checkBFloat16`). Used by
// `mixer-comm-check` under mpirun and by the tests on a LocalGroup.

import Foundation
import MixerNumerics

/// Checks the collectives of a communicator; every rank must call `run`.
public struct CollectiveCheck: Sendable {
  /// Element counts checked for every collective (empty, one, odd, not divisible by the ranks).
  public var sizes: [Int]
  /// (buffer floats, bucket floats) pairs checked for the bucketer in both modes.
  public var bucketCases: [(count: Int, bucketSize: Int)]

  public static let defaultSizes = [0, 1, 7, 1000, 65_537]
  public static let defaultBucketCases: [(count: Int, bucketSize: Int)] = [
    (10_007, 1000), (10_007, 4096), (10_007, 20_000), (37, 1), (1, 8),
  ]

  public init(
    sizes: [Int] = CollectiveCheck.defaultSizes,
    bucketCases: [(count: Int, bucketSize: Int)] = CollectiveCheck.defaultBucketCases
  ) {
    self.sizes = sizes
    self.bucketCases = bucketCases
  }

  /// Rank `rank`'s input at `index`: an integer in -510...510, exact in Float.
  public static func input(rank: Int, index: Int) -> Float {
    Float((index &* 7 &+ rank &* 13) % 1021 - 510)
  }

  /// The exact sum over `ranks` ranks of `input(rank:index:)`.
  public static func expectedSum(ranks: Int, index: Int) -> Float {
    var sum = 0
    for rank in 0..<ranks { sum += Int(input(rank: rank, index: index)) }
    return Float(sum)
  }

  /// Runs every check; returns this rank's failures, one line each (empty when all pass).
  /// Throws only when a collective itself fails. Each collective is watched by `watchdog`.
  public func run(on communicator: Communicator, watchdog: Watchdog? = nil) throws -> [String] {
    var failures: [String] = []
    let ranks = communicator.size
    let rank = communicator.rank
    func watched(_ name: String, _ body: () throws -> Void) throws {
      if let watchdog { try watchdog.watch(name, body) } else { try body() }
    }

    for count in sizes {
      // all-reduce, floats.
      var values = (0..<count).map { Self.input(rank: rank, index: $0) }
      try watched("allReduceSum of \(count) floats") { try communicator.allReduceSum(&values) }
      failures += compare(values, "allReduceSum(\(count) floats)") {
        Self.expectedSum(ranks: ranks, index: $0)
      }

      // reduce-scatter over the standard partition: only this rank's shard is defined.
      values = (0..<count).map { Self.input(rank: rank, index: $0) }
      try watched("reduceScatterSum of \(count) floats") {
        try values.withUnsafeMutableBufferPointer {
          try communicator.reduceScatterSum($0.baseAddress!, count: count)
        }
      }
      let shard = communicator.shard(ofTotal: count)
      failures += compare(Array(values[shard]), "reduceScatterSum(\(count) floats), shard \(shard)") {
        Self.expectedSum(ranks: ranks, index: shard.lowerBound + $0)
      }

      // all-gather: each rank holds only its own shard before.
      let owners = shardRanges(total: count, parts: ranks)
      values = (0..<count).map { shard.contains($0) ? Self.input(rank: rank, index: $0) : .nan }
      try watched("allGather of \(count) floats") {
        try values.withUnsafeMutableBufferPointer {
          try communicator.allGather($0.baseAddress!, count: count)
        }
      }
      failures += compare(values, "allGather(\(count) floats)") { index in
        Self.input(rank: owners.firstIndex { $0.contains(index) }!, index: index)
      }

      // broadcast from the last rank (not 0, to catch a root mix-up).
      let root = ranks - 1
      values = (0..<count).map { rank == root ? Self.input(rank: root, index: $0) : -1 }
      try watched("broadcast of \(count) floats") { try communicator.broadcast(&values, root: root) }
      failures += compare(values, "broadcast(\(count) floats, root \(root))") {
        Self.input(rank: root, index: $0)
      }
    }

    // Uneven blocks, some empty.
    let counts = (0..<ranks).map { ($0 * 3 + 1) % 5 }
    let total = counts.reduce(0, +)
    var values = (0..<total).map { Self.input(rank: rank, index: $0) }
    try watched("reduceScatterSum with counts \(counts)") {
      try values.withUnsafeMutableBufferPointer {
        try communicator.reduceScatterSum($0.baseAddress!, counts: counts)
      }
    }
    let block = blockRange(counts: counts, rank: rank)
    failures += compare(Array(values[block]), "reduceScatterSum(counts \(counts))") {
      Self.expectedSum(ranks: ranks, index: block.lowerBound + $0)
    }
    values = (0..<total).map { block.contains($0) ? Self.input(rank: rank, index: $0) : .nan }
    try watched("allGather with counts \(counts)") {
      try values.withUnsafeMutableBufferPointer {
        try communicator.allGather($0.baseAddress!, counts: counts)
      }
    }
    failures += compare(values, "allGather(counts \(counts))") { index in
      Self.input(
        rank: (0..<ranks).first { blockRange(counts: counts, rank: $0).contains(index) }!, index: index)
    }

    // Doubles for metrics: sum, max, min, scalars.
    var doubles = (0..<1000).map { Double(Self.input(rank: rank, index: $0)) * 0.5 }
    try watched("allReduceSum of 1000 doubles") { try communicator.allReduceSum(&doubles) }
    failures += compare(doubles.map(Float.init), "allReduceSum(1000 doubles)") {
      Self.expectedSum(ranks: ranks, index: $0) * 0.5
    }
    doubles = (0..<1000).map { Double(Self.input(rank: rank, index: $0)) }
    try watched("allReduceMax of 1000 doubles") { try communicator.allReduceMax(&doubles) }
    failures += compare(doubles.map(Float.init), "allReduceMax(1000 doubles)") { index in
      (0..<ranks).map { Self.input(rank: $0, index: index) }.max()!
    }
    doubles = (0..<1000).map { Double(Self.input(rank: rank, index: $0)) }
    try watched("allReduceMin of 1000 doubles") { try communicator.allReduceMin(&doubles) }
    failures += compare(doubles.map(Float.init), "allReduceMin(1000 doubles)") { index in
      (0..<ranks).map { Self.input(rank: $0, index: index) }.min()!
    }
    var scalar = 0.0
    try watched("allReduceSum of a scalar") { scalar = try communicator.allReduceSum(Double(rank)) }
    if scalar != Double(ranks * (ranks - 1) / 2) {
      failures.append("allReduceSum(scalar): got \(scalar), expected \(ranks * (ranks - 1) / 2)")
    }

    // Raw bytes (odd length) and strings.
    var bytes = (0..<1001).map { rank == 0 ? UInt8(truncatingIfNeeded: $0 &* 31) : 0 }
    try watched("broadcast of 1001 bytes") {
      try bytes.withUnsafeMutableBytes {
        try communicator.broadcast($0.baseAddress!, byteCount: 1001, root: 0)
      }
    }
    if let bad = bytes.indices.first(where: { bytes[$0] != UInt8(truncatingIfNeeded: $0 &* 31) }) {
      failures.append("broadcast(1001 bytes): byte \(bad) is \(bytes[bad])")
    }
    var text = ""
    try watched("broadcast of a string") {
      text = try communicator.broadcast(rank == 0 ? "rank zero says: grüß dich" : "", root: 0)
    }
    if text != "rank zero says: grüß dich" { failures.append("broadcast(String): got '\(text)'") }

    // Collective error check.
    var agreement = Agreement(failedRanks: [])
    try watched("allAgree") { agreement = try communicator.allAgree(rank != ranks - 1) }
    if agreement.failedRanks != [ranks - 1] {
      failures.append("allAgree: failed ranks \(agreement.failedRanks), expected [\(ranks - 1)]")
    }
    try watched("barrier") { try communicator.barrier() }

    for (count, bucketSize) in bucketCases {
      failures += try checkBucketer(
        communicator, count: count, bucketSize: bucketSize, mode: .allReduce, watchdog: watchdog)
      failures += try checkBucketer(
        communicator, count: count, bucketSize: bucketSize, mode: .reduceScatter, watchdog: watchdog)
    }
    failures += try checkBFloat16(communicator, watched: watched)
    return failures
  }

  /// Rank `rank`'s bf16 input at `index`: positive (so partial sums never cancel), with a full
  /// 8-bit significand, between 0.37 and 378.
  public static func bfloat16Input(rank: Int, index: Int) -> UInt16 {
    bf16Bits(Float(1 + (index &* 7 &+ rank &* 13) % 1021) * 0.37)
  }

  /// The reference of the bf16 sum: the exact sum of the ranks' bf16 inputs, rounded once.
  public static func expectedBFloat16Sum(ranks: Int, index: Int) -> Float {
    var sum = 0.0
    for rank in 0..<ranks { sum += Double(floatFromBF16(bfloat16Input(rank: rank, index: index))) }
    return floatFromBF16(bf16Bits(Float(sum)))
  }

  /// The tolerance of the bf16 sum in ulps of the result: MPI rounds once per addition, N − 1
  /// times, each time by at most half an ulp of a partial sum no larger than the result (the
  /// inputs are positive); at least one ulp.
  public static func bfloat16Tolerance(ranks: Int) -> Float { max(1, Float(ranks - 1) / 2) }

  /// The bf16 all-reduce and reduce-scatter, and the bucketer with `precision: .bf16` in both
  /// modes, against `expectedBFloat16Sum`.
  private func checkBFloat16(
    _ communicator: Communicator, watched: (String, () throws -> Void) throws -> Void
  ) throws -> [String] {
    let ranks = communicator.size, rank = communicator.rank
    let tolerance = Self.bfloat16Tolerance(ranks: ranks)
    var failures: [String] = []
    for count in sizes.filter({ $0 <= 100_000 }) {
      var bits = (0..<max(count, 1)).map { Self.bfloat16Input(rank: rank, index: $0) }
      try watched("allReduceSumBFloat16 of \(count) values") {
        try bits.withUnsafeMutableBufferPointer { try communicator.allReduceSumBFloat16($0.baseAddress!, count: count) }
      }
      failures += compareWithin(
        bits.prefix(count).map(floatFromBF16), ulps: tolerance, "allReduceSumBFloat16(\(count))"
      ) { Self.expectedBFloat16Sum(ranks: ranks, index: $0) }

      bits = (0..<max(count, 1)).map { Self.bfloat16Input(rank: rank, index: $0) }
      try watched("reduceScatterSumBFloat16 of \(count) values") {
        try bits.withUnsafeMutableBufferPointer {
          try communicator.reduceScatterSumBFloat16($0.baseAddress!, counts: communicator.shardCounts(ofTotal: count))
        }
      }
      let shard = communicator.shard(ofTotal: count)
      failures += compareWithin(
        bits[shard].map(floatFromBF16), ulps: tolerance, "reduceScatterSumBFloat16(\(count)), shard \(shard)"
      ) { Self.expectedBFloat16Sum(ranks: ranks, index: shard.lowerBound + $0) }
    }
    for mode in [GradientBucketer.Mode.allReduce, .reduceScatter] {
      let count = 10_007
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
      defer { buffer.deallocate() }
      let bucketer = GradientBucketer(
        communicator: communicator, buffer: buffer, count: count, bucketSize: 1000, mode: mode,
        precision: .bf16)
      for index in 0..<count { buffer[index] = floatFromBF16(Self.bfloat16Input(rank: rank, index: index)) }
      for bound in stride(from: count - 1500, to: 0, by: -1500) { bucketer.markReady(upTo: bound) }
      try watched("GradientBucketer bf16 \(mode)") { try bucketer.finish() }
      let result = Array(UnsafeBufferPointer(start: buffer + bucketer.shard.lowerBound, count: bucketer.shard.count))
      failures += compareWithin(result, ulps: tolerance, "GradientBucketer(\(count) floats, bf16, \(mode))") {
        Self.expectedBFloat16Sum(ranks: ranks, index: bucketer.shard.lowerBound + $0)
      }
    }
    return failures
  }

  /// One failure line when some value differs from `expected` by more than `ulps` bf16 ulps of
  /// the expected value (2^(exponent − 7)); empty otherwise.
  private func compareWithin(_ values: [Float], ulps: Float, _ name: String, expected: (Int) -> Float) -> [String] {
    var bad = 0
    var first: (index: Int, got: Float, want: Float)?
    var largest: Float = 0
    for (index, value) in values.enumerated() {
      let want = expected(index)
      let ulp = Float(sign: .plus, exponent: want.exponent - 7, significand: 1)
      let error = abs(value - want) / ulp
      if !(error <= ulps) {
        bad += 1
        if first == nil { first = (index, value, want) }
        largest = max(largest, error.isNaN ? .infinity : error)
      }
    }
    guard let first else { return [] }
    return [
      "\(name): \(bad) of \(values.count) elements beyond \(ulps) bf16 ulp; first at \(first.index): "
        + "got \(first.got), expected \(first.want); largest error \(largest) ulp"
    ]
  }

  /// Two steps of the bucketer with `markReady` in pseudo-random decreasing bounds that differ
  /// between ranks (the buckets, hence the collectives, must not).
  private func checkBucketer(
    _ communicator: Communicator, count: Int, bucketSize: Int, mode: GradientBucketer.Mode,
    watchdog: Watchdog?
  ) throws -> [String] {
    let name = "GradientBucketer(\(count) floats, buckets of \(bucketSize), \(mode))"
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
    defer { buffer.deallocate() }
    let bucketer = GradientBucketer(
      communicator: communicator, buffer: buffer, count: count, bucketSize: bucketSize, mode: mode,
      watchdog: watchdog)
    var failures: [String] = []
    var random = UInt64(communicator.rank + 1) &* 0x9E37_79B9_7F4A_7C15
    for step in 0..<2 {
      for index in 0..<count { buffer[index] = .nan }
      var bound = count
      while bound > 0 {
        random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let lower = max(0, bound - 1 - Int(random >> 33) % max(1, count / 3 + 1))
        for index in lower..<bound {
          buffer[index] = Self.input(rank: communicator.rank, index: index) + Float(step)
        }
        bucketer.markReady(upTo: lower)
        bound = lower
      }
      try bucketer.finish()
      let result = Array(
        UnsafeBufferPointer(start: buffer + bucketer.shard.lowerBound, count: bucketer.shard.count))
      failures += compare(result, "\(name) step \(step), range \(bucketer.shard)") {
        Self.expectedSum(ranks: communicator.size, index: bucketer.shard.lowerBound + $0)
          + Float(step * communicator.size)
      }
    }
    return failures
  }

  /// One failure line naming the first bad index, the number of bad elements and the largest
  /// difference; empty when `values` equals `expected` exactly.
  private func compare(_ values: [Float], _ name: String, expected: (Int) -> Float) -> [String] {
    var bad = 0
    var first: (index: Int, got: Float, want: Float)?
    var largest: Float = 0
    for (index, value) in values.enumerated() {
      let want = expected(index)
      if value != want {
        bad += 1
        if first == nil { first = (index, value, want) }
        largest = max(largest, abs(value - want).isNaN ? .infinity : abs(value - want))
      }
    }
    guard let first else { return [] }
    return [
      "\(name): \(bad) of \(values.count) elements wrong; first at \(first.index): "
        + "got \(first.got), expected \(first.want); largest difference \(largest)"
    ]
  }
}
