// Real mpirun tests (STYLE habit 7): run the built `mixer-comm-check` under mpirun with 2 and 4
// ranks and check its exit status, then inject faults: a failing rank must abort the whole job
// within seconds naming itself, a stalled rank must make the others' watchdog abort the job
// naming the collective. Fails when mpirun is not on PATH (launch/setup --deps installs it).

import Foundation
import MixerTestSupport
import XCTest

final class MPIRunTests: XCTestCase {
  /// What one mpirun produced.
  private struct Run {
    var status: Int32
    var output: String
    var seconds: Double
  }

  /// The `mixer-comm-check` built with these tests: `MIXER_COMM_CHECK` if set, else next to the
  /// test bundle (walking up from the test executable, which sits in the products directory on
  /// Linux and inside `X.xctest/Contents/MacOS` on macOS), else the newest
  /// `.build*/debug/mixer-comm-check` of the package this file belongs to.
  private static func commCheckBinary() -> URL? {
    let fileManager = FileManager.default
    if let path = ProcessInfo.processInfo.environment["MIXER_COMM_CHECK"] {
      return URL(fileURLWithPath: path)
    }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
      .deletingLastPathComponent()
    for _ in 0..<5 {
      let candidate = directory.appendingPathComponent("mixer-comm-check")
      if fileManager.isExecutableFile(atPath: candidate.path) { return candidate }
      directory = directory.deletingLastPathComponent()
    }
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    let scratchDirectories = (try? fileManager.contentsOfDirectory(atPath: packageRoot.path)) ?? []
    return scratchDirectories.filter { $0.hasPrefix(".build") }
      .map { packageRoot.appendingPathComponent($0).appendingPathComponent("debug/mixer-comm-check") }
      .filter { fileManager.isExecutableFile(atPath: $0.path) }
      .max { modificationDate($0) < modificationDate($1) }
  }

  private static func modificationDate(_ url: URL) -> Date {
    ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date)
      ?? .distantPast
  }

  /// Runs `mpirun --oversubscribe -n ranks mixer-comm-check arguments`, killing it after `limit`.
  private func mpirun(ranks: Int, _ arguments: [String], limit: Double = 30) throws -> Run {
    guard let mpirun = which("mpirun").map(URL.init(fileURLWithPath:)) else {
      throw MissingTestDependency("mpirun is not on PATH (launch/setup --deps)")
    }
    guard let binary = Self.commCheckBinary() else {
      throw MissingTestDependency(
        "mixer-comm-check not found: build it (swift build --product mixer-comm-check) or set MIXER_COMM_CHECK")
    }
    let log = FileManager.default.temporaryDirectory
      .appendingPathComponent("mixer-comm-check-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: log) }
    let output = try FileHandle(forWritingTo: log)
    defer { try? output.close() }

    let process = Process()
    process.executableURL = mpirun
    process.arguments = ["--oversubscribe", "-n", "\(ranks)", binary.path] + arguments
    var environment = ProcessInfo.processInfo.environment
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    process.environment = environment
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = output
    let start = Date()
    try process.run()
    while process.isRunning && Date().timeIntervalSince(start) < limit {
      Thread.sleep(forTimeInterval: 0.02)
    }
    if process.isRunning {
      process.terminate()
      process.waitUntilExit()
      XCTFail("mpirun did not finish within \(limit) s")
    }
    process.waitUntilExit()
    let seconds = Date().timeIntervalSince(start)
    let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
    return Run(status: process.terminationStatus, output: text, seconds: seconds)
  }

  func testTwoRanksExact() throws {
    let run = try mpirun(ranks: 2, ["--sizes", "1K,64K", "--iterations", "3"])
    XCTAssertEqual(run.status, 0, run.output)
    XCTAssertTrue(run.output.contains("mixer-comm-check: 2 rank(s)"), run.output)
    XCTAssertTrue(run.output.contains("collectives and gradient bucketer exact, bf16 within 1.0 ulp"), run.output)
    XCTAssertTrue(run.output.contains("busbw"), run.output)
    XCTAssertTrue(run.output.contains("mixer-comm-check: OK"), run.output)
  }

  func testFourRanksOversubscribedExact() throws {
    let run = try mpirun(ranks: 4, ["--sizes", "1K", "--iterations", "2"])
    XCTAssertEqual(run.status, 0, run.output)
    XCTAssertTrue(run.output.contains("mixer-comm-check: 4 rank(s)"), run.output)
    XCTAssertTrue(run.output.contains("mixer-comm-check: OK"), run.output)
  }

  func testFailingRankAbortsTheJobNamingIt() throws {
    let run = try mpirun(ranks: 3, ["--fail-rank", "1", "--no-bench"])
    XCTAssertNotEqual(run.status, 0, run.output)
    XCTAssertLessThan(run.seconds, 10, "the job must abort at once, not wait")
    XCTAssertTrue(
      run.output.contains("mixer-dist: rank 1: injected failure (--fail-rank 1)"),
      run.output)
  }

  func testStalledRankTriggersTheWatchdog() throws {
    let run = try mpirun(
      ranks: 2, ["--stall-rank", "1", "--timeout", "2", "--stall-seconds", "60", "--no-bench"])
    XCTAssertNotEqual(run.status, 0, run.output)
    XCTAssertLessThan(run.seconds, 20, "the watchdog must end the job long before the stall ends")
    XCTAssertTrue(
      run.output.contains(
        "mixer-dist: rank 0: watchdog: 'allReduceSum of 1024 floats (warm-up)' has not completed after"),
      run.output)
  }
}
