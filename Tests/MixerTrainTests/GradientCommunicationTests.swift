// The gradient reduction's defaults and formats (issue 12, items 4 and 6), on in-process ranks
// (LocalGroup): the default bucket rule (BucketSizeRule) and an explicit size winning over it, a default step
// starts more than one bucket while backward is still running, and `--grad-comm bf16` trains close
// to fp32 communication without being the same. The bf16 collectives themselves are checked on
// real MPI by CollectiveCheck (mixer-comm-check under mpirun, MPIRunTests).

import MixerDistributed
import MixerNumerics
import MixerModel
import MixerTestSupport
import XCTest

@testable import MixerTrain

final class GradientCommunicationTests: XCTestCase {
  /// The default bucket rule: 4-16 equal buckets, fewer as the ranks grow, so that the ring's
  /// 2(N-1) messages per bucket stay within a tenth of the bandwidth term on a 10 us, 100 Gbit/s
  /// link unless the 4-bucket floor for overlap wins. (The old fixed 131,072 floats cut B/16 into
  /// 457 buckets at every world size.)
  func testDefaultBucketRuleFollowsParametersAndRanks() throws {
    var counts: [String: [Int]] = [:]
    for preset in ["tiny", "cifar", "S/16", "B/16"] {
      let parameters = try MixerPreset.config(named: preset).parameterCount
      counts[preset] = [1, 2, 4, 8, 16, 32, 64, 512].map { ranks in
        let floats = BucketSizeRule.bucketFloats(parameterCount: parameters, worldSize: ranks)
        let buckets = (parameters + floats - 1) / floats
        XCTAssertEqual(buckets, BucketSizeRule.buckets(parameterCount: parameters, worldSize: ranks), "\(preset) \(ranks)")
        XCTAssertLessThanOrEqual(floats * buckets - parameters, buckets, "\(preset) \(ranks): equal buckets")
        if buckets > BucketSizeRule.minimumBuckets, ranks > 1 {
          // latency (2(N-1) x buckets x 10 us) within 10% of the bandwidth term (2(N-1)/N x 4P bytes / 12.5 GB/s)
          let latency = 2 * Double(ranks - 1) * Double(buckets) * 10e-6
          let bandwidth = 2 * Double(ranks - 1) / Double(ranks) * 4 * Double(parameters) / 12.5e9
          XCTAssertLessThanOrEqual(latency, 0.2 * bandwidth, "\(preset) \(ranks)")
        }
        return buckets
      }
    }
    XCTAssertEqual(counts["tiny"], [4, 4, 4, 4, 4, 4, 4, 4])
    XCTAssertEqual(counts["cifar"], [13, 13, 4, 4, 4, 4, 4, 4])
    XCTAssertEqual(counts["B/16"], [16, 16, 16, 16, 12, 6, 4, 4])
    XCTAssertEqual(counts["S/16"]?.first, 16)
  }

  /// An explicit --bucket-size wins over the rule; without one a job's size follows its ranks.
  func testExplicitBucketSizeWins() throws {
    var config = TrainConfig(model: try MixerPreset.config(named: "B/16"))
    XCTAssertNil(config.bucketFloats)
    let b16 = config.model.parameterCount
    XCTAssertEqual(config.gradientBucketFloats(worldSize: 2), (b16 + 15) / 16)
    XCTAssertEqual(config.gradientBucketFloats(worldSize: 64), (b16 + 3) / 4)
    config.bucketFloats = 131_072
    XCTAssertEqual(config.gradientBucketFloats(worldSize: 64), 131_072)
    config.bucketFloats = 0
    XCTAssertThrowsError(try config.validate(worldSize: 1))
  }

