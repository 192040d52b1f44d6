// A folder of JPEG/PNG images with a PNG label mask each, for semantic segmentation:
//
//   ROOT/images/**/*.{jpg,jpeg,png}   with   ROOT/masks/**/<same path>.png          (one tree)
//   ROOT/train/{images,masks}/...     and    ROOT/val/{images,masks}/...   (or ROOT/validation)
//   ROOT/classes.txt                  class names, class 0 first, one per line (blanks skipped)
//
// An image's mask has the image's path below `images/` with the extension `.png`
// (images/street/1.jpg → masks/street/1.png) and holds one class index per pixel: 8- or 16-bit
// gray levels or palette indices, as Pascal VOC's SegmentationClass PNGs; 255 (65535 in 16 bits)
// is `SegmentationMask.ignore` (LabelPNG.swift). Masks without an image are ignored; an image
// without a mask is an error at construction. Without classes.txt, `declaredClasses` (the
// model's --classes K) names them "class 0" ... "class K−1".
//
// Images are listed in byte order of their paths below `images/`, so index i is the same file on
// every rank and machine. Validation is ROOT/val when it exists; otherwise, or when `valFraction`
// is given, an image of the training tree goes to validation when the seeded hash of its path
// below `images/` (e.g. "street/1.jpg") falls below `valFraction` (0.1 by default), as in
// ImageFolder.
//
// Loading decodes both files (a size mismatch is an error naming both) and maps them through one
// box and flip, so image and mask stay aligned pixel for pixel. Training: ImageFolder's inception
// crop and flip for (seed, epoch, index), the image resampled bilinearly and the mask by nearest
// neighbour at the same points (output pixel j reads source point box.x + (j + ½)·box.width / W,
// the pixel-centre convention of `resampleBilinear`). Validation (and training with `augment`
// off): the whole image resized to the model size, not centre-cropped, so every labelled pixel is
// evaluated (`evalCropFraction` does not apply). RandAugment is refused: its geometric ops would
// move the image and not the mask. `skipBadImages` does not apply either: a file that fails to
// load throws `DataError.sampleFailed` naming it. JPEGs are DCT-scaled before resampling as in
// ImageFolder (`jpegDecodeScaling`); the mask is always read at full size.

import Foundation

/// Images with per-pixel class masks in `images/` and `masks/` trees, preprocessed to a fixed size.
public struct SegmentationFolder: SegmentationDataset {
  /// The training tree (`ROOT/train` or `ROOT`) or validation tree (`ROOT/val`) this split reads;
  /// it holds `images/` and `masks/`.
  public let directory: String
  public let split: DataSplit
  public let classNames: [String]
  public let preprocessing: ImagePreprocessing
  public let jpegDecodeScaling: Bool
  /// Per sample: the image's path below `images/` and its mask's path below `masks/`.
  let imageFiles: [String]
  let maskFiles: [String]

  public var count: Int { imageFiles.count }
  public var numClasses: Int { classNames.count }
  public var height: Int { preprocessing.outputHeight }
  public var width: Int { preprocessing.outputWidth }

  /// Lists the image and mask pairs of `split` under `root`. Throws
  /// `DataError.invalidConfiguration` when the folder is missing or has no `images/` and
  /// `masks/`, no images, an image without its mask, no class names (no classes.txt and no
  /// `declaredClasses`), RandAugment is asked for, or the split is empty.
  public init(
    root: String, split: DataSplit, imageHeight: Int, imageWidth: Int, seed: UInt64,
    options: DataOptions = DataOptions()
  ) throws {
    try options.validate()
    guard options.randAugment == nil else {
      throw DataError.invalidConfiguration(
        "RandAugment is not supported for segmentation data (its geometric ops would move the "
          + "image but not the mask)")
    }
    let rootURL = URL(fileURLWithPath: root)
    guard isDirectory(rootURL.path) else {
      throw DataError.invalidConfiguration(
        "segmentation folder \(root) does not exist or is not a directory")
    }
    let names = try SegmentationFolder.classNames(
      root: rootURL, declaredCount: options.declaredClasses)
    let (_, tree, keep) = ImageFolder.splitTrees(root: rootURL, split: split, options: options)

    let (listed, links) = try SegmentationFolder.pairs(in: tree)
    let pairs = listed.filter { keep?($0.image) ?? true }
    guard !pairs.isEmpty else {
      let fraction = options.valFraction ?? 0.1
      throw DataError.invalidConfiguration(
        "the \(split.rawValue) split of \(root) is empty (valFraction \(fraction))")
    }
    directory = tree.path
    self.split = split
    classNames = names
    imageFiles = pairs.map(\.image)
    maskFiles = pairs.map(\.mask)
    var preprocessing = options.preprocessing(
      kind: .folder, split: split, height: imageHeight, width: imageWidth, seed: seed)
    preprocessing.evalCropFraction = 1  // the whole image, resized bilinearly as its mask is sampled
    self.preprocessing = preprocessing
    jpegDecodeScaling = options.jpegDecodeScaling
    linkCounts = links
    splitDescription = links.summary.map {
      "\(split == .train ? "train" : "validation"): \(pairs.count) images in \(tree.path); \($0)"
    }
  }

