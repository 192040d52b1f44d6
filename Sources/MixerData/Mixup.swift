// Mixup across the global batch, as big_vision does it (Zhang et al., "mixup: Beyond empirical risk
// minimization", 2018): one weight per step, a ~ Beta(α, α) then a = max(a, 1 − a), and
// `x'[g] = a·x[g] + (1 − a)·x[(g − 1) mod G]` for every global position g, the same for the targets:
// `t[g] = a·onehot(y[g]) + (1 − a)·onehot(y[(g − 1) mod G])` (label smoothing applies to both).
//
// Because the roll runs over the GLOBAL batch, the first sample of rank r's slice mixes with the last
// sample of rank r − 1's slice (rank 0's with the last of rank N − 1). Each rank loads that one
// partner image itself — its augmentation is a pure function of (seed, epoch, index), so it gets the
// same pixels its owner does — and the mixed global batch is bit-identical for any number of ranks.
// The weight is drawn from `CounterRNG(seed:, mixupTag, step)`: no state to save for a resume.

import Foundation
import MixerNumerics

/// Mixup with Beta(α, α) weights, one per global step.
public struct Mixup: Equatable, Sendable, Codable {
  /// α of the Beta distribution (the Mixer recipe: 0.5). 0 turns mixup off (weight 1).
  public var alpha: Double
  /// Seed of the per-step weights.
  public var seed: UInt64

  public init(alpha: Double, seed: UInt64) {
    precondition(alpha >= 0, "mixup α must be non-negative")
    self.alpha = alpha
    self.seed = seed
  }

  static let mixupTag: UInt64 = 0x4D49_5855  // "MIXU"

  /// The weight a of the own image at global step `step`: max(a, 1 − a) for a ~ Beta(α, α).
  public func weight(step: Int) -> Float {
    guard alpha > 0 else { return 1 }
    var rng = CounterRNG(seed: seed, Mixup.mixupTag, UInt64(step))
    let a = sampleBeta(alpha, alpha, rng: &rng)
    return Float(max(a, 1 - a))
  }

  /// The global position that position `position` of a batch of `globalBatch` mixes with.
  public static func partner(of position: Int, globalBatch: Int) -> Int {
    (position - 1 + globalBatch) % globalBatch
  }
}

/// The second label and the weight of every sample of a mixed batch.
public struct MixupLabels: Equatable, Sendable {
  /// Weight of the own image and label (a ≥ 1/2).
  public var weight: Float
  /// Label of each sample's partner, `[B]`.
  public var partnerLabels: [Int32]

  public init(weight: Float, partnerLabels: [Int32]) {
    self.weight = weight
    self.partnerLabels = partnerLabels
  }
}

/// targets[b, :] = a·smooth(labels[b]) + (1 − a)·smooth(partnerLabels[b]), where
/// smooth(y) = onehot(y)·(1 − smoothing) + smoothing / K. Overwrites `targets` `[batch, classes]`.
public func mixupTargets(
  targets: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>,
  partnerLabels: UnsafePointer<Int32>, weight: Float, batch: Int, classes: Int, smoothing: Float
) {
  targets.update(repeating: smoothing / Float(classes), count: batch * classes)
  for b in 0..<batch {
    targets[b * classes + Int(labels[b])] += weight * (1 - smoothing)
    targets[b * classes + Int(partnerLabels[b])] += (1 - weight) * (1 - smoothing)
  }
}

/// A Beta(a, b) sample as X / (X + Y) of two gamma variates.
func sampleBeta(_ a: Double, _ b: Double, rng: inout CounterRNG) -> Double {
  let x = sampleGamma(a, rng: &rng)
  let y = sampleGamma(b, rng: &rng)
  return x + y > 0 ? x / (x + y) : 0.5
}

/// A Gamma(shape, 1) sample (Marsaglia and Tsang 2000; shape < 1 through Gamma(shape + 1)·U^(1/shape)).
func sampleGamma(_ shape: Double, rng: inout CounterRNG) -> Double {
  if shape < 1 {
    let u = max(rng.uniformDouble(), 1e-300)
    return sampleGamma(shape + 1, rng: &rng) * pow(u, 1 / shape)
  }
  let d = shape - 1.0 / 3.0
  let c = 1 / (9 * d).squareRoot()
  while true {
    let x = rng.normal()
    var v = 1 + c * x
    guard v > 0 else { continue }
    v = v * v * v
    let u = max(rng.uniformDouble(), 1e-300)
    if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) {
      return d * v
    }
  }
}

// MARK: - A rank's training batch

/// A dataset whose training augmentation depends on the epoch: `load(index, epoch:)` draws the
/// crop, flip and RandAugment ops from (seed, epoch, index). Its plain `load(index)` is epoch 0.
public protocol EpochAugmentedDataset: Dataset {
  func load(_ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int
}

/// A dataset seen at one epoch: `load(index)` is the base's `load(index, epoch:)`.
public struct EpochView: Dataset {
  public let base: any EpochAugmentedDataset
  public let epoch: Int

