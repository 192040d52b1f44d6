// One artifact (issue 16): every run ends with a checkpoint in its run folder, and a weights folder
// made by `import` is one too; eval, predict, export, inspect and --init-from accept any of them.
// Class names are checked: other names are an error unless the user means it.

import Foundation
import MixerTestSupport
import XCTest

final class ArtifactTests: XCTestCase {
  let small = [
    "--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8",
    "--train-examples", "128", "--val-examples", "32", "--batch", "16", "--steps", "3", "--threads", "1",
  ]

  func testEveryCommandReadsARunFolderAndAnImportedFolder() throws {
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("run")
    let trained = try mixerDist(["train"] + small + ["--run-dir", run.path])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let image = dir.appendingPathComponent("image.png")
    try pngFile(width: 32, height: 32, rgb: [UInt8](repeating: 128, count: 32 * 32 * 3)).write(to: image)

    let weights = dir.appendingPathComponent("weights")
    let source = packageRoot.appendingPathComponent("Tests/Fixtures/reference/mixer-tiny-tanh/params.npz")
    XCTAssertEqual(try mixerDist(["import", source.path, "--output", weights.path]).status, 0)

    for folder in [run, weights] {
      let name = folder.lastPathComponent
      let inspect = try mixerDist(["inspect", folder.path])
      XCTAssertEqual(inspect.status, 0, "\(name): \(inspect.stdout) \(inspect.stderr)")
      let eval = try mixerDist(["eval", folder.path, "--data", "shapes", "--threads", "1"])
      XCTAssertEqual(eval.status, 0, "\(name): \(eval.stderr)")
      XCTAssertTrue(eval.stdout.contains("top-1"), eval.stdout)
      let predict = try mixerDist(["predict", folder.path, image.path, "--threads", "1"])
      XCTAssertEqual(predict.status, 0, "\(name): \(predict.stderr)")
      let export = try mixerDist(["export", folder.path, "--output", dir.appendingPathComponent("\(name).npz").path])
      XCTAssertEqual(export.status, 0, "\(name): \(export.stderr)")
    }
    // --init-from a run folder; imported weights need --data to be evaluated
    let tuned = try mixerDist(["train"] + small + ["--init-from", run.path, "--run-dir", dir.appendingPathComponent("tuned").path])
    XCTAssertEqual(tuned.status, 0, tuned.stderr)
    let noData = try mixerDist(["eval", weights.path])
    XCTAssertEqual(noData.status, 1)
    XCTAssertTrue(noData.stderr.contains("pass --data"), noData.stderr)
  }

  /// eval on data whose classes have other names: an error saying which (it used to report a
  /// meaningless top-1 with exit 0); --ignore-class-names evaluates by index anyway.
  func testEvalChecksClassNames() throws {
    let dir = try makeTemporaryDirectory(self)
    func folder(_ name: String, classes: [String]) throws -> URL {
      let root = dir.appendingPathComponent(name)
      for (c, className) in classes.enumerated() {
        let path = root.appendingPathComponent("train/\(className)")
        try FileManager.default.createDirectory(at: path, withIntermediateDirectories: true)
        for i in 0..<12 {
          var rgb = [UInt8](repeating: 20, count: 32 * 32 * 3)
          for p in 0..<(32 * 32) { rgb[p * 3 + c] = UInt8(140 + 10 * i) }
          try pngFile(width: 32, height: 32, rgb: rgb).write(to: path.appendingPathComponent("\(i).png"))
        }
      }
      return root
    }
    let animals = try folder("animals", classes: ["cat", "dog", "owl"])
    let colours = try folder("colours", classes: ["blue", "green", "red"])
    let run = dir.appendingPathComponent("run")
    let trained = try mixerDist(["train"] + small + ["--data", "folder:\(animals.path)", "--val-fraction", "0.3", "--batch", "8", "--run-dir", run.path])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let same = try mixerDist(["eval", run.path, "--threads", "1"])
    XCTAssertEqual(same.status, 0, same.stderr)
    let other = try mixerDist(["eval", run.path, "--data", "folder:\(colours.path)", "--threads", "1"])
    XCTAssertEqual(other.status, 1)
    XCTAssertTrue(other.stderr.contains("not in the data: cat, dog, owl; unknown to the model: blue, green, red"), other.stderr)
    XCTAssertTrue(other.stderr.contains("--ignore-class-names"), other.stderr)
    let anyway = try mixerDist(["eval", run.path, "--data", "folder:\(colours.path)", "--ignore-class-names", "--threads", "1"])
    XCTAssertEqual(anyway.status, 0, anyway.stderr)
  }
}
