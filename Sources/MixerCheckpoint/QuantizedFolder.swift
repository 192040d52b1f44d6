// The marker of a quantized checkpoint (written by `mixer-dist quantize`, read by MixerInference):
// training code that finds one stops with a one-line error instead of reading int8 weights as
// parameters.

import Foundation

/// The manifest file of a quantized checkpoint folder.
public let quantizedManifestName = "quantized.json"

/// Throws when `folder` is a quantized checkpoint: it runs in `eval`, `predict`,
/// `bench --inference` and `export --format onnx`; training needs the fp32 checkpoint it was made from.
public func refuseQuantizedCheckpoint(_ folder: URL) throws {
  let manifest = folder.appendingPathComponent(quantizedManifestName)
  guard FileManager.default.fileExists(atPath: manifest.path) else { return }
  var source = "the fp32 checkpoint it was made from"
  if let data = FileManager.default.contents(atPath: manifest.path),
    let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let path = object["source"] as? String
  {
    source = "the fp32 checkpoint it was made from (\(path))"
  }
  throw CheckpointError(
    "\(folder.path) is a quantized checkpoint (mixer-dist quantize) for eval, predict, bench --inference and export --format onnx only: "
      + "train, --resume, --init-from and export to .npz need \(source)")
}
