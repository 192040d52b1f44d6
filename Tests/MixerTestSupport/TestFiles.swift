// TestFiles.swift: what every test target needs around the code under test: the package root,
// temporary folders, programs on the PATH, python3 with the modules a test calls, and the error a
// test throws when something it needs is missing (a failure, never a skip: launch/test installs
// everything, so a missing tool is a broken machine, not a reason to test less).

import Foundation
import XCTest

/// The package root (this file is Tests/MixerTestSupport/TestFiles.swift).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

/// The test fixtures checked into the repository (`Tests/Fixtures`).
public let fixturesDirectory = packageRoot.appendingPathComponent("Tests/Fixtures")

/// A fresh empty folder under the system temporary directory, removed when the test ends.
public func makeTemporaryDirectory(_ test: XCTestCase, _ name: String = "test") throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("mixer-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}

/// Something a test needs is not installed; thrown, it fails the test with this message.
public struct MissingTestDependency: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The full path of a program on the PATH.
public func which(_ name: String) -> String? {
  for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
    let path = "\(directory)/\(name)"
    if FileManager.default.isExecutableFile(atPath: path) { return path }
  }
  return nil
}

/// Runs python3 (from PATH) with `arguments`; returns its exit status, stdout and stderr.
public func runPython(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["python3"] + arguments
  let output = Pipe(), errors = Pipe()
  process.standardOutput = output
  process.standardError = errors
  try process.run()
  // stderr is drained on another thread, so a chatty child cannot fill one pipe and block
  let errorData = ReadBuffer()
  let errorsRead = DispatchSemaphore(value: 0)
  DispatchQueue.global().async {
    errorData.data = errors.fileHandleForReading.readDataToEndOfFile()
    errorsRead.signal()
  }
  let outputData = output.fileHandleForReading.readDataToEndOfFile()
  errorsRead.wait()
  process.waitUntilExit()
  return (
    process.terminationStatus, String(decoding: outputData, as: UTF8.self),
    String(decoding: errorData.data, as: UTF8.self)
  )
}

/// Throws `MissingTestDependency` unless python3 imports every module in `modules`.
public func requirePython(_ modules: [String]) throws {
  let probe = try? runPython(["-c", modules.map { "import \($0)" }.joined(separator: "; ")])
  guard let probe, probe.status == 0 else {
    throw MissingTestDependency(
      "python3 cannot import \(modules.joined(separator: ", ")) (launch/test installs them): "
        + (probe?.errors.split(separator: "\n").last.map(String.init) ?? "python3 did not run"))
  }
}

/// Bytes filled by one thread and read by another after a semaphore hand-off.
final class ReadBuffer: @unchecked Sendable {
  var data = Data()
}

/// Reference folders produced by the official Flax model (copies of shared/reference, plus the
/// extra shapes made by tools/make_reference.py).
public var referenceFolders: [URL] {
  let root = fixturesDirectory.appendingPathComponent("reference")
  let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
  return names.sorted().map { root.appendingPathComponent($0) }
}
