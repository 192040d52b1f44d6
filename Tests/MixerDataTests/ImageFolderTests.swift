// Tests of image-folder datasets: layouts (train/val, one tree split by a path hash), class order
// and labels, exact PNG and tolerant JPEG pixels, gray and RGBA files, DCT-scaled JPEG decoding,
// construction errors, bad files failing with their name, and substitution with skipBadImages.

import MixerTestSupport
import XCTest

@testable import MixerData

final class ImageFolderTests: XCTestCase {
  /// Evaluation at the source size with the whole image kept: the pixels are the file's.
  func exactOptions() -> DataOptions {
    var options = DataOptions()
    options.evalCropFraction = 1
    return options
  }

  func testTrainValLayoutLabelsAndExactPixels() throws {
    let root = try makeTemporaryDirectory(self, "layout")
    let (w, h) = (12, 10)
    // Classes in byte order: "Zebra" < "ant" < "bee"; nested folders are searched too.
    let trainFiles = ["bee/1.png", "ant/b.PNG", "Zebra/x.png", "ant/a.png", "ant/deep/c.png"]
    for (n, file) in trainFiles.enumerated() {
      try writePNGFile(
        root, "train/" + file, pixels: patternPixels(width: w, height: h, seed: n), width: w,
        height: h)
    }
    try writeFile(root, "train/ant/notes.txt", Array("not an image".utf8))
    // Gray and RGBA files become RGB.
    let gray = patternPixels(width: w, height: h, seed: 7, channels: 1)
    try writePNGFile(root, "val/bee/gray.png", pixels: gray, width: w, height: h, channels: 1)
    let rgba = patternPixels(width: w, height: h, seed: 8, channels: 4)
    try writePNGFile(root, "val/ant/rgba.png", pixels: rgba, width: w, height: h, channels: 4)

    let train = try ImageFolder(
      root: root.path, split: .train, imageHeight: h, imageWidth: w, seed: 0,
      options: exactOptions())
    XCTAssertEqual(train.classNames, ["Zebra", "ant", "bee"])
    XCTAssertEqual(train.count, 5)
    let order = (0..<train.count).map {
      String(train.path(of: $0).dropFirst(train.directory.count + 1))
    }
    XCTAssertEqual(order, ["Zebra/x.png", "ant/a.png", "ant/b.PNG", "ant/deep/c.png", "bee/1.png"])
    XCTAssertEqual((0..<train.count).map(train.label(of:)), [0, 1, 1, 1, 2])

    var plain = exactOptions()
    plain.augment = false
    let trainPlain = try ImageFolder(
      root: root.path, split: .train, imageHeight: h, imageWidth: w, seed: 0, options: plain)
    for (index, file) in order.enumerated() {
      let (label, pixels) = try loadSample(trainPlain, index)
      XCTAssertEqual(label, train.label(of: index))
      let seed = trainFiles.firstIndex(of: file)!
      XCTAssertEqual(pixels, normalized(patternPixels(width: w, height: h, seed: seed)), file)
    }

    let val = try ImageFolder(
      root: root.path, split: .validation, imageHeight: h, imageWidth: w, seed: 0,
      options: exactOptions())
    XCTAssertEqual(val.classNames, train.classNames)
    XCTAssertEqual(val.count, 2)
    let (antLabel, antPixels) = try loadSample(val, 0)
    XCTAssertEqual(antLabel, 1)
    XCTAssertEqual(antPixels, normalized(dropAlpha(rgba)))
    let (beeLabel, beePixels) = try loadSample(val, 1)
    XCTAssertEqual(beeLabel, 2)
    XCTAssertEqual(beePixels, normalized(grayToRGB(gray)))
  }

