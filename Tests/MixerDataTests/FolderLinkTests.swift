// Tests of symbolic links in image and segmentation folders (FolderWalk.swift): a loop is not
// entered, a link to a sibling class folder or to a file already listed adds nothing, a link to an
// image elsewhere adds it once, a broken link is skipped, and the counts reach the start-up line.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerData

final class FolderLinkTests: XCTestCase {
  let side = 4

  /// ROOT/train/{five,six}/{0,1,2}.png and ROOT/val/{five,six}/0.png, all distinct images.
  func makeFolder(_ name: String) throws -> URL {
    let root = try makeTemporaryDirectory(self, name)
    for (c, label) in ["five", "six"].enumerated() {
      for n in 0..<3 {
        try writePNGFile(
          root, "train/\(label)/\(n).png", pixels: patternPixels(width: side, height: side, seed: 10 * c + n),
          width: side, height: side)
      }
      try writePNGFile(
        root, "val/\(label)/0.png", pixels: patternPixels(width: side, height: side, seed: 50 + c),
        width: side, height: side)
    }
    return root
  }

  func link(_ root: URL, _ relative: String, to destination: String) throws {
    try FileManager.default.createSymbolicLink(
      atPath: root.appendingPathComponent(relative).path, withDestinationPath: destination)
  }

  func train(_ root: URL) throws -> ImageFolder {
    try ImageFolder(root: root.path, split: .train, imageHeight: side, imageWidth: side, seed: 0)
  }

  /// Paths below the tree and labels, in index order.
  func listing(_ folder: ImageFolder) -> [String] {
    (0..<folder.count).map {
      "\(folder.label(of: $0)):" + String(folder.path(of: $0).dropFirst(folder.directory.count + 1))
    }
  }

  let plainListing = ["0:five/0.png", "0:five/1.png", "0:five/2.png", "1:six/0.png", "1:six/1.png", "1:six/2.png"]

  func testLoopIsNotEntered() throws {
    let root = try makeFolder("loop")
    try link(root, "train/five/loop", to: "..")  // train/five/loop/five/loop/... without end
    try link(root, "train/six/self", to: ".")
    let data = try train(root)
    XCTAssertEqual(listing(data), plainListing)
    XCTAssertEqual(data.linkCounts.cycles, 2)
    XCTAssertEqual(data.linkCounts.followed, 0)
    let line = try XCTUnwrap(data.splitDescription)
    XCTAssertTrue(line.contains("(6 images; symbolic links: 0 followed, 2 skipped (2 into a directory cycle))"), line)
    // a link above the tree (to the dataset's root, by its absolute path) is a cycle too
    try link(root, "train/six/up", to: root.path)
    XCTAssertEqual(try train(root).count, 6)
  }

  func testLinkToSiblingClassFolderAddsNothing() throws {
    let root = try makeFolder("sibling")
    try link(root, "train/five/more", to: "../six")  // listed before six itself: six keeps its files
    var data = try train(root)
    XCTAssertEqual(listing(data), plainListing)
    XCTAssertEqual(data.linkCounts.followed, 1)
    XCTAssertEqual(data.linkCounts.duplicates, 3)
    XCTAssertTrue(
      data.splitDescription!.contains("symbolic links: 1 followed, 0 skipped; 3 files reached twice counted once"),
      data.splitDescription!)

    let other = try makeFolder("sibling-after")
    try link(other, "train/six/more", to: "../five")  // five was listed already
    data = try train(other)
    XCTAssertEqual(listing(data), plainListing)
    XCTAssertEqual(data.linkCounts.repeats, 1)
    XCTAssertEqual(data.linkCounts.followed, 0)
  }

