// The moving average of the parameters (`--ema`): the update by hand on a tiny buffer (a range of
// it, as a ZeRO-1 shard), timm's warm-up of the decay against its formula written out, and the
// swap that evaluates the averaged parameters giving the raw ones back bit for bit (one rank, and
// two in-process ranks under ZeRO-1, where the all-gather assembles the average).

import MixerTestSupport
import XCTest
import MixerDistributed
import MixerModel
@testable import MixerTrain

final class ExponentialMovingAverageTests: XCTestCase {
  /// Elements 1..<3 of a 4-float buffer: starts as the parameters, the first update copies them
  /// (decay 0), later ones average with the decay, elements outside the range are never read.
  func testUpdateByHandOnATinyBuffer() {
    let decay: Float = 0.9
    let average = ExponentialMovingAverage(decay: decay, warmup: false, range: 1..<3)
    var parameters: [Float] = [100, 2, 3, 100]
    average.reset(from: parameters)
    XCTAssertEqual(average.values.array(), [2, 3])
    parameters = [-1, 5, 7, -1]
    average.update(parameters: parameters, update: 1)
    XCTAssertEqual(average.values.array(), [5, 7], "update 1 copies the parameters (timm: decay 0 at the first step)")
    parameters = [-1, 15, 17, -1]
    average.update(parameters: parameters, update: 2)
    // 0.9 · 5 + 0.1 · 15 = 6, 0.9 · 7 + 0.1 · 17 = 8
    assertClose(average.values.array(), [6, 8] as [Double], relative: 1e-6, absolute: 0, "update 2")
    parameters = [-1, 6, 8, -1]
    average.update(parameters: parameters, update: 3)
    assertClose(average.values.array(), [6, 8] as [Double], relative: 1e-6, absolute: 0, "a constant stays")
    // 1 − d is computed in fp32, so d + (1 − d) = 1 exactly: a constant parameter is a fixed point
    let slow = ExponentialMovingAverage(decay: 0.9999, warmup: false, range: 0..<1)
    slow.reset(from: [0.3])
    for update in 2...1_000 { slow.update(parameters: [0.3], update: update) }
    XCTAssertEqual(slow.values.array(), [0.3], "an average of a constant drifts")
  }

  /// timm's ModelEmaV3 with use_warmup (gamma 1, power 2/3): t = update − 1, decay 0 at t = 0,
  /// else min(DECAY, 1 − (1 + t)^(−2/3)); without it, DECAY from the second update.
  func testWarmupFollowsTimm() {
    func decay(_ update: Int, _ value: Float, _ warmup: Bool) -> Float {
      ExponentialMovingAverage.decay(update: update, decay: value, warmup: warmup)
    }
    XCTAssertEqual(decay(1, 0.99, true), 0)
    XCTAssertEqual(decay(1, 0.99, false), 0)
    XCTAssertEqual(decay(2, 0.99, false), 0.99)
    // 1 − 2^(−2/3) = 0.3700394751, 1 − 3^(−2/3) = 0.5192501432, 1 − 11^(−2/3) = …
    XCTAssertEqual(Double(decay(2, 0.99, true)), 0.3700394751, accuracy: 1e-7)
    XCTAssertEqual(Double(decay(3, 0.99, true)), 0.5192501432, accuracy: 1e-7)
    XCTAssertEqual(Double(decay(11, 0.99, true)), 1 - pow(11.0, -2.0 / 3.0), accuracy: 1e-7)
    // (1 + t)^(−2/3) = 0.01 at 1 + t = 1000: the warm-up reaches 0.99 at update 1000
    XCTAssertLessThan(decay(999, 0.99, true), 0.99)
    XCTAssertEqual(decay(1_001, 0.99, true), 0.99)
    XCTAssertEqual(decay(1_000_000, 0.99, true), 0.99)
    // the warm-up only ever lowers the decay
    for update in [2, 10, 100, 5_000] { XCTAssertLessThanOrEqual(decay(update, 0.999, true), decay(update, 0.999, false)) }
  }

  /// The averaged parameters are in the model during the body, and the raw ones come back with
  /// their bits, alone and as two ZeRO-1 shards.
  func testSwapGivesTheRawParametersBack() throws {
    let config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 8, hidden: 8, blocks: 1, tokensMLP: 4, channelsMLP: 8, classes: 3)
    for ranks in [1, 2] {
      let results = try onRanks(ranks) { comm -> ([Float], [Float], [Float]) in
        let model = try MixerModel(config: config, seed: 3)
        let total = model.table.count
        let shard = ranks == 1 ? 0..<total : shardRanges(total: total, parts: ranks)[comm.rank]
        let average = ExponentialMovingAverage(decay: 0.5, warmup: false, range: shard)
        for i in 0..<shard.count { average.values[i] = Float(shard.lowerBound + i) }
        let raw = model.parameters.array()
        let inside = try average.withAveragedParameters(in: model, comm: comm, sharded: ranks > 1) {
          model.parameters.array()
        }
        return (raw, inside, model.parameters.array())
      }
      for (raw, inside, after) in results {
        XCTAssertEqual(inside, (0..<raw.count).map(Float.init), "\(ranks) rank(s): the whole average is in the model")
        XCTAssertEqual(after, raw, "\(ranks) rank(s): the raw parameters come back")
      }
    }
  }
}

/// Runs `body` on one process or on `ranks` in-process ranks.
func onRanks<T>(_ ranks: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
  ranks == 1 ? [try body(SingleProcessCommunicator())] : try LocalGroup(size: ranks).run { try body($0) }
}
