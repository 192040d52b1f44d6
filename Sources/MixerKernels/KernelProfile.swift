// Optional time accounting per kernel family, for `mixer-dist bench --profile`. Off by default;
// when off each instrumented kernel pays one branch. Not thread-safe: only the bench turns it on.

import Foundation

/// Seconds spent per kernel family while `enabled`.
public enum KernelProfile {
  public nonisolated(unsafe) static var enabled = false
  public nonisolated(unsafe) static var seconds: [String: Double] = [:]
  public nonisolated(unsafe) static var flops: [String: Double] = [:]

  /// Runs `body`, adding its time to `family` when profiling is on.
  @inline(__always)
  public static func measure<T>(
    _ family: @autoclosure () -> String, flops count: @autoclosure () -> Double = 0, _ body: () -> T
  ) -> T {
    guard enabled else { return body() }
    let start = monotonicSeconds()
    let result = body()
    let name = family()
    seconds[name, default: 0] += monotonicSeconds() - start
    flops[name, default: 0] += count()
    return result
  }

  public static func reset() {
    seconds = [:]
    flops = [:]
  }
}

/// Seconds since an arbitrary origin, monotonic (the clock of every timing in the project).
@inline(__always)
public func monotonicSeconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
