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
    // the ceiling's steadiness: nine single runs of the model's largest product, slowest first
    XCTAssertEqual(result.ceilingShape, [config.tokens * 8, config.channelsMLP, config.hidden])
    XCTAssertEqual(result.ceilingRuns.count, 9)
    XCTAssertEqual(result.ceilingRuns, result.ceilingRuns.sorted())
    XCTAssertGreaterThan(result.ceilingRuns[0], 0)
    let spread = try XCTUnwrap(result.ceilingSpread)
    XCTAssertLessThanOrEqual(spread.slowest, spread.median)
    XCTAssertLessThanOrEqual(spread.median, 1)
    XCTAssertEqual(spread.median, result.ceilingRuns[4] / result.ceilingRuns[8], accuracy: 1e-12)
  }

  /// The spread's runs are timed one by one, in the asked precision: each rate is the product's
  /// FLOPs over one run, so none can beat the fastest, and a bf16 run lists as many runs.
  func testProductSpreadRunsEachProductOnce() throws {
    let runs = measureProductSpread(m: 64, n: 48, k: 32, runs: 5, bf16: false)
    XCTAssertEqual(runs.count, 5)
    XCTAssertEqual(runs, runs.sorted())
    XCTAssertTrue(runs.allSatisfy { $0 > 0 && $0.isFinite })
    XCTAssertEqual(measureProductSpread(m: 64, n: 48, k: 32, runs: 0, bf16: false), [])
    let bf16 = measureProductSpread(m: 64, n: 48, k: 32, runs: 3, bf16: true)
    XCTAssertEqual(bf16.count, 3)
    XCTAssertEqual(bf16, bf16.sorted())
  }

  /// bench warns when this CPU's bf16 products are slower than its sgemm (an Intel core whose AMX
  /// is absent or hidden): the note gives the measured ratio; none where bf16 is the faster, and
  /// none for an fp32 run.
  func testBF16NoteOnlyWhereBF16ProductsAreSlower() throws {
    var result = BenchResult(
      preset: "tiny", batch: 8, ranks: 1, threads: 1, blasCore: "Cooperlake", steps: 1, secondsPerStep: 1,
      forwardSeconds: 0.4, backwardSeconds: 0.5, optimizerSeconds: 0.1, imagesPerSecond: 8, gflops: 60,
      sgemmGflops: 140, precision: .bf16, bf16Gflops: 84, mfu: 0.8, exposedCommunicationShare: 0)
    let note = try XCTUnwrap(result.bf16Note)
    XCTAssertTrue(note.hasPrefix("bf16 products run at 0.60x the sgemm rate on this CPU (oneDNN "), note)
    XCTAssertTrue(note.contains("expect bf16 steps no faster than fp32 here"), note)
    result.bf16Gflops = 260
    XCTAssertNil(result.bf16Note)
    result.bf16Gflops = nil
    result.precision = .fp32
    XCTAssertNil(result.bf16Note)
  }

  /// train's start-up note: measured only for bf16 on oneDNN's own kernels, and then it says what
  /// the two rates it measured say (an fp32 run, and bf16 on the portable kernels, which their own
  /// note covers, measure nothing).
  func testTrainingSpeedNoteFollowsTheMeasuredRates() throws {
    XCTAssertNil(Precision.fp32.measuredSpeedNote())
    let forced = DNNL.forcePortable
    DNNL.forcePortable = true
    XCTAssertNil(Precision.bf16.measuredSpeedNote())
    DNNL.forcePortable = forced
    guard Precision.bf16.runsNatively else { return }
    let note = Precision.bf16.measuredSpeedNote()
    // the same measurement again, to tell which way this CPU falls (the note's own ratio is one
    // sample: only a CPU whose two rates lie within a few percent could see the two disagree)
    let ratio = measureBF16Matmul(m: 2048, n: 2048, k: 2048, repeats: 1) / measureSgemm(m: 2048, n: 2048, k: 2048, repeats: 1)
    if ratio < 0.9 { XCTAssertTrue(note?.hasPrefix("bf16 products run at 0.") == true, note ?? "no note at ratio \(ratio)") }
    if ratio > 1.1 { XCTAssertNil(note, "bf16 measured at \(ratio)x sgemm") }
  }
}
