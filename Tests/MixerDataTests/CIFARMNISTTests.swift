// Tests of the CIFAR binary and MNIST IDX readers (files written here in the exact formats, with
// few records), and of `makeDataset`'s spec parsing and kind inference.

import MixerTestSupport
import XCTest

@testable import MixerData

final class CIFARMNISTTests: XCTestCase {
  /// CIFAR-10 with `perBatch` records in each of the five training files and 3 test records.
  func writeCIFAR10(_ folder: URL, perBatch: Int = 2, names: Bool = true) throws {
    for batch in 1...5 {
      let labels = (0..<perBatch).map { [UInt8((batch * 3 + $0) % 10)] }
      try writeFile(folder, "data_batch_\(batch).bin", cifarRecords(labels: labels, seed: batch))
    }
    try writeFile(folder, "test_batch.bin", cifarRecords(labels: [[9], [0], [4]], seed: 0))
    if names {
      let text = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"
      try writeFile(folder, "batches.meta.txt", Array(text.utf8))
    }
  }

  func testCIFAR10LabelsPixelsAndNames() throws {
    let root = try makeTemporaryDirectory(self, "cifar10")
    let folder = root.appendingPathComponent("cifar-10-batches-bin")
    try writeCIFAR10(folder)
    // The parent folder works too.
    let train = try CIFAR(
      directory: root.path, variant: .cifar10, split: .train, imageHeight: 32, imageWidth: 32,
      seed: 0)
    XCTAssertEqual(train.count, 10)
    XCTAssertEqual(train.classNames.first, "airplane")
    XCTAssertEqual(train.classNames.last, "truck")
    XCTAssertEqual(
      (0..<10).map(train.label(of:)), (1...5).flatMap { b in (0..<2).map { (b * 3 + $0) % 10 } })

    let test = try CIFAR(
      directory: folder.path, variant: .cifar10, split: .validation, imageHeight: 32,
      imageWidth: 32, seed: 0)
    XCTAssertEqual(test.count, 3)
    let (label, pixels) = try loadSample(test, 1)
    XCTAssertEqual(label, 0)
    // Planar CHW becomes HWC; validation at 32 px is the identity.
    let chw = cifarImageCHW(seed: 1)
    var hwc: [UInt8] = []
    for p in 0..<1024 { hwc += [chw[p], chw[1024 + p], chw[2048 + p]] }
    XCTAssertEqual(pixels, normalized(hwc))
    // Training: augmented, differently per epoch, same per (epoch, index).
    XCTAssertEqual(try loadSample(train, 4, epoch: 2).1, try loadSample(train, 4, epoch: 2).1)
    XCTAssertNotEqual(try loadSample(train, 4, epoch: 2).1, try loadSample(train, 4, epoch: 3).1)
    // Upscaled for a 64 px model.
    let big = try CIFAR(
      directory: folder.path, variant: .cifar10, split: .validation, imageHeight: 64,
      imageWidth: 64, seed: 0)
    XCTAssertEqual(try loadSample(big, 0).1.count, 64 * 64 * 3)

    try FileManager.default.removeItem(at: folder.appendingPathComponent("batches.meta.txt"))
    let unnamed = try CIFAR(
      directory: folder.path, variant: .cifar10, split: .validation, imageHeight: 32,
      imageWidth: 32, seed: 0)
    XCTAssertEqual(unnamed.classNames, (0..<10).map(String.init))
  }

  func testCIFAR100UsesFineLabels() throws {
    let folder = try makeTemporaryDirectory(self, "cifar100")
    try writeFile(
      folder, "train.bin", cifarRecords(labels: [[3, 77], [19, 5], [0, 99]], seed: 1))
    try writeFile(folder, "test.bin", cifarRecords(labels: [[1, 42]], seed: 2))
    let names = (0..<100).map { "fine\($0)" }.joined(separator: "\n")
    try writeFile(folder, "fine_label_names.txt", Array(names.utf8))
    let train = try CIFAR(
      directory: folder.path, variant: .cifar100, split: .train, imageHeight: 32, imageWidth: 32,
      seed: 0)
    XCTAssertEqual(train.numClasses, 100)
    XCTAssertEqual((0..<3).map(train.label(of:)), [77, 5, 99])
    XCTAssertEqual(train.classNames[77], "fine77")
    let test = try CIFAR(
      directory: folder.path, variant: .cifar100, split: .validation, imageHeight: 32,
      imageWidth: 32, seed: 0)
    XCTAssertEqual(try loadSample(test, 0).0, 42)
  }