  func testJPEGPixelsAndScaledDecoding() throws {
    let root = try makeTemporaryDirectory(self, "jpeg")
    let (w, h) = (160, 96)
    var smooth = [UInt8](repeating: 0, count: w * h * 3)
    for y in 0..<h {
      for x in 0..<w {
        smooth[(y * w + x) * 3] = UInt8(x * 255 / w)
        smooth[(y * w + x) * 3 + 1] = UInt8(y * 255 / h)
        smooth[(y * w + x) * 3 + 2] = UInt8((x + y) / 2)
      }
    }
    try writeJPEGFile(root, "train/a/0.jpg", pixels: smooth, width: w, height: h)
    try writeJPEGFile(root, "val/a/0.jpeg", pixels: smooth, width: w, height: h)
    // At the source size, eval with the whole image: within JPEG tolerance of the pixels written.
    let same = try ImageFolder(
      root: root.path, split: .validation, imageHeight: h, imageWidth: w, seed: 0,
      options: exactOptions())
    let worst = maxDifference(toBytes(try loadSample(same, 0).1), smooth.map(Float.init))
    XCTAssertLessThan(worst.value, 10, "max difference \(worst.value) at \(worst.index)")
    // At 24×24, DCT-scaled decoding (1/2 for most crops here) stays close to full-size decoding.
    var full = DataOptions()
    full.jpegDecodeScaling = false
    for split in DataSplit.allCases {
      let scaledSet = try ImageFolder(
        root: root.path, split: split, imageHeight: 24, imageWidth: 24, seed: 3)
      let fullSet = try ImageFolder(
        root: root.path, split: split, imageHeight: 24, imageWidth: 24, seed: 3, options: full)
      for epoch in 0..<4 {
        let a = toBytes(try loadSample(scaledSet, 0, epoch: epoch).1)
        let b = toBytes(try loadSample(fullSet, 0, epoch: epoch).1)
        let difference = maxDifference(a, b)
        XCTAssertLessThan(difference.value, 12, "\(split) epoch \(epoch): \(difference)")
      }
    }
  }

