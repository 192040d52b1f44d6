// `--grad-comm bf16` under real mpirun, end to end through the binary: 2 ranks train the small
// run of MPITrainTests with bf16 gradient communication, land close to fp32 communication but not
// on it (the bf16 reduction really ran), and a format that does not exist is refused on every
// rank with one line. And with the default model and bucket size, 2 ranks start more than one gradient
// bucket while backward still runs. Each run is under a few seconds.

import Foundation
import MixerTestSupport
import XCTest

final class GradCommMPITests: XCTestCase {
  func parameters(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return data.withUnsafeBytes { raw in
      (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
    }
  }

  func train(_ format: String) throws -> [Float] {
    let dir = try makeTemporaryDirectory(self)
    let result = try mpirunMixerDist(
      ranks: 2, MPITrainTests.smallArguments + ["--grad-comm", format, "--bucket-size", "4000", "--run-dir", dir.path],
      timeout: 120)
    XCTAssertEqual(result.status, 0, "\(format): \(result.stdout)\n\(result.stderr)")
    XCTAssertTrue(result.stdout.contains("2 rank(s)"), result.stdout)
    return try parameters(dir.appendingPathComponent("final-parameters.f32"))
  }

  func testBFloat16CommunicationOn2RanksStaysCloseToFP32() throws {
    let fp32 = try train("fp32")
    let bf16 = try train("bf16")
    XCTAssertEqual(fp32.count, bf16.count)
    XCTAssertNotEqual(fp32, bf16, "bf16 communication changed nothing")
    let scale = fp32.map(abs).max() ?? 0
    let worst = zip(fp32, bf16).map { abs($0 - $1) }.max() ?? .infinity
    XCTAssertLessThan(worst, 0.05 * scale, "largest parameter difference \(worst), largest parameter \(scale)")
  }

  /// The default model and bucket size (only the data and steps made small) on 2 ranks: every
  /// step starts more than one of its 4 buckets (the default rule for tiny on 2 ranks) while
  /// backward still runs (the debug log says so).
  func testDefaultSettingsOn2RanksStartSeveralBucketsDuringBackward() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try mpirunMixerDist(
      ranks: 2, ["train", "--steps", "3", "--batch", "16", "--train-examples", "256", "--val-examples", "32",
                 "--threads", "1", "--log-level", "debug", "--run-dir", dir.path], timeout: 120)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    let log = result.stdout + result.stderr
    let started = log.split(separator: "\n").compactMap { line -> Int? in
      guard let range = line.range(of: " buckets, ") , line.contains("4 buckets, ") else { return nil }
      return Int(line[range.upperBound...].prefix { $0.isNumber })
    }
    XCTAssertEqual(started.count, 3, "one debug line per step expected: \(log)")
    XCTAssertTrue(started.allSatisfy { $0 > 1 }, "buckets started during backward per step: \(started)")
  }

  func testUnknownFormatIsRefusedOnEveryRank() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try mpirunMixerDist(
      ranks: 2, MPITrainTests.smallArguments + ["--grad-comm", "fp16", "--run-dir", dir.path], timeout: 60)
    XCTAssertNotEqual(result.status, 0)
    XCTAssertFalse(result.timedOut, "hung on a bad --grad-comm: \(result.stderr)")
    XCTAssertTrue(result.stderr.contains("unknown --grad-comm 'fp16' (known: fp32, bf16)"), result.stderr)
  }
}
