// `mixer-dist predict`: image files (or folders of them) → the top-k classes of a checkpoint with
// their probabilities. Images are decoded (JPEG, PNG), resized and centre-cropped exactly as the
// evaluation pipeline does, and run through the model in batches. A segmentation checkpoint
// instead writes each image's predicted mask: the whole image resized to the model (as its
// evaluation does), the per-pixel argmax, resized back to the image's own size (nearest) and
// saved as an 8-bit PNG of class indices, the format the training masks use.

import Foundation
import MixerCheckpoint
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

/// Predicts every image with the checkpoint at `checkpoint`: its top classes, or for a
/// segmentation checkpoint one mask PNG per image in `options.maskDirectory` (`photo.jpg` →
/// `photo.png`; `-2`, `-3`... on clashes). What is written is the task's (`TaskHead.prediction`).
public func predict(
  checkpoint: String, files: [String], options: PredictionOptions, batchSize: Int, precision: Precision? = nil,
  weights: WeightsChoice = .raw, log: (String) -> Void = { _ in }
) throws -> [Prediction] {
  let inference = try loadInferenceModel(checkpoint, precision: precision, weights: weights, log: log)
  let loaded = inference.loaded
  let model = loaded.model, trained = loaded.config
  let config = model.config
  let task = config.task.training
  try task.preparePrediction(config, options: options)
  let context = PredictionContext(options: options)
  let names = trained.classNames.count == config.classes ? trained.classNames : []
  var preprocessing = ImagePreprocessing(
    mode: .eval, outputHeight: config.imageHeight, outputWidth: config.imageWidth, seed: 0)
  preprocessing.normalization = trained.dataOptions.normalization
  preprocessing.evalCropFraction = trained.dataOptions.evalCropFraction
    ?? (DataSpec(trained.data).kind == .folder ? 224.0 / 256.0 : 1)
  let perImage = config.imageHeight * config.imageWidth * 3
  var predictions: [Prediction] = []
  var arenas: [Int: Activations] = [:]
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
      let box = task.predictionBox(preprocessing, width: image.width, height: image.height)
      sizes.append((image.width, image.height))
      pixels.withUnsafeMutableBufferPointer {
        preprocessing.process(image: image, box: box, flip: false, epoch: 0, index: 0, into: $0.baseAddress! + i * perImage)
      }
    }
    let acts = arenas[chunk.count] ?? Activations(config: config, batch: chunk.count)
    arenas[chunk.count] = acts
    pixels.withUnsafeBufferPointer { inference.forward(images: $0.baseAddress!, acts: acts) }
    for (i, file) in chunk.enumerated() {
      predictions.append(try task.prediction(
        acts: acts, index: i, file: file, imageSize: sizes[i], config: config, classNames: names, context: context))
    }
  }
  return predictions
}
