// Semantic segmentation data: images with a class per pixel. A `SegmentationDataset` is a
// `Dataset` (so the sampler, the loader and the evaluation shard it like any other) whose samples
// also carry a mask `[height, width]` of Int32 class indices, aligned pixel for pixel with the
// image after every crop, resize and flip. A pixel labelled `SegmentationMask.ignore` counts
// nowhere: not in the loss, not in the mIoU (PNG masks write it as 255, the Pascal VOC "void").

/// The label of a pixel that is left out of the loss and the metrics.
public enum SegmentationMask {
  public static let ignore: Int32 = -1
  /// The value of an 8-bit PNG mask pixel that means `ignore` (Pascal VOC's object boundaries).
  public static let pngIgnoreValue = 255
}

/// Images with per-pixel labels: `load(index, epoch:, into:, mask:)` (a `Dataset` requirement
/// that other data leaves unmet) writes the image (as `Dataset.load` does) and its mask,
/// augmented for `epoch` on the training split. Safe to call concurrently.
public protocol SegmentationDataset: Dataset {}

extension Dataset {
  /// Pixels in one mask: `height · width`.
  public var pixelsPerMask: Int { height * width }

  /// Data without masks: throws (the task that asks for masks checked the data beforehand).
  public func load(
    _ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Int32>
  ) throws {
    throw DataError.invalidConfiguration("this data has no masks (a class per pixel): \(Self.self)")
  }
}

extension SegmentationDataset {
  /// The image alone (epoch 0); segmentation samples have no image-level label, so this returns 0.
  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    var mask = [Int32](repeating: 0, count: pixelsPerMask)
    try mask.withUnsafeMutableBufferPointer { try load(index, epoch: 0, into: pixels, mask: $0.baseAddress!) }
    return 0
  }
}

extension Batch {
  /// Refills this batch with images and masks of `indices` as seen in `epoch` (`BatchTargets.masks`),
  /// reusing its buffers; `labels` are all 0. A failing sample throws `DataError.sampleFailed`
  /// naming it, and a mask pixel outside `0..<numClasses` (other than `ignore`) is an error naming
  /// the sample.
  public mutating func fill(
    segmentation dataset: any Dataset, indices: [Int], epoch: Int, step: Int = -1
  ) throws {
    let pixelCount = indices.count * dataset.pixelsPerImage
    let maskCount = indices.count * dataset.pixelsPerMask
    if pixels.count != pixelCount { pixels = [Float](repeating: 0, count: pixelCount) }
    if masks.count != maskCount { masks = [Int32](repeating: 0, count: maskCount) }
    labels = [Int32](repeating: 0, count: indices.count)
    self.step = step
    self.indices = indices
    mixup = nil
    let imageStride = dataset.pixelsPerImage, maskStride = dataset.pixelsPerMask
    let classes = Int32(dataset.numClasses)
    let stepOrNil = step >= 0 ? step : nil
    try pixels.withUnsafeMutableBufferPointer { pixelBuffer in
      try masks.withUnsafeMutableBufferPointer { maskBuffer in
        for (b, index) in indices.enumerated() {
          let mask = maskBuffer.baseAddress! + b * maskStride
          do {
            try dataset.load(index, epoch: epoch, into: pixelBuffer.baseAddress! + b * imageStride, mask: mask)
          } catch DataError.sampleFailed(let failedIndex, _, let reason) {
            throw DataError.sampleFailed(index: failedIndex, step: stepOrNil, reason: reason)
          } catch {
            throw DataError.sampleFailed(index: index, step: stepOrNil, reason: "\(error)")
          }
          for p in 0..<maskStride where mask[p] != SegmentationMask.ignore && !(0..<classes).contains(mask[p]) {
            throw DataError.sampleFailed(
              index: index, step: stepOrNil,
              reason: "mask pixel \(p % dataset.width),\(p / dataset.width) has class \(mask[p]), outside 0..<\(classes)")
          }
        }
      }
    }
  }
}
