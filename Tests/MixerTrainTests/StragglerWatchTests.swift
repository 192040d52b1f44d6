// StragglerWatch: a rank is named when its compute per step is above the median by more than the
// threshold and the floor in two windows in a row, and then not again for `quietWindows` windows.

import XCTest

@testable import MixerTrain

final class StragglerWatchTests: XCTestCase {
  func window(_ watch: inout StragglerWatch, compute: [Double], steps: Int = 5) -> [String] {
    for _ in 0..<steps { watch.add(compute: compute, loader: compute.map { _ in 0.001 }) }
    return watch.endWindow()
  }

  func testNamesAPersistentlySlowRankOnceInTenWindows() {
    var watch = StragglerWatch(hosts: ["a", "b", "c"])
    let slow = [0.010, 0.040, 0.011]
    XCTAssertEqual(window(&watch, compute: slow), [], "one window is not persistent")
    let named = window(&watch, compute: slow)
    XCTAssertEqual(named.count, 1)
    XCTAssertTrue(named[0].hasPrefix("warning: rank 1 (host b) is slow: compute 40.0 ms per step, 264% above the median 11.0 ms"), named[0])
    XCTAssertTrue(named[0].contains("its loader wait 1.0 ms per step"), named[0])
    for _ in 0..<9 { XCTAssertEqual(window(&watch, compute: slow), []) }
    XCTAssertEqual(window(&watch, compute: slow).count, 1, "named again after 10 windows")
  }

  func testJitterAndSmallExcessesAreNotSlowness() {
    var watch = StragglerWatch(hosts: ["a", "b", "c", "d"])
    for _ in 0..<5 {
      // 20% above the median: under the 25% threshold
      XCTAssertEqual(window(&watch, compute: [0.100, 0.120, 0.100, 0.101]), [])
      // 3x the median, but only 1 ms more per step: under the 2 ms floor
      XCTAssertEqual(window(&watch, compute: [0.0005, 0.0015, 0.0005, 0.0005]), [])
    }
    // slow in alternate windows: never two in a row
    for k in 0..<6 {
      XCTAssertEqual(window(&watch, compute: k % 2 == 0 ? [0.01, 0.05, 0.01, 0.01] : [0.01, 0.01, 0.01, 0.01]), [])
    }
  }

  func testOneRankIsNeverSlow() {
    var watch = StragglerWatch(hosts: ["a"])
    for _ in 0..<3 { XCTAssertEqual(window(&watch, compute: [1.0]), []) }
  }
}
