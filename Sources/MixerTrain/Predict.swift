// `mixer-dist predict`: image files (or folders of them) → the top-k classes of a checkpoint with
// their probabilities. Images are decoded (JPEG, PNG), resized and centre-cropped exactly as the
// evaluation pipeline does, and run through the model in batches.

import Foundation
import MixerData
import MixerKernels
import MixerModel

/// The top-k classes of one image.
public struct Prediction: Codable {
  public var file: String
  public var classes: [String]
  public var probabilities: [Double]
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

/// Predicts the top `k` classes of every image with the checkpoint at `checkpoint`.
public func predict(checkpoint: String, files: [String], topK: Int, batchSize: Int) throws -> [Prediction] {
  let (model, manifest, _) = try loadModel(checkpoint: checkpoint)
  let config = model.config
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
  for start in stride(from: 0, to: files.count, by: batchSize) {
    let chunk = Array(files[start..<min(start + batchSize, files.count)])
    var pixels = [Float](repeating: 0, count: chunk.count * perImage)
    for (i, file) in chunk.enumerated() {
      guard let data = FileManager.default.contents(atPath: file) else { throw TrainError("\(file): cannot read") }
      let image: RGBImage
      do {
        image = try data.withUnsafeBytes { try decodeImage($0).image }
      } catch {
        throw TrainError("\(file): \(error)")
      }
      let box = preprocessing.centreCrop(sourceWidth: image.width, sourceHeight: image.height)
      pixels.withUnsafeMutableBufferPointer {
        preprocessing.process(image: image, box: box, flip: false, epoch: 0, index: 0, into: $0.baseAddress! + i * perImage)
      }
    }
    let acts = arenas[chunk.count] ?? Activations(config: config, batch: chunk.count)
    arenas[chunk.count] = acts
    pixels.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
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
