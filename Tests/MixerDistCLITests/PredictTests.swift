// `mixer-dist predict`: top-k class names (recorded with the run) and probabilities for image
// files and folders; a corrupt image is an error naming the file.

import MixerTestSupport
import XCTest

final class PredictTests: XCTestCase {
  func testPredictFilesAndFolders() throws {
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let train = try trainTinyCheckpoint(run: dir, checkpoint: ck, steps: 4, validationExamples: 16)
    XCTAssertEqual(train.status, 0, train.stderr)
    let images = dir.appendingPathComponent("images/sub")
    try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
    for (i, size) in [(32, 32), (64, 48), (20, 40)].enumerated() {
      let rgb = (0..<(size.0 * size.1 * 3)).map { UInt8(($0 * (i + 3)) % 251) }
      try pngFile(width: size.1, height: size.0, rgb: rgb).write(to: images.appendingPathComponent("\(i).png"))
    }
    let text = try mixerDist(["predict", ck.path, dir.appendingPathComponent("images").path, "--top-k", "3"])
    XCTAssertEqual(text.status, 0, text.stderr)
    let lines = text.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 3, text.stdout)
    XCTAssertTrue(lines[0].hasSuffix("") && lines[0].contains("sub/0.png: "), text.stdout)
    let shapes = ["disc", "square", "triangle", "ring", "plus", "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "dot grid"]
    let json = try mixerDist(["predict", ck.path, images.appendingPathComponent("1.png").path, "--json", "--top-k", "10"])
    XCTAssertEqual(json.status, 0, json.stderr)
    let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
    let classes = object["classes"] as! [String], probabilities = object["probabilities"] as! [Double]
    XCTAssertEqual(Set(classes), Set(shapes), "class names are recorded with the run")
    XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-6)
    XCTAssertEqual(probabilities, probabilities.sorted(by: >))
    try Data("not an image".utf8).write(to: images.appendingPathComponent("bad.png"))
    let bad = try mixerDist(["predict", ck.path, images.path])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("bad.png"), bad.stderr)
  }
}