  public init(_ base: any EpochAugmentedDataset, epoch: Int) {
    self.base = base
    self.epoch = epoch
  }

  public var count: Int { base.count }
  public var numClasses: Int { base.numClasses }
  public var classNames: [String] { base.classNames }
  public var height: Int { base.height }
  public var width: Int { base.width }
  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    try base.load(index, epoch: epoch, into: pixels)
  }
}

/// `dataset` as seen in `epoch`: an `EpochView` when its augmentation depends on the epoch, else
/// itself.
public func epochView(of dataset: any Dataset, epoch: Int) -> any Dataset {
  if let augmented = dataset as? any EpochAugmentedDataset {
    return EpochView(augmented, epoch: epoch)
  }
  return dataset
}

/// Fills `batch` with this rank's slice of global step `step` (the sampler's indices, augmented
/// for the step's epoch) with the `targets` the task learns from and, when `mixup` is given with
/// α > 0, mixes it with the partners along the global batch; returns the partner labels and
/// weight then (nil without mixup).
public func fillTrainingBatch(
  _ batch: inout Batch, dataset: any Dataset, targets: BatchTargets, sampler: ShardedSampler, step: Int,
  mixup: Mixup? = nil
) throws -> MixupLabels? {
  try fillTrainingBatch(
    &batch, dataset: dataset, targets: targets, globalIndices: sampler.globalIndices(step: step),
    rank: sampler.rank, worldSize: sampler.worldSize, epoch: sampler.epoch(ofStep: step), step: step, mixup: mixup)
}

/// Fills `batch` with rank `rank`'s contiguous slice (G / N samples) of the global batch
/// `globalIndices` (dataset indices, G divisible by N) and their `targets`, loaded with
/// `dataset`'s augmentation for `epoch`, and mixed as described at the top of this file when
/// `mixup` has α > 0 (labels only: masks cannot be mixed). A failing sample (own or partner)
/// throws `DataError.sampleFailed` naming it and `step`.
public func fillTrainingBatch(
  _ batch: inout Batch, dataset: any Dataset, targets: BatchTargets, globalIndices: [Int], rank: Int,
  worldSize: Int, epoch: Int, step: Int, mixup: Mixup? = nil
) throws -> MixupLabels? {
  let globalBatch = globalIndices.count
  guard worldSize >= 1, rank >= 0, rank < worldSize, globalBatch % worldSize == 0, globalBatch > 0
  else {
    throw DataError.invalidConfiguration(
      "global batch of \(globalBatch) cannot be split into \(worldSize) equal slices for rank \(rank)"
    )
  }
  let local = globalBatch / worldSize
  let start = rank * local
  if targets == .masks {
    if let mixup, mixup.alpha > 0 {
      throw DataError.invalidConfiguration("mixup does not apply to segmentation data (masks cannot be mixed)")
    }
    try batch.fill(
      segmentation: dataset, indices: Array(globalIndices[start..<start + local]), epoch: epoch, step: step)
    return nil
  }
  let source = epochView(of: dataset, epoch: epoch)
  try batch.fill(dataset: source, indices: Array(globalIndices[start..<start + local]), step: step)
  guard let mixup, mixup.alpha > 0 else { return nil }

  // The partner of the slice's first sample lives on the previous rank (or is the batch's last).
  let imageFloats = source.pixelsPerImage
  var partnerPixels = [Float](repeating: 0, count: imageFloats)
  var partnerLabel: Int32 = 0
  let partnerIndex = globalIndices[Mixup.partner(of: start, globalBatch: globalBatch)]
  try partnerPixels.withUnsafeMutableBufferPointer { pixels in
    try withUnsafeMutablePointer(to: &partnerLabel) { label in
      try assembleBatch(
        pixels: pixels.baseAddress!, labels: label, dataset: source, indices: [partnerIndex],
        step: step)
    }
  }
  let a = mixup.weight(step: step)
  let b = 1 - a
  batch.pixels.withUnsafeMutableBufferPointer { pixels in
    let x = pixels.baseAddress!
    // Backwards, so x[i − 1] is still unmixed when x[i] reads it.
    for i in stride(from: local - 1, through: 1, by: -1) {
      let own = x + i * imageFloats
      let other = x + (i - 1) * imageFloats
      for p in 0..<imageFloats { own[p] = a * own[p] + b * other[p] }
    }
    for p in 0..<imageFloats { x[p] = a * x[p] + b * partnerPixels[p] }
  }
  let partners = [partnerLabel] + batch.labels.dropLast()
  return MixupLabels(weight: a, partnerLabels: partners)
}
