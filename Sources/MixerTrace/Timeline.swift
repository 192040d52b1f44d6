// A timeline of one rank (`train --trace DIR`): spans with a start and an end, on the threads of
// the step (training, gradient communication, checkpoint writer, loader), written as Chrome
// trace-event JSON (what Perfetto and chrome://tracing open) with the rank as the process.
//
// Off by default: `Timeline.current` is nil and every hook is one load and a nil check (span names
// are autoclosures, never built). On, a span costs two clock reads and an append under a lock.
// Times are microseconds on the wall clock (the monotonic clock from a wall-clock origin taken at
// start), so ranks on one host line up exactly and hosts as well as their clocks agree.

import Foundation

/// The threads a span can be on (the trace's `tid`).
public enum TraceThread: Int, CaseIterable, Sendable {
  case training = 0, communication, checkpoint, loader

  public var name: String {
    switch self {
    case .training: "training"
    case .communication: "gradient communication"
    case .checkpoint: "checkpoint writer"
    case .loader: "data loader"
    }
  }
}

/// What a span measures (the trace's `cat`; `trace summary` adds them up by category).
public enum TraceCategory: String, CaseIterable, Sendable {
  case step, forward, backward, loss, communication, wait, loader, optimizer, checkpoint, evaluation
}

/// The spans of this process.
public final class Timeline: @unchecked Sendable {
  public struct Span: Sendable {
    public let name: String
    public let category: TraceCategory
    public let thread: TraceThread
    /// microseconds since the Unix epoch
    public let start: Double
    public let duration: Double
  }

  /// This process's timeline; nil when tracing is off. Set once, before training starts.
  nonisolated(unsafe) public static var current: Timeline?

  private let lock = NSLock()
  private var spans: [Span] = []
  private let wallOrigin: Double
  private let monotonicOrigin: Double

  public init() {
    wallOrigin = Date().timeIntervalSince1970 * 1e6
    monotonicOrigin = Timeline.monotonicMicroseconds()
    spans.reserveCapacity(1 << 16)
  }

  static func monotonicMicroseconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) * 1e6 + Double(time.tv_nsec) / 1e3
  }

  /// Now, in the timeline's microseconds.
  public func now() -> Double { wallOrigin + Timeline.monotonicMicroseconds() - monotonicOrigin }

  public func add(_ name: String, _ category: TraceCategory, thread: TraceThread, from start: Double, to end: Double) {
    lock.lock()
    spans.append(Span(name: name, category: category, thread: thread, start: start, duration: max(end - start, 0)))
    lock.unlock()
  }

  /// Runs `body` as one span when tracing is on (else just runs it).
  @inline(__always)
  public static func span<T>(
    _ name: @autoclosure () -> String, _ category: TraceCategory, thread: TraceThread = .training,
    _ body: () throws -> T
  ) rethrows -> T {
    guard let timeline = current else { return try body() }
    let start = timeline.now()
    defer { timeline.add(name(), category, thread: thread, from: start, to: timeline.now()) }
    return try body()
  }

  /// The start of a span to be ended with `end` (nil when tracing is off).
  @inline(__always)
  public static func begin() -> Double? { current?.now() }

  /// Ends a span started with `begin`.
  @inline(__always)
  public static func end(
    _ start: Double?, _ name: @autoclosure () -> String, _ category: TraceCategory, thread: TraceThread = .training
  ) {
    guard let start, let timeline = current else { return }
    timeline.add(name(), category, thread: thread, from: start, to: timeline.now())
  }

  public var recorded: [Span] {
    lock.lock()
    defer { lock.unlock() }
    return spans
  }

  /// The trace-event objects of this rank: process and thread names, then one complete ("X")
  /// event per span.
  public func events(rank: Int, host: String) -> [[String: Any]] {
    var events: [[String: Any]] = [
      ["name": "process_name", "ph": "M", "pid": rank, "tid": 0, "args": ["name": "rank \(rank) (\(host))"]],
      ["name": "process_sort_index", "ph": "M", "pid": rank, "tid": 0, "args": ["sort_index": rank]],
    ]
    for thread in TraceThread.allCases {
      events.append(["name": "thread_name", "ph": "M", "pid": rank, "tid": thread.rawValue, "args": ["name": thread.name]])
    }
    for span in recorded {
      events.append([
        "name": span.name, "cat": span.category.rawValue, "ph": "X", "pid": rank, "tid": span.thread.rawValue,
        "ts": (span.start * 1000).rounded() / 1000, "dur": (span.duration * 1000).rounded() / 1000,
      ])
    }
    return events
  }

  /// Writes this rank's trace (`rank-R.json`, a complete trace file by itself) into `folder`.
  public func write(into folder: URL, rank: Int, host: String) throws -> URL {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = folder.appendingPathComponent(String(format: "rank-%05d.json", rank))
    let object: [String: Any] = ["traceEvents": events(rank: rank, host: host), "displayTimeUnit": "ms"]
    try JSONSerialization.data(withJSONObject: object).write(to: url, options: .atomic)
    return url
  }
}
