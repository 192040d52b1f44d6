// `mixer-dist predict`: image files (or folders of them) → the top-k classes of a checkpoint with
// their probabilities. Images are decoded (JPEG, PNG), resized and centre-cropped exactly as the
// evaluation pipeline does, and run through the model in batches. A segmentation checkpoint
// instead writes each image's predicted mask: the whole image resized to the model (as its
// evaluation does), the per-pixel argmax, resized back to the image's own size (nearest) and
// saved as an 8-bit PNG of class indices, the format the training masks use.

import Foundation
import MixerData
import MixerKernels
import MixerModel

/// The top-k classes of one image; for segmentation, the classes predicted anywhere in it by
/// their share of its pixels, and the mask file written.
public struct Prediction: Codable {
  public var file: String
  public var classes: [String]
  public var probabilities: [Double]
  public var mask: String?
}

/// Every .jpg/.jpeg/.png under `paths` (folders searched recursively, sorted), files as given.
public func imageFiles(_ paths: [String]) throws -> [String] {
  var files: [String] = []
  for path in paths {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw TrainError("\(path): no such file or folder")
    }
    if isDirectory.boolValue {
      let found = (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? [])
        .filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }
        .sorted()
      files += found.map { (path as NSString).appendingPathComponent($0) }
    } else {
      files.append(path)
    }
  }
  guard !files.isEmpty else { throw TrainError("no .jpg, .jpeg or .png images in \(paths.joined(separator: ", "))") }
  return files
}

/// Predicts the top `k` classes of every image with the checkpoint at `checkpoint`. A
/// segmentation checkpoint instead writes one mask PNG per image into `maskDirectory` (required
/// then), named after the image (`photo.jpg` → `photo.png`; `-2`, `-3`... on clashes).
public func predict(
  checkpoint: String, files: [String], topK: Int, batchSize: Int, maskDirectory: String? = nil
) throws -> [Prediction] {
  let (model, manifest, _) = try loadModel(checkpoint: checkpoint)
  let config = model.config
  if config.isSegmentation {
    guard let maskDirectory else { throw TrainError("a segmentation checkpoint writes masks: pass --mask-dir DIR") }
    guard config.classes <= 255 else {
      throw TrainError("the model has \(config.classes) classes; predicted masks are 8-bit PNGs (up to 255 classes)")
    }
    try FileManager.default.createDirectory(atPath: maskDirectory, withIntermediateDirectories: true)
  }
  let names = manifest.config.classNames.count == config.classes
    ? manifest.config.classNames : (0..<config.classes).map { "class \($0)" }
  var preprocessing = ImagePreprocessing(
    mode: .eval, outputHeight: config.imageHeight, outputWidth: config.imageWidth, seed: 0)
  preprocessing.normalization = manifest.config.dataOptions.normalization
  preprocessing.evalCropFraction = manifest.config.dataOptions.evalCropFraction
    ?? (manifest.config.data.hasPrefix("folder") ? 224.0 / 256.0 : 1)
  let perImage = config.imageHeight * config.imageWidth * 3
  let k = min(max(topK, 1), config.classes)
  var predictions: [Prediction] = []
  var arenas: [Int: Activations] = [:]
  var usedNames: Set<String> = []
  for start in stride(from: 0, to: files.count, by: batchSize) {
    let chunk = Array(files[start..<min(start + batchSize, files.count)])
    var sizes: [(width: Int, height: Int)] = []
    var pixels = [Float](repeating: 0, count: chunk.count * perImage)
    for (i, file) in chunk.enumerated() {
      guard let data = FileManager.default.contents(atPath: file) else { throw TrainError("\(file): cannot read") }
      let image: RGBImage
      do {
        image = try data.withUnsafeBytes { try decodeImage($0).image }
      } catch {
        throw TrainError("\(file): \(error)")
      }
      let box = config.isSegmentation
        ? CropBox(x: 0, y: 0, width: Double(image.width), height: Double(image.height))
        : preprocessing.centreCrop(sourceWidth: image.width, sourceHeight: image.height)
      sizes.append((image.width, image.height))
      pixels.withUnsafeMutableBufferPointer {
        preprocessing.process(image: image, box: box, flip: false, epoch: 0, index: 0, into: $0.baseAddress! + i * perImage)
      }
    }
    let acts = arenas[chunk.count] ?? Activations(config: config, batch: chunk.count)
    arenas[chunk.count] = acts
    pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
    if let maskDirectory, config.isSegmentation {
      for (i, file) in chunk.enumerated() {
        let (mask, shares) = predictedMask(acts: acts, image: i, config: config, width: sizes[i].width, height: sizes[i].height)
        var name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        if usedNames.contains(name) {
          var n = 2
          while usedNames.contains("\(name)-\(n)") { n += 1 }
          name = "\(name)-\(n)"
        }
        usedNames.insert(name)
        let path = (maskDirectory as NSString).appendingPathComponent(name + ".png")
        let png = try encodePNG(pixels: mask, width: sizes[i].width, height: sizes[i].height, channels: 1)
        guard FileManager.default.createFile(atPath: path, contents: Data(png)) else {
          throw TrainError("\(path): cannot write the mask")
        }
        let order = (0..<config.classes).filter { shares[$0] > 0 }.sorted { shares[$0] > shares[$1] }
        predictions.append(Prediction(
          file: file, classes: order.map { names[$0] }, probabilities: order.map { shares[$0] }, mask: path))
      }
      continue
    }
    for (i, file) in chunk.enumerated() {
      let logits = (0..<config.classes).map { Double(acts.logits[i * config.classes + $0]) }
      let top = logits.max() ?? 0
      let exps = logits.map { Foundation.exp($0 - top) }
      let total = exps.reduce(0, +)
      let order = (0..<config.classes).sorted { exps[$0] > exps[$1] }.prefix(k)
      predictions.append(Prediction(file: file, classes: order.map { names[$0] }, probabilities: order.map { exps[$0] / total }))
    }
  }
  return predictions
}

/// Image `image`'s per-pixel argmax (ties to the lower class) at the model's resolution, resized
/// to `width × height` by nearest neighbour (output pixel x reads model pixel
/// ⌊(x + ½)·W_model / width⌋), and each class's share of those pixels.
func predictedMask(
  acts: Activations, image: Int, config: MixerConfig, width: Int, height: Int
) -> (mask: [UInt8], shares: [Double]) {
  let k = config.classes, h = config.imageHeight, w = config.imageWidth
  var small = [UInt8](repeating: 0, count: h * w)
  for p in 0..<(h * w) {
    small[p] = UInt8(predictedClass(acts.pixelLogits + (image * h * w + p) * k, classes: k))
  }
  var mask = [UInt8](repeating: 0, count: width * height)
  var counts = [Double](repeating: 0, count: k)
  let columns = (0..<width).map { min(w - 1, Int((Double($0) + 0.5) * Double(w) / Double(width))) }
  for y in 0..<height {
    let row = min(h - 1, Int((Double(y) + 0.5) * Double(h) / Double(height)))
    for x in 0..<width {
      let label = small[row * w + columns[x]]
      mask[y * width + x] = label
      counts[Int(label)] += 1
    }
  }
  return (mask, counts.map { $0 / Double(width * height) })
}
