// Which samples each rank reads at each step, as a pure function of (seed, step).
//
// Training: every epoch is one permutation of 0..<count (Fisher–Yates driven by
// `CounterRNG(seed:, samplerTag, epoch)`), cut into global batches of G samples, the incomplete
// tail dropped. Rank r of N takes the contiguous slice [r·G/N, (r+1)·G/N) of every global batch,
// so the N ranks together read exactly the global batch one rank would read alone. A global step
// s lives in epoch s / batchesPerEpoch at batch s % batchesPerEpoch; nothing else is state, so
// resuming at step s needs only s.
//
// Evaluation: 0..<count split into N contiguous ranges whose sizes differ by at most one, so
// every sample is counted exactly once whatever N is.

import Foundation
import MixerNumerics

/// Global permutation per epoch, global batches, and this rank's slice of each.
public final class ShardedSampler: @unchecked Sendable {
  /// Samples in the dataset.
  public let datasetCount: Int
  /// Samples per step over all ranks (G).
  public let globalBatch: Int
  /// Number of ranks (N).
  public let worldSize: Int
  /// This rank, in 0..<worldSize.
  public let rank: Int
  /// Seed of the per-epoch permutations.
  public let seed: UInt64
  /// Samples per step on this rank: G / N.
  public let localBatch: Int
  /// Complete global batches per epoch: count / G (the tail is dropped).
  public let batchesPerEpoch: Int

  static let samplerTag: UInt64 = 0x5045_524D  // "PERM"

  /// The two most recent permutations by epoch, shared by the loader threads (two, so that
  /// threads straddling an epoch boundary do not rebuild them in turn).
  private let lock = NSLock()
  private var cache: [(epoch: Int, permutation: [Int])] = []

  /// Throws `DataError.invalidConfiguration` unless N ≥ 1, 0 ≤ rank < N, G ≥ 1, G divisible by
  /// N, and count ≥ G.
  public init(
    datasetCount: Int, globalBatch: Int, worldSize: Int = 1, rank: Int = 0, seed: UInt64
  ) throws {
    guard worldSize >= 1 else {
      throw DataError.invalidConfiguration("world size \(worldSize) must be at least 1")
    }
    guard rank >= 0 && rank < worldSize else {
      throw DataError.invalidConfiguration("rank \(rank) is not in 0..<\(worldSize)")
    }
    guard globalBatch >= 1 else {
      throw DataError.invalidConfiguration("global batch \(globalBatch) must be at least 1")
    }
    guard globalBatch % worldSize == 0 else {
      throw DataError.invalidConfiguration(
        "global batch \(globalBatch) does not divide by world size \(worldSize); "
          + "choose a multiple of \(worldSize)")
    }
    guard datasetCount >= globalBatch else {
      throw DataError.invalidConfiguration(
        "dataset of \(datasetCount) samples is smaller than the global batch \(globalBatch)")
    }
    self.datasetCount = datasetCount
    self.globalBatch = globalBatch
    self.worldSize = worldSize
    self.rank = rank
    self.seed = seed
    localBatch = globalBatch / worldSize
    batchesPerEpoch = datasetCount / globalBatch
  }

  /// The epoch that global step `step` belongs to.
  public func epoch(ofStep step: Int) -> Int { step / batchesPerEpoch }

  /// The position of global step `step` within its epoch, in 0..<batchesPerEpoch.
  public func batchInEpoch(ofStep step: Int) -> Int { step % batchesPerEpoch }

  /// The global step of batch `batch` of epoch `epoch`.
  public func step(epoch: Int, batch: Int) -> Int { epoch * batchesPerEpoch + batch }

  /// The permutation of 0..<datasetCount used in `epoch` (Fisher–Yates, keyed by seed and epoch).
  public func permutation(epoch: Int) -> [Int] {
    precondition(epoch >= 0, "epoch must be non-negative")
    lock.lock()
    defer { lock.unlock() }
    if let hit = cache.first(where: { $0.epoch == epoch }) { return hit.permutation }
    let permutation = ShardedSampler.shuffled(count: datasetCount, seed: seed, epoch: epoch)
    cache.append((epoch, permutation))
    if cache.count > 2 { cache.removeFirst() }
    return permutation
  }

  /// The G dataset indices of global step `step`, over all ranks.
  public func globalIndices(step: Int) -> [Int] {
    slice(step: step, offset: 0, length: globalBatch)
  }

  /// This rank's G / N dataset indices of global step `step`.
  public func indices(step: Int) -> [Int] {
    slice(step: step, offset: rank * localBatch, length: localBatch)
  }

  private func slice(step: Int, offset: Int, length: Int) -> [Int] {
    precondition(step >= 0, "step must be non-negative")
    let order = permutation(epoch: epoch(ofStep: step))
    let start = batchInEpoch(ofStep: step) * globalBatch + offset
    return Array(order[start..<start + length])
  }

  /// Fisher–Yates shuffle of 0..<count driven by `CounterRNG(seed:, samplerTag, epoch)`.
  static func shuffled(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var rng = CounterRNG(seed: seed, samplerTag, UInt64(epoch))
    var order = Array(0..<count)
    if count > 1 {
      for i in stride(from: count - 1, to: 0, by: -1) {
        order.swapAt(i, rng.below(i + 1))
      }
    }
    return order
  }
}

/// Splitting an evaluation set over ranks so that each sample is counted exactly once.
public enum EvaluationSharding {
  /// Rank `rank`'s contiguous range of 0..<count: the first count % N ranks get one extra.
  public static func range(count: Int, worldSize: Int, rank: Int) -> Range<Int> {
    precondition(count >= 0 && worldSize >= 1 && rank >= 0 && rank < worldSize)
    let base = count / worldSize, extra = count % worldSize
    let start = rank * base + min(rank, extra)
    return start..<start + base + (rank < extra ? 1 : 0)
  }

  /// Every rank's range, in rank order; together they partition 0..<count.
  public static func ranges(count: Int, worldSize: Int) -> [Range<Int>] {
    (0..<worldSize).map { range(count: count, worldSize: worldSize, rank: $0) }
  }

  /// `range` cut into consecutive batches of `batchSize`; the last may be smaller.
  public static func batches(of range: Range<Int>, batchSize: Int) -> [Range<Int>] {
    precondition(batchSize >= 1)
    return stride(from: range.lowerBound, to: range.upperBound, by: batchSize).map {
      $0..<min($0 + batchSize, range.upperBound)
    }
  }
}
