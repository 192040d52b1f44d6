// The settings shared by the file-backed datasets (`ImageFolder`, `CIFAR`, `MNIST`), and the log of
// images that failed to decode.

import Foundation

/// Which part of a dataset to read.
public enum DataSplit: String, Sendable, Codable, CaseIterable {
  case train
  case validation
}

/// How a file-backed dataset is split, preprocessed and augmented. Defaults are the paper's recipe
/// without RandAugment; `nil` fields take the dataset kind's default (see each field).
public struct DataOptions: Equatable, Sendable, Codable {
  /// Image folders: the fraction of the training tree held out for validation, chosen by a seeded
  /// hash of each file's path below the tree (so it is stable across machines and runs). nil:
  /// use `ROOT/val` when it exists, else hold out 0.1. Given explicitly, it splits `ROOT/train`
  /// (or `ROOT`) even when `ROOT/val` exists (a "minival" carved from train).
  public var valFraction: Double?
  /// Seed of that hash; independent of the training seed so runs with other seeds share a split.
  public var splitSeed: UInt64 = 0
  /// Image folders: substitute unreadable images instead of failing (see `ImageFolder`).
  public var skipBadImages = false
  /// Training split: random crop and flip (false: the training split is preprocessed like the
  /// validation split).
  public var augment = true
  /// Smallest and largest inception-crop area, as fractions of the image (timm's --scale).
  public var cropMinArea = 0.05
  public var cropMaxArea = 1.0
  /// Smallest and largest inception-crop aspect ratio (width / height), drawn uniformly as
  /// TensorFlow's `sample_distorted_bounding_box` (big_vision's 0.75, 1.33).
  public var cropMinRatio = 0.75
  public var cropMaxRatio = 1.33
  /// Random left-right flips on the training split; nil: on, except for MNIST digits.
  public var flip: Bool?
  /// Fraction of the shorter side the validation centre crop keeps; nil: 224/256 for image
  /// folders, 1 (the whole image) for CIFAR and MNIST.
  public var evalCropFraction: Double?
  /// RandAugment(N, M) on the training split after crop and flip; nil: none.
  public var randAugment: RandAugment?
  /// Pixel normalisation (default: the official `(x − 127.5) / 127.5`).
  public var normalization: Normalization = .minusOneToOne
  /// Decode JPEGs at a reduced size (TurboJPEG DCT scaling) when the crop has pixels to spare.
  public var jpegDecodeScaling = true
  /// The synthetic `shapes` data: number of images per split (nil: 50,000 / 5,000).
  public var trainExamples: Int?
  public var validationExamples: Int?
  /// The model's number of classes K, for data whose files may not name their classes: a mask
  /// folder without `classes.txt` calls them "class 0" ... "class K−1" (with one, the counts must
  /// agree). nil: not known.
  public var declaredClasses: Int?

  public init() {}

  /// Checks ranges; throws `DataError.invalidConfiguration` naming the option.
  public func validate() throws {
    if let valFraction, !(valFraction > 0 && valFraction < 1) {
      throw DataError.invalidConfiguration("--val-fraction \(valFraction) must be in (0, 1)")
    }
    guard cropMinArea > 0 && cropMinArea <= cropMaxArea && cropMaxArea <= 1 else {
      throw DataError.invalidConfiguration(
        "--crop-scale \(cropMinArea),\(cropMaxArea): the crop's area fractions MIN,MAX must have "
          + "0 < MIN <= MAX <= 1 (default 0.05,1)")
    }
    guard cropMinRatio > 0 && cropMinRatio <= cropMaxRatio && cropMaxRatio.isFinite else {
      throw DataError.invalidConfiguration(
        "--crop-ratio \(cropMinRatio),\(cropMaxRatio): the crop's aspect ratios MIN,MAX must have "
          + "0 < MIN <= MAX (default 0.75,1.33)")
    }
    if let evalCropFraction, !(evalCropFraction > 0 && evalCropFraction <= 1) {
      throw DataError.invalidConfiguration(
        "eval crop fraction \(evalCropFraction) must be in (0, 1]")
    }
  }