  /// The symbolic links below this split's `images/` and `masks/`, when there were any.
  public let splitDescription: String?
  /// The symbolic links the listing of this split's tree followed and skipped.
  public let linkCounts: LinkCounts

  /// The image file of sample `index`.
  public func path(of index: Int) -> String {
    directory + "/images/" + imageFiles[index]
  }

  /// The mask file of sample `index`.
  public func maskPath(of index: Int) -> String {
    directory + "/masks/" + maskFiles[index]
  }

  public func load(
    _ index: Int, epoch: Int, into pixels: UnsafeMutablePointer<Float>,
    mask: UnsafeMutablePointer<Int32>
  ) throws {
    guard index >= 0 && index < count else {
      throw DataError.sampleFailed(
        index: index, step: nil, reason: "index out of range 0..<\(count) of \(directory)")
    }
    let imagePath = path(of: index)
    let maskFile = maskPath(of: index)
    let preprocessing = self.preprocessing
    let scaling = jpegDecodeScaling
    let image: RGBImage
    let (fullWidth, fullHeight): (Int, Int)
    let labels: (width: Int, height: Int, values: [Int32])
    do {
      let bytes = try readFileBytes(imagePath)
      (image, fullWidth, fullHeight) = try bytes.withUnsafeBytes { raw in
        try decodeImage(
          raw,
          minimumScale: scaling
            ? { width, height in
              let (box, _) = region(width: width, height: height, epoch: epoch, index: index)
              return preprocessing.minimumDecodeScale(box: box)
            } : nil)
      }
    } catch {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(imagePath): \(error)")
    }
    do {
      let bytes = try readFileBytes(maskFile)
      // the sizes are compared before the mask is inflated (see labelPNGSize)
      let size = try bytes.withUnsafeBytes { try labelPNGSize($0) }
      guard size.width == fullWidth && size.height == fullHeight else {
        throw DataError.sampleFailed(
          index: index, step: nil,
          reason: "image \(imagePath) is \(fullWidth)x\(fullHeight) but its mask \(maskFile) is "
            + "\(size.width)x\(size.height)")
      }
      labels = try bytes.withUnsafeBytes { try decodeLabelPNG($0) }
    } catch let error as DataError {
      throw error
    } catch {
      throw DataError.sampleFailed(index: index, step: nil, reason: "\(maskFile): \(error)")
    }
    let (box, flip) = region(width: fullWidth, height: fullHeight, epoch: epoch, index: index)
    let scaledBox = box.scaled(
      Double(image.width) / Double(fullWidth), Double(image.height) / Double(fullHeight))
    // Bilinear resize, then normalisation (RandAugment is refused at construction).
    preprocessing.process(
      image: image, box: scaledBox, flip: flip, epoch: epoch, index: index, into: pixels)
    labels.values.withUnsafeBufferPointer { source in
      resampleNearest(
        mask, source: source.baseAddress!, width: fullWidth, height: fullHeight, box: box,
        flip: flip, outputWidth: width, outputHeight: height)
    }
  }

  /// The box of a `width × height` source that sample `index` of `epoch` shows, and whether it is
  /// flipped: the inception crop and flip when training with augmentation, else the whole image.
  func region(width: Int, height: Int, epoch: Int, index: Int) -> (box: CropBox, flip: Bool) {
    guard preprocessing.mode == .train else {
      return (CropBox(x: 0, y: 0, width: Double(width), height: Double(height)), false)
    }
    return preprocessing.crop(sourceWidth: width, sourceHeight: height, epoch: epoch, index: index)
  }

