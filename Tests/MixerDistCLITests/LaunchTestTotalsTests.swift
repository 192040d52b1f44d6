// launch/test's closing line (launch/test-totals) counts every test case of the suite, whatever
// the XCTest summaries say: a summary with skips is worded differently, and it counts failed
// assertions, not failed tests. A skipped test makes the command fail.

import Foundation
import MixerTestSupport
import XCTest

final class LaunchTestTotalsTests: XCTestCase {
  /// XCTest's output for one failing, one passing and one skipped test in class A, one passing in B.
  let mixedLog = """
    Test Suite 'All tests' started at 2026-11-30 09:29:10.002
    Test Suite 'debug.xctest' started at 2026-11-30 09:29:10.003
    Test Suite 'A' started at 2026-11-30 09:29:10.003
    Test Case 'A.testFail' started at 2026-11-30 09:29:10.003
    /tmp/skiprun/Tests/SkipTests/T.swift:5: error: A.testFail : failed - x
    /tmp/skiprun/Tests/SkipTests/T.swift:6: error: A.testFail : failed - y
    Test Case 'A.testFail' failed (0.001 seconds)
    Test Case 'A.testOne' started at 2026-11-30 09:29:10.004
    Test Case 'A.testOne' passed (0.0 seconds)
    Test Case 'A.testSkip' started at 2026-11-30 09:29:10.004
    /tmp/skiprun/Tests/SkipTests/T.swift:4: A.testSkip : Test skipped - no
    Test Case 'A.testSkip' skipped (0.0 seconds)
    Test Suite 'A' failed at 2026-11-30 09:29:10.005
    \t Executed 3 tests, with 1 test skipped and 2 failures (0 unexpected) in 0.001 (0.001) seconds
    Test Suite 'B' started at 2026-11-30 09:29:10.005
    Test Case 'B.testTwo' started at 2026-11-30 09:29:10.005
    Test Case 'B.testTwo' passed (0.0 seconds)
    Test Suite 'B' passed at 2026-11-30 09:29:10.005
    \t Executed 1 test, with 0 failures (0 unexpected) in 0.0 (0.0) seconds
    Test Suite 'debug.xctest' failed at 2026-11-30 09:29:10.005
    \t Executed 4 tests, with 1 test skipped and 2 failures (0 unexpected) in 0.001 (0.001) seconds
    Test Suite 'All tests' failed at 2026-11-30 09:29:10.005
    \t Executed 4 tests, with 1 test skipped and 2 failures (0 unexpected) in 0.001 (0.001) seconds

    """

  func totals(_ log: String) throws -> RunResult {
    let url = try makeTemporaryDirectory(self).appendingPathComponent("log")
    try log.write(to: url, atomically: true, encoding: .utf8)
    return try MixerDistCLITests.run(packageRoot.appendingPathComponent("launch/test-totals").path, [url.path])
  }

  func testEveryTestCaseIsCounted() throws {
    let mixed = try totals(mixedLog)
    XCTAssertEqual(mixed.stdout, "2 passed, 1 failed, 1 skipped\n")
    XCTAssertNotEqual(mixed.status, 0)
  }

  func testASkippedTestFailsTheCommand() throws {
    let noFailure = mixedLog.split(separator: "\n").filter { !$0.contains("testFail") }.joined(separator: "\n")
    let skipped = try totals(noFailure)
    XCTAssertEqual(skipped.stdout, "2 passed, 0 failed, 1 skipped\n")
    XCTAssertNotEqual(skipped.status, 0)
    XCTAssertTrue(skipped.stderr.contains("skipped"), skipped.stderr)

    let clean = noFailure.split(separator: "\n").filter { !$0.contains("testSkip") }.joined(separator: "\n")
    let passed = try totals(clean)
    XCTAssertEqual(passed.stdout, "2 passed, 0 failed, 0 skipped\n")
    XCTAssertEqual(passed.status, 0, passed.stderr)
  }

  func testNoTestRunIsAFailure() throws {
    let empty = try totals("error: build failed\n")
    XCTAssertEqual(empty.stdout, "0 passed, 0 failed, 0 skipped\n")
    XCTAssertNotEqual(empty.status, 0)
  }
}
