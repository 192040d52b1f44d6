// Shared helpers of the MixerTrain tests: fixture paths, temporary folders, the release binary.

import Foundation
import XCTest

/// The package root (this file is Tests/MixerTrainTests/TestSupport.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

/// Reference folders produced by the official Flax model (copies of shared/reference, plus the
/// extra shapes made by tools/make_reference.py).
var referenceFolders: [URL] {
  let root = packageRoot.appendingPathComponent("Tests/Fixtures/reference")
  let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
  return names.sorted().map { root.appendingPathComponent($0) }
}

/// A fresh temporary folder, removed after the test.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("mixer-dist-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}
