// CollectiveBenchmark: times the collectives for a few buffer sizes and reports algorithm and
// bus bandwidth the way nccl-tests does (bus bandwidth = algorithm bandwidth × 2(N-1)/N for
// all-reduce, × (N-1)/N for reduce-scatter and all-gather, × 1 for broadcast; algorithm bandwidth
// = buffer bytes / time). The time of a size is the slowest rank's mean over the iterations.
// Also measures how much of the gradient all-reduce the GradientBucketer hides behind a
// simulated backward pass (a busy loop standing in for the BLAS work).

import Foundation

/// Bandwidth of the collectives of a communicator.
public enum CollectiveBenchmark {
  /// One measured (operation, size).
  public struct Row: Sendable {
    public var operation: String
    /// Floats in the whole buffer.
    public var floats: Int
    /// Seconds per call (slowest rank).
    public var seconds: Double
    /// Buffer bytes / seconds, GB/s.
    public var algorithmBandwidth: Double
    /// Algorithm bandwidth × the operation's bus factor, GB/s.
    public var busBandwidth: Double
  }

  /// Times all-reduce, reduce-scatter, all-gather and broadcast for each size (floats).
  /// Collective: every rank must call it with the same arguments.
  public static func run(
    on communicator: Communicator, sizes: [Int], iterations: Int, warmup: Int = 2,
    watchdog: Watchdog? = nil
  ) throws -> [Row] {
    let ranks = Double(communicator.size)
    let operations:
      [(name: String, busFactor: Double, call: (UnsafeMutablePointer<Float>, Int) throws -> Void)] = [
        ("allReduceSum", 2 * (ranks - 1) / ranks, { try communicator.allReduceSum($0, count: $1) }),
        ("reduceScatterSum", (ranks - 1) / ranks, { try communicator.reduceScatterSum($0, count: $1) }),
        ("allGather", (ranks - 1) / ranks, { try communicator.allGather($0, count: $1) }),
        ("broadcast", 1, { try communicator.broadcast($0, count: $1, root: 0) }),
      ]
    var rows: [Row] = []
    for floats in sizes {
      // Zeros stay zeros under repeated sums: no overflow, no denormals.
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, floats))
      buffer.initialize(repeating: 0, count: max(1, floats))
      defer { buffer.deallocate() }
      for operation in operations {
        let name = "\(operation.name) of \(floats) floats (benchmark)"
        let seconds: Double = try {
          if let watchdog { return try watchdog.watch(name) { try time() } }
          return try time()
        }()
        func time() throws -> Double {
          for _ in 0..<warmup { try operation.call(buffer, floats) }
          try communicator.barrier()
          let start = monotonicSeconds()
          for _ in 0..<iterations { try operation.call(buffer, floats) }
          return try communicator.allReduceMax((monotonicSeconds() - start) / Double(max(1, iterations)))
        }
        let algorithm = Double(floats * MemoryLayout<Float>.size) / seconds / 1e9
        rows.append(
          Row(
            operation: operation.name, floats: floats, seconds: seconds, algorithmBandwidth: algorithm,
            busBandwidth: algorithm * operation.busFactor))
      }
    }
    return rows
  }

  /// The rows as a fixed-width table, one line per (size, operation).
  public static func table(_ rows: [Row]) -> String {
    func pad(_ text: String, _ width: Int) -> String {
      String(repeating: " ", count: max(0, width - text.count)) + text
    }
    var lines = [
      pad("operation", 18) + pad("floats", 11) + pad("bytes", 12) + pad("time (us)", 12)
        + pad("algbw (GB/s)", 14) + pad("busbw (GB/s)", 14)
    ]
    for row in rows {
      lines.append(
        pad(row.operation, 18) + pad("\(row.floats)", 11) + pad("\(row.floats * 4)", 12)
          + pad(String(format: "%.1f", row.seconds * 1e6), 12)
          + pad(String(format: "%.3f", row.algorithmBandwidth), 14)
          + pad(String(format: "%.3f", row.busBandwidth), 14))
    }
    return lines.joined(separator: "\n")
  }

  /// One overlap measurement (seconds per step, slowest rank).
  public struct Overlap: Sendable {
    /// The simulated backward alone.
    public var computeSeconds: Double
    /// Backward, then one all-reduce of the whole buffer.
    public var sequentialSeconds: Double
    /// Backward, then the bucketer without overlap (the same buckets, reduced in `finish()`).
    public var inlineSeconds: Double
    /// Backward with the bucketer reducing finished buckets meanwhile, including `finish()`.
    public var overlappedSeconds: Double
    /// Time `finish()` waited (communication not hidden).
    public var exposedSeconds: Double
    /// Time the communication thread spent in collectives.
    public var communicationSeconds: Double
  }

  /// Simulates `iterations` backward passes of `computeSeconds` over a gradient of `floats`
  /// floats produced in `chunks` pieces from the end, once followed by a plain all-reduce and
  /// once with a GradientBucketer of `bucketSize` floats. Collective.
  public static func overlap(
    on communicator: Communicator, floats: Int, bucketSize: Int, computeSeconds: Double,
    chunks: Int = 16, iterations: Int = 5, watchdog: Watchdog? = nil
  ) throws -> Overlap {
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, floats))
    buffer.initialize(repeating: 0, count: max(1, floats))
    defer { buffer.deallocate() }
    let pieces = shardRanges(total: floats, parts: max(1, chunks)).reversed()
    func backward(_ finished: (Int) -> Void) {
      for piece in pieces {
        let until = monotonicSeconds() + computeSeconds / Double(max(1, chunks))
        while monotonicSeconds() < until {}
        finished(piece.lowerBound)
      }
    }
    let bucketer = GradientBucketer(
      communicator: communicator, buffer: buffer, count: floats, bucketSize: bucketSize, watchdog: watchdog)
    let inlineBucketer = GradientBucketer(
      communicator: communicator, buffer: buffer, count: floats, bucketSize: bucketSize, overlap: false,
      watchdog: watchdog)
    var compute = 0.0
    var sequential = 0.0
    var inline = 0.0
    var overlapped = 0.0
    var exposed = 0.0
    var communication = 0.0
    for _ in 0..<iterations {
      try communicator.barrier()
      var start = monotonicSeconds()
      backward { _ in }
      compute += monotonicSeconds() - start
      try communicator.allReduceSum(buffer, count: floats)
      sequential += monotonicSeconds() - start

      try communicator.barrier()
      start = monotonicSeconds()
      backward { inlineBucketer.markReady(upTo: $0) }
      try inlineBucketer.finish()
      inline += monotonicSeconds() - start

      try communicator.barrier()
      start = monotonicSeconds()
      backward { bucketer.markReady(upTo: $0) }
      let timings = try bucketer.finish()
      overlapped += monotonicSeconds() - start
      exposed += timings.exposedSeconds
      communication += timings.communicationSeconds
    }
    var times = [compute, sequential, inline, overlapped, exposed, communication].map {
      $0 / Double(max(1, iterations))
    }
    try communicator.allReduceMax(&times)
    return Overlap(
      computeSeconds: times[0], sequentialSeconds: times[1], inlineSeconds: times[2],
      overlappedSeconds: times[3], exposedSeconds: times[4], communicationSeconds: times[5])
  }
}