  func testOneTreeSplitByPathHash() throws {
    let root = try makeTemporaryDirectory(self, "hash")
    for c in ["cat", "dog"] {
      for n in 0..<40 {
        try writePNGFile(
          root, "\(c)/\(n).png", pixels: patternPixels(width: 4, height: 4, seed: n), width: 4,
          height: 4)
      }
    }
    var options = DataOptions()
    options.valFraction = 0.25
    let train = try ImageFolder(
      root: root.path, split: .train, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    let val = try ImageFolder(
      root: root.path, split: .validation, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    let trainPaths = Set((0..<train.count).map(train.path(of:)))
    let valPaths = Set((0..<val.count).map(val.path(of:)))
    XCTAssertEqual(train.count + val.count, 80)
    XCTAssertTrue(trainPaths.isDisjoint(with: valPaths))
    XCTAssertTrue((8...32).contains(val.count), "about a quarter held out, got \(val.count)")
    XCTAssertEqual(train.classNames, ["cat", "dog"])
    // The split depends only on the paths below the tree and the split seed.
    let again = try ImageFolder(
      root: root.path, split: .validation, imageHeight: 4, imageWidth: 4, seed: 99, options: options
    )
    XCTAssertEqual((0..<again.count).map(again.path(of:)), (0..<val.count).map(val.path(of:)))
    options.splitSeed = 1
    let other = try ImageFolder(
      root: root.path, split: .validation, imageHeight: 4, imageWidth: 4, seed: 0, options: options)
    XCTAssertNotEqual(Set((0..<other.count).map(other.path(of:))), valPaths)
    // Default without ROOT/val: a tenth held out.
    let defaultVal = try ImageFolder(
      root: root.path, split: .validation, imageHeight: 4, imageWidth: 4, seed: 0)
    XCTAssertTrue((1...20).contains(defaultVal.count), "\(defaultVal.count)")
  }

  func testConstructionErrors() throws {
    let root = try makeTemporaryDirectory(self, "errors")
    assertDataError(["does not exist"]) {
      try ImageFolder(
        root: root.appendingPathComponent("missing").path, split: .train, imageHeight: 8,
        imageWidth: 8, seed: 0)
    }
    assertDataError(["no class folders"]) {
      try ImageFolder(root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0)
    }
    try writePNGFile(
      root, "train/a/1.png", pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4,
      height: 4)
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("train/empty"), withIntermediateDirectories: true)
    try writeFile(root, "train/empty/readme.txt", [65])
    assertDataError(["train/empty", "holds no .jpg"]) {
      try ImageFolder(root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0)
    }
    try writePNGFile(
      root, "train/empty/1.png", pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4,
      height: 4)
    try writePNGFile(
      root, "val/stranger/1.png", pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4,
      height: 4)
    assertDataError(["val/stranger", "does not have"]) {
      try ImageFolder(root: root.path, split: .validation, imageHeight: 8, imageWidth: 8, seed: 0)
    }
    var options = DataOptions()
    options.valFraction = 1.5
    assertDataError(["--val-fraction"]) {
      try ImageFolder(
        root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0, options: options)
    }
  }

  /// Four images in one class; index 1 is truncated, index 2 is not an image at all.
  func writeWithBadFiles() throws -> URL {
    let root = try makeTemporaryDirectory(self, "bad")
    for n in [0, 3] {
      try writePNGFile(
        root, "train/a/\(n).png", pixels: patternPixels(width: 8, height: 8, seed: n), width: 8,
        height: 8)
    }
    let jpeg = try encodeJPEG(
      pixels: patternPixels(width: 64, height: 64, seed: 1), width: 64, height: 64)
    try writeFile(root, "train/a/1.jpg", Array(jpeg.prefix(jpeg.count / 2)))
    try writeFile(root, "train/a/2.png", Array("<html>oops</html>".utf8))
    try writePNGFile(
      root, "val/a/0.png", pixels: patternPixels(width: 8, height: 8, seed: 0), width: 8, height: 8)
    return root
  }

  func testBadFilesFailNamingTheFile() throws {
    let root = try writeWithBadFiles()
    let dataset = try ImageFolder(
      root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0)
    XCTAssertNoThrow(try loadSample(dataset, 0))
    assertDataError(["train/a/1.jpg", "truncated JPEG"]) { try loadSample(dataset, 1) }
    assertDataError(["train/a/2.png", "not a JPEG or PNG"]) { try loadSample(dataset, 2) }
    // Through a batch, the error names the sample, the file and the step.
    assertDataError(["sample 2", "step 5", "2.png"]) {
      try Batch(dataset: dataset, indices: [0, 2], step: 5)
    }
    XCTAssertEqual(dataset.badImages.skipped, 0)
  }

  func testSkipBadImagesSubstitutesTheNextValidImage() throws {
    let root = try writeWithBadFiles()
    var options = DataOptions()
    options.skipBadImages = true
    options.augment = false
    options.evalCropFraction = 1
    let dataset = try ImageFolder(
      root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0, options: options)
    let three = try loadSample(dataset, 3)
    // 1 and 2 are bad: both become 3 (the next index that decodes).
    XCTAssertEqual(try loadSample(dataset, 1).1, three.1)
    XCTAssertEqual(try loadSample(dataset, 2).1, three.1)
    XCTAssertEqual(try loadSample(dataset, 1, epoch: 4).0, three.0)
    XCTAssertEqual(
      dataset.badImages.badFiles.keys.sorted(),
      ["1.jpg", "2.png"].map { dataset.directory + "/a/" + $0 })
    // Every bad file met counts: each load of 1 meets 1 and 2, the load of 2 meets 2.
    let skippedBefore = dataset.badImages.skipped
    XCTAssertEqual(skippedBefore, 2 + 1 + 2)
    // Concurrent loads count every substitution.
    DispatchQueue.concurrentPerform(iterations: 8) { _ in _ = try? loadSample(dataset, 2) }
    XCTAssertEqual(dataset.badImages.skipped, skippedBefore + 8)
    // With augmentation, the substitute takes the crop of the index it replaces.
    options.augment = true
    let augmented = try ImageFolder(
      root: root.path, split: .train, imageHeight: 8, imageWidth: 8, seed: 0, options: options)
    XCTAssertEqual(
      try loadSample(augmented, 2, epoch: 1).1, try loadSample(augmented, 2, epoch: 1).1)
  }
}