  func testLinksToFiles() throws {
    let root = try makeFolder("files")
    let outside = try makeTemporaryDirectory(self, "outside")
    try writePNGFile(outside, "x.png", pixels: patternPixels(width: side, height: side, seed: 99), width: side, height: side)
    try link(root, "train/five/extra.png", to: outside.appendingPathComponent("x.png").path)  // new: counted
    try link(root, "train/six/again.png", to: outside.appendingPathComponent("x.png").path)  // the same file again
    try link(root, "train/six/copy.png", to: "../five/1.png")  // a file listed by its own path
    try link(root, "train/six/gone.png", to: "../five/missing.png")  // broken
    let data = try train(root)
    XCTAssertEqual(
      listing(data), ["0:five/0.png", "0:five/1.png", "0:five/2.png", "0:five/extra.png"] + plainListing.suffix(3))
    XCTAssertEqual(data.linkCounts.followed, 3)
    XCTAssertEqual(data.linkCounts.broken, 1)
    XCTAssertEqual(data.linkCounts.duplicates, 2)
    // the linked image loads as the file it points to
    var plain = DataOptions()
    plain.augment = false
    plain.evalCropFraction = 1
    let unaugmented = try ImageFolder(
      root: root.path, split: .train, imageHeight: side, imageWidth: side, seed: 0, options: plain)
    let (label, pixels) = try loadSample(unaugmented, 3)
    XCTAssertEqual(label, 0)
    XCTAssertEqual(pixels, normalized(patternPixels(width: side, height: side, seed: 99)))
  }

  func testClassFolderThatIsALink() throws {
    let root = try makeFolder("class-link")
    let outside = try makeTemporaryDirectory(self, "seven")
    for n in 0..<2 {
      try writePNGFile(outside, "\(n).jpg.png", pixels: patternPixels(width: side, height: side, seed: 70 + n), width: side, height: side)
    }
    try link(root, "train/seven", to: outside.path)
    try link(outside, "back", to: root.appendingPathComponent("train").path)  // from the linked class back up: a cycle
    var data = try train(root)
    XCTAssertEqual(data.classNames, ["five", "seven", "six"])
    XCTAssertEqual(data.count, 8)
    XCTAssertEqual(data.linkCounts.followed, 1)
    XCTAssertEqual(data.linkCounts.cycles, 1)
    // a class folder that is only a second name for another class holds nothing of its own
    try link(root, "train/zz", to: "five")
    assertDataError(["train/zz", "holds no .jpg", "of its own", "1 to a folder already listed"]) {
      try self.train(root)
    }
    try FileManager.default.removeItem(at: root.appendingPathComponent("train/zz"))
    data = try train(root)
    XCTAssertEqual(data.count, 8)
  }

  func testHashSplitCountsEachFileOnce() throws {
    let root = try makeFolder("hash")
    try FileManager.default.removeItem(at: root.appendingPathComponent("val"))
    try link(root, "train/five/loop", to: "..")
    try link(root, "train/five/more", to: "../six")
    var options = DataOptions()
    options.valFraction = 0.5
    let parts = try [DataSplit.train, .validation].map {
      try ImageFolder(root: root.path, split: $0, imageHeight: side, imageWidth: side, seed: 0, options: options)
    }
    XCTAssertEqual(parts[0].count + parts[1].count, 6)
    XCTAssertTrue(parts[0].splitDescription!.contains("symbolic links: 1 followed, 1 skipped"), parts[0].splitDescription!)
  }

  func testSegmentationFolderLoop() throws {
    let root = try makeTemporaryDirectory(self, "segmentation")
    for n in 0..<3 {
      try writePNGFile(root, "images/a/\(n).png", pixels: patternPixels(width: side, height: side, seed: n), width: side, height: side)
      try writePNGFile(root, "masks/a/\(n).png", pixels: [UInt8](repeating: 1, count: side * side), width: side, height: side, channels: 1)
    }
    try link(root, "images/a/loop", to: "..")
    try link(root, "masks/a/loop", to: "../..")
    var options = DataOptions()
    options.declaredClasses = 2
    options.valFraction = 0.01
    let data = try SegmentationFolder(
      root: root.path, split: .train, imageHeight: side, imageWidth: side, seed: 0, options: options)
    let validation = try? SegmentationFolder(
      root: root.path, split: .validation, imageHeight: side, imageWidth: side, seed: 0, options: options)
    XCTAssertEqual(data.count + (validation?.count ?? 0), 3)
    XCTAssertEqual(data.linkCounts.cycles, 2)
    XCTAssertTrue(data.splitDescription!.contains("2 into a directory cycle"), data.splitDescription!)
  }

  func testInferredKindFollowsTheSameRules() throws {
    let root = try makeTemporaryDirectory(self, "infer")
    try FileManager.default.createDirectory(
      at: root.appendingPathComponent("only"), withIntermediateDirectories: true)
    try link(root, "only/loop", to: "..")
    // no image anywhere: the loop does not make one, and the walk ends
    XCTAssertThrowsError(try inferDataKind(directory: root.path))
  }
}