  func testCIFARFileErrors() throws {
    let folder = try makeTemporaryDirectory(self, "cifarbad")
    try writeCIFAR10(folder)
    try FileManager.default.removeItem(at: folder.appendingPathComponent("data_batch_4.bin"))
    assertDataError(["data_batch_4.bin", "missing"]) {
      try CIFAR(
        directory: folder.path, variant: .cifar10, split: .train, imageHeight: 32, imageWidth: 32,
        seed: 0)
    }
    try writeFile(
      folder, "data_batch_4.bin", Array(cifarRecords(labels: [[1]], seed: 0).dropLast(5)))
    assertDataError(["data_batch_4.bin", "3068 bytes", "3073-byte records"]) {
      try CIFAR(
        directory: folder.path, variant: .cifar10, split: .train, imageHeight: 32, imageWidth: 32,
        seed: 0)
    }
    try writeFile(folder, "test_batch.bin", cifarRecords(labels: [[1], [12]], seed: 0))
    assertDataError(["record 1", "label 12"]) {
      try CIFAR(
        directory: folder.path, variant: .cifar10, split: .validation, imageHeight: 32,
        imageWidth: 32, seed: 0)
    }
    // CIFAR-100 records read as CIFAR-10 do not divide: 2·3074 bytes.
    try writeFile(folder, "test_batch.bin", cifarRecords(labels: [[1, 2], [3, 4]], seed: 0))
    assertDataError(["6148 bytes"]) {
      try CIFAR(
        directory: folder.path, variant: .cifar10, split: .validation, imageHeight: 32,
        imageWidth: 32, seed: 0)
    }
  }

  /// MNIST-style IDX files: `count` images of `rows × columns` and their labels.
  func writeIDX(
    _ folder: URL, prefix: String, count: Int, rows: Int = 28, columns: Int = 28, gzip: Bool = false
  ) throws -> [UInt8] {
    let pixels = (0..<count * rows * columns).map {
      UInt8(($0 * 7 + $0 / (rows * columns) * 31) % 256)
    }
    let labels = (0..<count).map { UInt8(($0 * 3 + 1) % 10) }
    let images = idxFile(magic: 0x0803, dimensions: [count, rows, columns], data: pixels)
    let labelFile = idxFile(magic: 0x0801, dimensions: [count], data: labels)
    let suffix = gzip ? ".gz" : ""
    try writeFile(
      folder, "\(prefix)-images-idx3-ubyte\(suffix)", gzip ? gzipStored(images) : images)
    try writeFile(
      folder, "\(prefix)-labels-idx1-ubyte\(suffix)", gzip ? gzipStored(labelFile) : labelFile)
    return pixels
  }

  func testMNISTGrayBecomesRGBAndResizes() throws {
    let folder = try makeTemporaryDirectory(self, "mnist")
    let pixels = try writeIDX(folder, prefix: "t10k", count: 5)
    _ = try writeIDX(folder, prefix: "train", count: 6)
    let test = try MNIST(
      directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28, imageWidth: 28,
      seed: 0)
    XCTAssertEqual(test.count, 5)
    XCTAssertEqual(test.classNames, (0..<10).map(String.init))
    let (label, image) = try loadSample(test, 2)
    XCTAssertEqual(label, 7)
    let gray = pixels[2 * 784..<3 * 784]
    XCTAssertEqual(image, normalized(grayToRGB(Array(gray))))
    let fashion = try MNIST(
      directory: folder.path, variant: .fashion, split: .train, imageHeight: 32, imageWidth: 32,
      seed: 0)
    XCTAssertEqual(fashion.count, 6)
    XCTAssertEqual(fashion.classNames[9], "Ankle boot")
    let (_, big) = try loadSample(fashion, 0, epoch: 1)
    XCTAssertEqual(big.count, 32 * 32 * 3)
    XCTAssertTrue(big.allSatisfy { $0 >= -1 && $0 <= 1 })
    XCTAssertFalse(MNIST.Variant.mnist == .fashion)
    XCTAssertFalse(test.preprocessing.flip, "digits are not flipped")
    XCTAssertTrue(fashion.preprocessing.flip)
  }

