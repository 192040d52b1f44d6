// Official weights end to end: import an official-format .npz (preset inferred), fine-tune from it
// with --init-from, export it back bit for bit, and the higher-resolution config (D_S × K²).

import MixerTestSupport
import XCTest
import MixerCheckpoint

final class ImportExportTests: XCTestCase {
  func testImportFineTuneExport() throws {
    let dir = try makeTemporaryDirectory(self)
    let source = packageRoot.appendingPathComponent("Tests/Fixtures/reference/mixer-tiny-tanh/params.npz")
    let weights = dir.appendingPathComponent("weights")
    let imported = try mixerDist(["import", source.path, "--output", weights.path])
    XCTAssertEqual(imported.status, 0, imported.stderr)
    XCTAssertTrue(imported.stdout.contains("patch 8, C 64, 2 blocks, D_S 32, D_C 128, 10 classes"), imported.stdout)
    let shape = ["--patch", "8", "--hidden", "64", "--blocks", "2", "--channels-mlp", "128"]
    let tuned = try mixerDist(["train", "--init-from", weights.path] + shape + [
      "--tokens-mlp", "32", "--train-examples", "64", "--val-examples", "16", "--batch", "16", "--steps", "2",
      "--threads", "1", "--run-dir", dir.appendingPathComponent("run").path,
    ])
    XCTAssertEqual(tuned.status, 0, tuned.stderr)
    let back = dir.appendingPathComponent("back.npz")
    XCTAssertEqual(try mixerDist(["export", weights.path, "--output", back.path]).status, 0)
    let original = try NPZ.readFloats(contentsOf: source), exported = try NPZ.readFloats(contentsOf: back)
    XCTAssertEqual(Set(original.keys), Set(exported.keys))
    for (name, array) in original { XCTAssertEqual(exported[name], array, name) }
    // twice the resolution with the same patch: token mixing widened by K² = 4
    let high = try mixerDist(["train", "--init-from", weights.path] + shape + ["--image-size", "64", "--print-config"])
    XCTAssertEqual(high.status, 0, high.stderr)
    XCTAssertTrue(high.stdout.contains("\ntokens-mlp: 128\n"), high.stdout)
    // another patch size cannot be adapted: an error naming the tensors
    let wrong = try mixerDist(["train", "--init-from", weights.path, "--patch", "4", "--hidden", "64", "--blocks", "2",
                               "--tokens-mlp", "32", "--channels-mlp", "128", "--steps", "1", "--train-examples", "64",
                               "--val-examples", "16", "--batch", "16", "--run-dir", dir.appendingPathComponent("w").path])
    XCTAssertNotEqual(wrong.status, 0)
    XCTAssertTrue(wrong.stderr.contains("stem/kernel"), wrong.stderr)
  }
}
