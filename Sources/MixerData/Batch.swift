// Batch assembly: images NHWC `[B, H, W, 3]` (float, [-1, 1]) and labels `[B]` (Int32) for a list
// of dataset indices. `assembleBatch` writes through raw pointers, so several threads may fill
// disjoint slices of one batch; it overwrites its outputs. A failing sample is reported by index.

/// What a batch carries besides its images: the targets its task learns from (the task says
/// which, `TaskHead.batchTargets`; the data layer never asks what the data is).
public enum BatchTargets: Sendable {
  /// a class per image (`labels`), mixed by mixup when asked
  case labels
  /// a class per pixel (`masks`, `[B, H, W]`); `labels` are all 0 and mixup does not apply
  case masks
}

/// One batch of samples: the unit the loader hands to training.
public struct Batch: Sendable {
  /// The global step this batch belongs to (-1 when not made by a sampler).
  public var step: Int
  /// Dataset indices, `[B]`.
  public var indices: [Int]
  /// Images, `[B, H, W, 3]` row-major.
  public var pixels: [Float]
  /// Labels, `[B]`.
  public var labels: [Int32]
  /// Mixup partner labels and weight when the pixels are mixed (nil otherwise).
  public var mixup: MixupLabels?
  /// Segmentation masks, `[B, H, W]` class indices (empty for classification data).
  public var masks: [Int32] = []

  /// Samples in the batch (B).
  public var size: Int { indices.count }

  public init(step: Int = -1, indices: [Int] = [], pixels: [Float] = [], labels: [Int32] = []) {
    self.step = step
    self.indices = indices
    self.pixels = pixels
    self.labels = labels
  }

  /// A batch holding samples `indices` of `dataset`.
  public init(dataset: some Dataset, indices: [Int], step: Int = -1) throws {
    self.init()
    try fill(dataset: dataset, indices: indices, step: step)
  }

  /// Refills this batch with samples `indices` of `dataset`, reusing its buffers.
  public mutating func fill(dataset: some Dataset, indices: [Int], step: Int = -1) throws {
    let pixelCount = indices.count * dataset.pixelsPerImage
    if pixels.count != pixelCount {
      pixels.removeAll(keepingCapacity: true)
      pixels.append(contentsOf: repeatElement(0, count: pixelCount))
    }
    if labels.count != indices.count {
      labels = [Int32](repeating: 0, count: indices.count)
    }
    self.step = step
    self.indices = indices
    try pixels.withUnsafeMutableBufferPointer { pixelBuffer in
      try labels.withUnsafeMutableBufferPointer { labelBuffer in
        try assembleBatch(
          pixels: pixelBuffer.baseAddress!, labels: labelBuffer.baseAddress!,
          dataset: dataset, indices: indices, step: step >= 0 ? step : nil)
      }
    }
  }
}

/// pixels `[indices.count, H, W, 3]` and labels `[indices.count]` of samples `indices`.
/// Overwrites both. Safe to call from several threads on disjoint output slices; an error from
/// `dataset.load` is rethrown as `DataError.sampleFailed` naming the sample (and `step`, if given).
public func assembleBatch(
  pixels: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>,
  dataset: some Dataset, indices: some Collection<Int>, step: Int? = nil
) throws {
  let stride = dataset.pixelsPerImage
  for (b, index) in indices.enumerated() {
    let label: Int
    do {
      label = try dataset.load(index, into: pixels + b * stride)
    } catch DataError.sampleFailed(let failedIndex, _, let reason) {
      throw DataError.sampleFailed(index: failedIndex, step: step, reason: reason)
    } catch {
      throw DataError.sampleFailed(index: index, step: step, reason: "\(error)")
    }
    guard label >= 0 && label < dataset.numClasses else {
      throw DataError.sampleFailed(
        index: index, step: step,
        reason: "label \(label) is outside 0..<\(dataset.numClasses)")
    }
    labels[b] = Int32(label)
  }
}