  func testMNISTGzip() throws {
    let folder = try makeTemporaryDirectory(self, "mnistgz")
    let pixels = try writeIDX(folder, prefix: "t10k", count: 3, gzip: true)
    let test = try MNIST(
      directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
      imageWidth: 28, seed: 0)
    XCTAssertEqual(test.count, 3)
    XCTAssertEqual(try loadSample(test, 1).1, normalized(grayToRGB(Array(pixels[784..<1568]))))
    // A truncated .gz is an error naming the file.
    let images = folder.appendingPathComponent("t10k-images-idx3-ubyte.gz")
    let bytes = try Data(contentsOf: images)
    try bytes.prefix(bytes.count / 2).write(to: images)
    assertDataError(["t10k-images-idx3-ubyte.gz", "truncated gzip"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
  }

  func testIDXErrors() throws {
    let folder = try makeTemporaryDirectory(self, "idxbad")
    assertDataError(["t10k-images-idx3-ubyte"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
    _ = try writeIDX(folder, prefix: "t10k", count: 4)
    let images = folder.appendingPathComponent("t10k-images-idx3-ubyte")
    let good = try Data(contentsOf: images)
    try good.dropLast(10).write(to: images)
    assertDataError(["t10k-images-idx3-ubyte", "truncated"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
    try Data(idxFile(magic: 0x0801, dimensions: [4], data: [0, 1, 2, 3])).write(to: images)
    assertDataError(["IDX magic 0x803"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
    try good.write(to: images)
    try writeFile(
      folder, "t10k-labels-idx1-ubyte", idxFile(magic: 0x0801, dimensions: [3], data: [0, 1, 2]))
    assertDataError(["4 images", "3 labels"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
    try writeFile(
      folder, "t10k-labels-idx1-ubyte",
      idxFile(magic: 0x0801, dimensions: [4], data: [0, 1, 12, 3]))
    assertDataError(["label 12", "sample 2"]) {
      try MNIST(
        directory: folder.path, variant: .mnist, split: .validation, imageHeight: 28,
        imageWidth: 28, seed: 0)
    }
  }

  func testMakeDatasetParsesAndInfersKinds() throws {
    let root = try makeTemporaryDirectory(self, "factory")
    let cifar10 = root.appendingPathComponent("c10")
    let cifar100 = root.appendingPathComponent("c100")
    let mnist = root.appendingPathComponent("mnist")
    let folder = root.appendingPathComponent("imgs")
    let tree = root.appendingPathComponent("tree")
    try writeCIFAR10(cifar10)
    try writeFile(cifar100, "train.bin", cifarRecords(labels: [[3, 77]], seed: 1))
    try writeFile(cifar100, "test.bin", cifarRecords(labels: [[1, 42]], seed: 2))
    _ = try writeIDX(mnist, prefix: "train", count: 2)
    _ = try writeIDX(mnist, prefix: "t10k", count: 2)
    for split in ["train", "val"] {
      try writePNGFile(
        folder, "\(split)/a/1.png", pixels: patternPixels(width: 4, height: 4, seed: 0), width: 4,
        height: 4)
    }
    for n in 0..<20 {
      try writePNGFile(
        tree, "k/\(n).png", pixels: patternPixels(width: 4, height: 4, seed: n), width: 4, height: 4
      )
    }

    XCTAssertEqual(try inferDataKind(directory: cifar10.path), .cifar10)
    XCTAssertEqual(try inferDataKind(directory: root.appendingPathComponent("c10").path), .cifar10)
    XCTAssertEqual(try inferDataKind(directory: cifar100.path), .cifar100)
    XCTAssertEqual(try inferDataKind(directory: mnist.path), .mnist)
    XCTAssertEqual(try inferDataKind(directory: folder.path), .folder)
    XCTAssertEqual(try inferDataKind(directory: tree.path), .folder)
    XCTAssertEqual(try DataSpec("fashion-mnist:" + mnist.path).resolved().kind, .fashionMNIST)
    XCTAssertEqual(try DataSpec("shapes").resolved().kind, .shapes)
    XCTAssertEqual(try DataSpec(cifar100.path).resolved().kind, .cifar100)

    let size = (height: 32, width: 32)
    XCTAssertEqual(
      try makeDataset(spec: "cifar10:" + cifar10.path, split: .train, imageSize: size, seed: 0)
        .count, 10)
    XCTAssertEqual(
      try makeDataset(spec: cifar100.path, split: .validation, imageSize: size, seed: 0).numClasses,
      100)
    XCTAssertEqual(
      try makeDataset(spec: "mnist:" + mnist.path, split: .train, imageSize: size, seed: 0).height,
      32)
    XCTAssertEqual(
      try makeDataset(spec: "fashion-mnist:" + mnist.path, split: .train, imageSize: size, seed: 0)
        .classNames[0], "T-shirt/top")
    XCTAssertEqual(
      try makeDataset(spec: "folder:" + folder.path, split: .validation, imageSize: size, seed: 0)
        .count, 1)
    var options = DataOptions()
    options.trainExamples = 30
    XCTAssertEqual(
      try makeDataset(spec: "shapes", split: .train, imageSize: size, seed: 0, options: options)
        .count, 30)
    let data = try makeDataset(
      spec: "folder:" + tree.path, split: .train, imageSize: (16, 24), seed: 0)
    XCTAssertEqual(data.height, 16)
    XCTAssertEqual(data.width, 24)
    XCTAssertTrue(data is any EpochAugmentedDataset)

    assertDataError(["--image-size 32"]) {
      try makeDataset(spec: "shapes", split: .train, imageSize: (224, 224), seed: 0)
    }
    assertDataError(["cifar10:PATH"]) {
      try makeDataset(spec: "cifar10", split: .train, imageSize: size, seed: 0)
    }
    assertDataError(["no such directory"]) {
      try makeDataset(spec: "imagenet:/x", split: .train, imageSize: size, seed: 0)
    }
    assertDataError(["cannot tell"]) {
      try makeDataset(spec: root.path, split: .train, imageSize: size, seed: 0)
    }
  }
}
