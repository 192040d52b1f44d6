// The shared `load` of datasets held decoded in memory (CIFAR, MNIST): range check, the
// preprocessing of (epoch, index), and the label.

/// A dataset whose images are in memory as `RGBImage`s, preprocessed on load.
public protocol InMemoryImageDataset: EpochAugmentedDataset {
  /// Name used in errors (e.g. "cifar10").
  var sourceName: String { get }
  var preprocessing: ImagePreprocessing { get }
  func image(_ index: Int) -> RGBImage
  func label(of index: Int) -> Int
}

extension InMemoryImageDataset {
  public func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    try load(index, epoch: 0, into: pixels)
  }

  public func load(_ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(
        index: index, step: nil, reason: "index out of range 0..<\(count) of \(sourceName)")
    }
    preprocessing.process(image: image(index), epoch: epoch, index: index, into: pixels)
    return label(of: index)
  }
}