  /// With every default (tiny preset, default bucket size, overlap on), one step on 2 ranks hands
  /// more than one bucket to the communication thread before backward has finished.
  func testDefaultStepStartsSeveralBucketsBeforeBackwardEnds() throws {
    let config = TrainConfig.defaults
    let timings = try LocalGroup.run(size: 2) { comm -> GradientBucketer.Timings in
      let model = try MixerModel(config: config.model, seed: 0)
      let step = TrainingStep(model: model, config: config, comm: comm, localBatch: 2)
      let batch = config.model.task.training.syntheticBatch(config.model, size: 2)
      return try step.run(batch: batch, step: 0).communication
    }
    for (rank, timing) in timings.enumerated() {
      XCTAssertEqual(timing.buckets, 4, "rank \(rank)")
      XCTAssertGreaterThan(timing.bucketsStartedBeforeFinish, 1, "rank \(rank): \(timing)")
    }
  }

  /// Without overlap nothing is started during backward (the counter can tell the two apart).
  func testNoOverlapStartsNothingDuringBackward() throws {
    var config = TrainConfig.defaults
    config.overlap = false
    let timings = try LocalGroup.run(size: 2) { comm -> GradientBucketer.Timings in
      let model = try MixerModel(config: config.model, seed: 0)
      let step = TrainingStep(model: model, config: config, comm: comm, localBatch: 2)
      let batch = config.model.task.training.syntheticBatch(config.model, size: 2)
      return try step.run(batch: batch, step: 0).communication
    }
    XCTAssertEqual(timings.map(\.bucketsStartedBeforeFinish), [0, 0])
    XCTAssertEqual(timings.map(\.buckets), [4, 4])
  }

  /// Rounding to bf16: to nearest, ties to even, specials kept.
  func testBFloat16Rounding() {
    XCTAssertEqual(bf16Bits(1), 0x3F80)
    XCTAssertEqual(bf16Bits(1 + 0x1p-8), 0x3F80)  // tie: down to even
    XCTAssertEqual(bf16Bits(1 + 0x1p-7 + 0x1p-8), 0x3F82)  // tie: up to even
    XCTAssertEqual(bf16Bits(1 + 0x1p-8 + 0x1p-20), 0x3F81)  // above the tie: up
    XCTAssertEqual(bf16Bits(-2.5), 0xC020)
    XCTAssertEqual(bf16Bits(.infinity), 0x7F80)
    XCTAssertEqual(bf16Bits(.greatestFiniteMagnitude), 0x7F80)  // rounds up to infinity
    XCTAssertTrue(floatFromBF16(bf16Bits(.nan)).isNaN)
    XCTAssertEqual(floatFromBF16(0x3F81), 1 + 0x1p-7)
    var sum: [UInt16] = [bf16Bits(1)], one: [UInt16] = [bf16Bits(0x1p-8)]
    addBFloat16(&sum, &one, count: 1)  // 1 + 2^-8 is a tie: rounds once, to 1
    XCTAssertEqual(sum, [0x3F80])
  }

  /// Training 2 in-process ranks with bf16 gradient communication stays close to fp32
  /// communication (loss within 1%, parameters within 2% of their scale) and is not the same run.
  func testBFloat16CommunicationTrainsCloseToFP32() throws {
    func train(_ precision: GradientPrecision) throws -> (parameters: [Float], loss: Double) {
      var config = smallTrainConfig(runDirectory: try makeTemporaryDirectory(self), steps: 8)
      config.validationExamples = 20
      config.evalBatch = 20
      config.bucketFloats = 3_000
      config.gradientCommunication = precision
      let results = try LocalGroup.run(size: 2) { comm -> ([Float], Double) in
        let trainer = try Trainer(config: config, comm: comm, overwrite: true)
        let summary = try trainer.run()
        return (trainer.model.parameters.array(), summary.finalLoss)
      }
      XCTAssertEqual(results[0].0, results[1].0, "ranks must agree with \(precision)")
      return results[0]
    }
    let fp32 = try train(.fp32)
    let bf16 = try train(.bf16)
    XCTAssertNotEqual(fp32.parameters, bf16.parameters, "bf16 communication changed nothing")
    XCTAssertEqual(bf16.loss, fp32.loss, accuracy: 0.01 * fp32.loss)
    let scale = fp32.parameters.map(abs).max()!
    let worst = zip(fp32.parameters, bf16.parameters).map { abs($0 - $1) }.max()!
    XCTAssertLessThan(worst, 0.02 * scale, "largest parameter difference \(worst), scale \(scale)")
  }
}
