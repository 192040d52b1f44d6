// How fast one loader thread turns image files into model inputs: read + decode + crop/resize +
// flip (+ RandAugment) + normalise, in images per second, for the `mixer-dist bench --data` command.
// Without a dataset it writes its own: random-noise-plus-gradient JPEGs of 500×375 (ImageNet's
// typical size) into a temporary folder of two classes, removed afterwards.

import Foundation
import MixerNumerics

/// What `measureLoaderThroughput` measured.
public struct LoaderThroughput: Sendable, Codable, CustomStringConvertible {
  /// The data measured (`--data` spec, or the generated JPEGs).
  public var data: String
  public var imageHeight: Int
  public var imageWidth: Int
  public var threads: Int
  public var images: Int
  public var seconds: Double
  /// Images per second over all threads.
  public var imagesPerSecond: Double
  /// Images per second per thread.
  public var imagesPerSecondPerThread: Double { imagesPerSecond / Double(threads) }

  public var description: String {
    String(
      format: "%@ -> %dx%d: %d images in %.2f s on %d thread(s): %.0f images/s (%.0f per thread)",
      data, imageHeight, imageWidth, images, seconds, threads, imagesPerSecond,
      imagesPerSecondPerThread)
  }
}

/// Times training-mode loads (all epochs distinct) of `spec` (nil: `generatedImages` JPEGs of
/// `generatedSize` written to a temporary folder) at `imageSize`, on `threads` threads, each
/// loading `imagesPerThread` images after one untimed pass over 8.
public func measureLoaderThroughput(
  spec: String? = nil, imageSize: (height: Int, width: Int) = (224, 224), threads: Int = 1,
  imagesPerThread: Int = 256, options: DataOptions = DataOptions(),
  generatedImages: Int = 64, generatedSize: (width: Int, height: Int) = (500, 375)
) throws -> LoaderThroughput {
  precondition(threads >= 1 && imagesPerThread >= 1)
  var temporary: URL?
  defer { if let temporary { try? FileManager.default.removeItem(at: temporary) } }
  let data: String
  if let spec {
    data = spec
  } else {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("mixer-loader-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    temporary = folder
    try writeBenchmarkJPEGs(
      folder: folder, count: generatedImages, width: generatedSize.width,
      height: generatedSize.height)
    data = "folder:" + folder.path
  }
  var trainOptions = options
  trainOptions.valFraction = nil
  let dataset = try makeDataset(
    spec: data, split: .train, imageSize: imageSize, seed: 0, options: trainOptions)
  let floats = dataset.pixelsPerImage
  let run = { (thread: Int, count: Int, epochOffset: Int) throws in
    var pixels = [Float](repeating: 0, count: floats)
    try pixels.withUnsafeMutableBufferPointer { buffer in
      for n in 0..<count {
        let index = (thread * 7919 + n) % dataset.count
        let epoch = epochOffset + n / dataset.count
        let source = epochView(of: dataset, epoch: epoch)
        _ = try source.load(index, into: buffer.baseAddress!)
      }
    }
  }
  try run(0, min(8, dataset.count), 1_000)
  let failure = LockedError()
  let start = ContinuousClock.now
  DispatchQueue.concurrentPerform(iterations: threads) { thread in
    do { try run(thread, imagesPerThread, 0) } catch { failure.set(error) }
  }
  let elapsed = start.duration(to: .now).components
  if let error = failure.get() { throw error }
  let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
  let images = threads * imagesPerThread
  return LoaderThroughput(
    data: spec
      ?? "\(generatedImages) generated \(generatedSize.width)x\(generatedSize.height) JPEGs",
    imageHeight: imageSize.height, imageWidth: imageSize.width, threads: threads, images: images,
    seconds: seconds, imagesPerSecond: Double(images) / max(seconds, 1e-9))
}

/// Writes `count` quality-90 JPEGs (smooth colour gradients plus noise, so they compress like
/// photographs rather than like flat colour) into `folder/a` and `folder/b`.
public func writeBenchmarkJPEGs(folder: URL, count: Int, width: Int, height: Int) throws {
  for (c, name) in ["a", "b"].enumerated() {
    try FileManager.default.createDirectory(
      at: folder.appendingPathComponent(name), withIntermediateDirectories: true)
    for n in stride(from: c, to: count, by: 2) {
      var rng = CounterRNG(seed: 7, UInt64(n))
      var pixels = [UInt8](repeating: 0, count: width * height * 3)
      let (r, g, b) = (rng.uniform() * 255, rng.uniform() * 255, rng.uniform() * 255)
      for y in 0..<height {
        for x in 0..<width {
          let noise = Float(rng.next() & 31) - 16
          let fx = Float(x) / Float(width)
          let fy = Float(y) / Float(height)
          let p = 3 * (y * width + x)
          pixels[p] = UInt8((r * fx + 200 * fy * (1 - fx) + noise).clamped(to: 0...255))
          pixels[p + 1] = UInt8((g * (1 - fy) + 100 * fx + noise).clamped(to: 0...255))
          pixels[p + 2] = UInt8((b * fy + 128 * (1 - fx) + noise).clamped(to: 0...255))
        }
      }
      let jpeg = try encodeJPEG(pixels: pixels, width: width, height: height, quality: 90)
      try Data(jpeg).write(to: folder.appendingPathComponent("\(name)/\(n).jpg"))
    }
  }
}

/// The first error of several threads.
private final class LockedError: @unchecked Sendable {
  private let lock = NSLock()
  private var error: Error?
  func set(_ value: Error) { lock.withLock { if error == nil { error = value } } }
  func get() -> Error? { lock.withLock { error } }
}
