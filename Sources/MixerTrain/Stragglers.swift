// Which rank is slow. Every step's scalar all-reduce (loss, gradient norm, stop request) also
// carries each rank's compute seconds and loader-wait seconds, each in the rank's own slot of a
// vector of world-size entries, so every rank learns every rank's times at no extra collective.
// Rank 0 sums them over each `--log-every` window and names a rank whose compute per step is
// persistently above the median: in two windows in a row, by more than `threshold` and by more
// than `floorSeconds` (so the jitter of millisecond steps is not called slowness).

import Foundation

/// Rank 0's view of the ranks' compute and loader-wait times, window by window.
struct StragglerWatch {
  /// relative excess over the median compute that counts as slow
  var threshold = 0.25
  /// and the absolute excess per step
  var floorSeconds = 0.002
  /// a rank named once is named again only after this many windows
  var quietWindows = 10
  let hosts: [String]
  var compute: [Double]
  var loader: [Double]
  var steps = 0
  var window = 0
  var slowBefore: Set<Int> = []
  var lastNamed: [Int: Int] = [:]

  init(hosts: [String]) {
    self.hosts = hosts
    compute = Array(repeating: 0, count: hosts.count)
    loader = Array(repeating: 0, count: hosts.count)
  }

  /// Adds one step's per-rank seconds.
  mutating func add(compute stepCompute: [Double], loader stepLoader: [Double]) {
    guard stepCompute.count == compute.count, stepLoader.count == loader.count else { return }
    for r in compute.indices {
      compute[r] += stepCompute[r]
      loader[r] += stepLoader[r]
    }
    steps += 1
  }

  /// Ends a window: the warning lines for ranks slow in this window and the one before.
  mutating func endWindow() -> [String] {
    defer {
      for r in compute.indices { compute[r] = 0; loader[r] = 0 }
      steps = 0
      window += 1
    }
    guard steps > 0, compute.count > 1 else { return [] }
    let perStep = compute.map { $0 / Double(steps) }
    let median = perStep.sorted()[perStep.count / 2]
    let slow = Set(perStep.indices.filter {
      perStep[$0] > median * (1 + threshold) && perStep[$0] - median > floorSeconds
    })
    defer { slowBefore = slow }
    var lines: [String] = []
    for r in slow.sorted() where slowBefore.contains(r) {
      if let named = lastNamed[r], window - named < quietWindows { continue }
      lastNamed[r] = window
      lines.append(String(
        format: "warning: rank %d (host %@) is slow: compute %.1f ms per step, %.0f%% above the median %.1f ms "
          + "(its loader wait %.1f ms per step); the other ranks wait for it in every all-reduce",
        r, hosts[r], perStep[r] * 1000, (perStep[r] / max(median, 1e-9) - 1) * 100, median * 1000,
        loader[r] / Double(steps) * 1000))
    }
    return lines
  }
}