  /// The preprocessing of `split` at `height × width` for a dataset of `kind`.
  func preprocessing(
    kind: DataKind, split: DataSplit, height: Int, width: Int, seed: UInt64
  ) -> ImagePreprocessing {
    let mode: ImagePreprocessing.Mode = split == .train && augment ? .train : .eval
    var p = ImagePreprocessing(mode: mode, outputHeight: height, outputWidth: width, seed: seed)
    p.cropMinArea = cropMinArea
    p.cropMaxArea = cropMaxArea
    p.cropAspect = cropMinRatio...cropMaxRatio
    p.flip = flip ?? (kind != .mnist)
    p.evalCropFraction = evalCropFraction ?? (kind == .folder ? 224.0 / 256.0 : 1)
    p.randAugment = randAugment
    p.normalization = normalization
    return p
  }
}

/// `MIN,MAX` of `--crop-scale` and `--crop-ratio`: two numbers, each a decimal or a fraction
/// `A/B` (e.g. `3/4,4/3`). Throws naming `flag` when the text is not two numbers.
public func parseRange(_ text: String, flag: String) throws -> (Double, Double) {
  func number(_ part: Substring) -> Double? {
    let sides = part.split(separator: "/", omittingEmptySubsequences: false)
      .map { Double($0.trimmingCharacters(in: .whitespaces)) }
    if sides.count == 1 { return sides[0] }
    guard sides.count == 2, let a = sides[0], let b = sides[1], b != 0 else { return nil }
    return a / b
  }
  let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(number)
  guard parts.count == 2, let low = parts[0], let high = parts[1], low.isFinite, high.isFinite else {
    throw DataError.invalidConfiguration("\(flag) '\(text)' is not MIN,MAX (two numbers, e.g. 0.5,1 or 3/4,4/3)")
  }
  return (low, high)
}

/// The training augmentation of `dataset` with mixup `alpha` (0: off), for the start-up line:
/// e.g. "random crop (area 5-100%, ratio 0.75-1.33), flip, mixup 0.5", or "none".
public func augmentationSummary(of dataset: any Dataset, mixup alpha: Float) -> String {
  var parts: [String] = []
  if let images = dataset as? any PreprocessedDataset, images.preprocessing.mode == .train {
    parts.append(images.preprocessing.augmentationSummary)
  }
  if alpha > 0 { parts.append("mixup \(alpha)") }
  return parts.isEmpty ? "none" : parts.joined(separator: ", ")
}

/// A dataset whose images go through `ImagePreprocessing` (files and CIFAR/MNIST records; the
/// generated data does not).
public protocol PreprocessedDataset: Dataset {
  var preprocessing: ImagePreprocessing { get }
}

extension ImageFolder: PreprocessedDataset {}
extension SegmentationFolder: PreprocessedDataset {}
extension WebDataset: PreprocessedDataset {}
extension CIFAR: PreprocessedDataset {}
extension MNIST: PreprocessedDataset {}

/// Images that failed to decode and were substituted (`DataOptions.skipBadImages`). Thread-safe;
/// each file is reported once on standard error.
public final class BadImageLog: @unchecked Sendable {
  private let lock = NSLock()
  private var reasons: [String: String] = [:]
  private var substitutions = 0

  public init() {}

  /// Bad files met while loading: once per load (so once per epoch for the same file), and a load
  /// that scans past two bad files to its substitute counts two.
  public var skipped: Int { lock.withLock { substitutions } }
  /// Each bad file and why it failed.
  public var badFiles: [String: String] { lock.withLock { reasons } }

  func record(path: String, reason: String) {
    let first: Bool = lock.withLock {
      substitutions += 1
      guard reasons[path] == nil else { return false }
      reasons[path] = reason
      return true
    }
    if first {
      FileHandle.standardError.write(
        Data(
          "mixer-dist: warning: skipping bad image \(path): \(reason) (substituted; --skip-bad-images)\n"
            .utf8))
    }
  }
}
