// The `Dataset` protocol every image source implements, and the errors of this module.
//
// A dataset is a random-access list of labelled RGB images of one fixed size. `load` writes one
// image as HWC float32 (row-major H, W, then R, G, B) normalised from 0–255 to [-1, 1] by
// `(x − 127.5) / 127.5`, and returns its label. Implementations must be safe to call from several
// threads at once (the prefetching loader does), which a struct of immutable state is.

/// A random-access, thread-safe source of labelled `height × width × 3` images.
public protocol Dataset: Sendable {
  /// Number of samples; valid indices are `0..<count`.
  var count: Int { get }
  /// Number of classes; labels are in `0..<numClasses`.
  var numClasses: Int { get }
  /// A readable name per class, `classNames.count == numClasses`.
  var classNames: [String] { get }
  /// Image height in pixels.
  var height: Int { get }
  /// Image width in pixels (channels are always 3).
  var width: Int { get }

  /// Writes sample `index` into `pixels` (`[height, width, 3]`, values in [-1, 1]) and returns
  /// its label. Safe to call concurrently for any indices.
  func load(_ index: Int, into pixels: UnsafeMutablePointer<Float>) throws -> Int

  /// Throws when sample `index` cannot be read, checking as little as tells (a file's header and
  /// end); samples held in memory are always readable.
  func checkSample(_ index: Int) throws
  /// How this split was made, for the log (e.g. the held-out share of train/), if worth saying.
  var splitDescription: String? { get }

  /// Writes sample `index` as seen in `epoch` into `pixels` and its mask (`[height, width]` class
  /// indices, `SegmentationMask.ignore` for unlabelled pixels) into `mask`: data with a class per
  /// pixel (`SegmentationDataset`); other data has no masks and throws (Segmentation.swift).
  func load(
    _ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Int32>
  ) throws
}

extension Dataset {
  public func checkSample(_ index: Int) throws {}
  public var splitDescription: String? { nil }

  /// Floats in one image: `height · width · 3`.
  public var pixelsPerImage: Int { height * width * 3 }
}

/// Errors of the data pipeline; each message names what to fix.
public enum DataError: Error, Equatable, CustomStringConvertible {
  /// A sampler or loader was configured with sizes that cannot work.
  case invalidConfiguration(String)
  /// Loading one sample failed; names the sample and the step of the batch it belongs to.
  case sampleFailed(index: Int, step: Int?, reason: String)
  /// `next()` was called on a loader after `stop()`.
  case loaderStopped
  /// `next()` was called past the loader's last step.
  case endOfData(step: Int)

  public var description: String {
    switch self {
    case .invalidConfiguration(let message):
      return "invalid data configuration: \(message)"
    case .sampleFailed(let index, let step, let reason):
      let batch = step.map { " (batch of step \($0))" } ?? ""
      return "failed to load sample \(index)\(batch): \(reason)"
    case .loaderStopped:
      return "the batch loader was stopped"
    case .endOfData(let step):
      return "no batch for step \(step): past the loader's last step"
    }
  }
}