  /// Class names from `ROOT/classes.txt`, or "class 0" ... for `declaredCount` classes without it.
  /// Both given must agree.
  static func classNames(root: URL, declaredCount: Int?) throws -> [String] {
    let file = root.appendingPathComponent("classes.txt").path
    guard FileManager.default.fileExists(atPath: file) else {
      guard let declaredCount else {
        throw DataError.invalidConfiguration(
          "\(root.path) has no classes.txt: add ROOT/classes.txt (one class name per line) or "
            + "pass --classes K")
      }
      guard declaredCount > 0 else {
        throw DataError.invalidConfiguration("--classes \(declaredCount) must be positive")
      }
      return (0..<declaredCount).map { "class \($0)" }
    }
    let text: String
    do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
      throw DataError.invalidConfiguration(
        "cannot read \(file) as UTF-8 text: \(error.localizedDescription)")
    }
    let names = text.split(whereSeparator: \.isNewline)
      .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !names.isEmpty else {
      throw DataError.invalidConfiguration("\(file) names no classes (one name per line)")
    }
    if let declaredCount, declaredCount != names.count {
      throw DataError.invalidConfiguration(
        "\(file) names \(names.count) classes but --classes is \(declaredCount)")
    }
    return names
  }

  /// The images below `tree/images` and their masks below `tree/masks`, as relative paths in
  /// byte order of the image paths. Throws when either folder is missing, there are no images,
  /// or an image has no mask.
  static func pairs(in tree: URL) throws -> (pairs: [(image: String, mask: String)], links: LinkCounts) {
    let imagesURL = tree.appendingPathComponent("images")
    let masksURL = tree.appendingPathComponent("masks")
    guard isDirectory(imagesURL.path) else {
      throw DataError.invalidConfiguration(
        "no images folder \(imagesURL.path): expected ROOT/images/**/*.jpg with "
          + "ROOT/masks/**/*.png, or ROOT/train/{images,masks} (and ROOT/val/{images,masks})")
    }
    guard isDirectory(masksURL.path) else {
      throw DataError.invalidConfiguration(
        "no masks folder \(masksURL.path) next to \(imagesURL.path)")
    }
    // links are followed as FolderWalk.swift says; an image reached twice counts once
    let imageWalk = try FolderWalk(tree: tree, extensions: ImageFolder.extensions)
    let found = try imageWalk.files(below: "images")
    let images = zip(found, imageWalk.distinct(found)).filter(\.1)
      .map { String($0.0.path.dropFirst("images/".count)) }
      .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    guard !images.isEmpty else {
      throw DataError.invalidConfiguration(
        "\(imagesURL.path) holds no .jpg, .jpeg or .png images"
          + (imageWalk.counts.summary.map { " of its own (\($0))" } ?? ""))
    }
    // Masks by their path without the extension (the first in byte order when two differ in case).
    let maskWalk = try FolderWalk(tree: tree, extensions: ["png"])
    var maskOf: [String: String] = [:]
    for mask in try maskWalk.files(below: "masks").map({ String($0.path.dropFirst("masks/".count)) }) {
      let stem = (mask as NSString).deletingPathExtension
      if maskOf[stem] == nil { maskOf[stem] = mask }
    }
    let pairs = try images.map { image in
      let stem = (image as NSString).deletingPathExtension
      guard let mask = maskOf[stem] else {
        throw DataError.invalidConfiguration(
          "image \(imagesURL.path)/\(image) has no mask: expected \(masksURL.path)/\(stem).png")
      }
      return (image, mask)
    }
    return (pairs, imageWalk.counts + maskWalk.counts)
  }
}

/// Nearest-neighbour resampling of `box` of a `[height, width]` mask into `output`
/// `[outputHeight, outputWidth]` (overwritten), at the points `resampleBilinear` interpolates:
/// output pixel (i, j) takes the source pixel containing `(box.x + (j + ½)·box.width / W,
/// box.y + (i + ½)·box.height / H)`, clamped to the pixels the box covers. `flip` mirrors the
/// output left-right.
func resampleNearest(
  _ output: UnsafeMutablePointer<Int32>, source: UnsafePointer<Int32>, width: Int, height: Int,
  box: CropBox, flip: Bool, outputWidth: Int, outputHeight: Int
) {
  let columns = nearestTaps(start: box.x, length: box.width, count: outputWidth, sourceSize: width)
  let rows = nearestTaps(start: box.y, length: box.height, count: outputHeight, sourceSize: height)
  for i in 0..<outputHeight {
    let sourceRow = source + rows[i] * width
    let row = output + i * outputWidth
    for j in 0..<outputWidth {
      row[j] = sourceRow[columns[flip ? outputWidth - 1 - j : j]]
    }
  }
}

/// The source index sampled at each of `count` output positions (see `resampleNearest`), within
/// the pixels `[start, start + length)` touches, as `resampleBilinear`'s taps clamp.
private func nearestTaps(start: Double, length: Double, count: Int, sourceSize: Int) -> [Int] {
  let low = max(0, Int(start.rounded(.down)))
  let high = min(sourceSize - 1, max(low, Int((start + length).rounded(.up)) - 1))
  let step = length / Double(count)
  return (0..<count).map { j in
    min(max(Int((start + (Double(j) + 0.5) * step).rounded(.down)), low), high)
  }
}
