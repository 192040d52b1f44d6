// `bench`'s figures: mfu is the median over the timed steps of each step's rate over the product
// rate measured right after it, so it lies within the per-step range it reports, and the sgemm
// rate is the median of those measurements.

import MixerKernels
import MixerModel
import XCTest
@testable import MixerTrain

final class BenchmarkTests: XCTestCase {
  func testMedian() {
    XCTAssertEqual(median([]), 0)
    XCTAssertEqual(median([3]), 3)
    XCTAssertEqual(median([5, 1, 3]), 3)
    XCTAssertEqual(median([4, 1, 3, 2]), 2.5)
  }

  func testMFUIsTheMedianOfPerStepRatiosWithinTheirRange() throws {
    let config = try MixerPreset.config(named: "tiny")
    let result = try benchmarkTraining(config: config, preset: "tiny", batch: 8, steps: 3, warmup: 1)
    XCTAssertEqual(result.steps, 3)
    XCTAssertEqual(result.mfuRange.count, 2)
    XCTAssertGreaterThan(result.mfuRange[0], 0)
    XCTAssertLessThanOrEqual(result.mfuRange[0], result.mfu)
    XCTAssertLessThanOrEqual(result.mfu, result.mfuRange[1])
    XCTAssertGreaterThan(result.sgemmGflops, 0)
    XCTAssertNil(result.bf16Gflops)
    // the figure is not the old one (whole-run rate over one ceiling) by construction, but it is
    // of the same size: within the spread of the per-step ratios
    let whole = result.gflops / result.sgemmGflops
    XCTAssertGreaterThan(whole, result.mfuRange[0] * 0.5)
    XCTAssertLessThan(whole, result.mfuRange[1] * 2)
  }
}
