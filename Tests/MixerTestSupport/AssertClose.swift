// AssertClose.swift: float comparisons that say where they failed. Two measures: element by
// element (|a − e| ≤ absolute + relative·|e|, the kernel tests') and over the whole array
// (‖a − e‖ / ‖e‖, for values that went through a file format or a library).

import XCTest

/// Asserts |actual[i] − expected[i]| ≤ absolute + relative·|expected[i]| for every i (NaN fails).
/// A failure reports how many elements are out, the max difference and the first bad index.
public func assertClose(
  _ actual: [Float], _ expected: [Double], relative: Double, absolute: Double, _ label: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  guard actual.count == expected.count else {
    XCTFail("\(label): \(actual.count) values, expected \(expected.count)", file: file, line: line)
    return
  }
  var badCount = 0
  var firstBad = -1
  var maxDifference = 0.0
  var maxIndex = 0
  for i in actual.indices {
    let a = Double(actual[i])
    let e = expected[i]
    let difference = (a - e).isNaN ? Double.infinity : abs(a - e)
    if !(difference <= absolute + relative * abs(e)) {
      badCount += 1
      if firstBad < 0 { firstBad = i }
    }
    if difference > maxDifference {
      maxDifference = difference
      maxIndex = i
    }
  }
  if badCount > 0 {
    XCTFail(
      "\(label): \(badCount) of \(actual.count) out of tolerance (relative \(relative), absolute "
        + "\(absolute)); max |diff| \(maxDifference) at [\(maxIndex)] (got \(actual[maxIndex]), "
        + "want \(expected[maxIndex])); first bad [\(firstBad)] (got \(actual[firstBad]), want "
        + "\(expected[firstBad]))",
      file: file, line: line)
  }
}

/// `assertClose` against a Float expectation.
public func assertClose(
  _ actual: [Float], _ expected: [Float], relative: Double, absolute: Double, _ label: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  assertClose(
    actual, expected.map(Double.init), relative: relative, absolute: absolute, label,
    file: file, line: line)
}

/// Asserts ‖actual − expected‖ / ‖expected‖ ≤ tolerance, reporting the max difference and the
/// first index that differs by more than tolerance × max |expected|.
public func assertClose(
  _ actual: [Float], _ expected: [Float], tolerance: Double = 1e-6, file: StaticString = #filePath,
  line: UInt = #line
) {
  guard actual.count == expected.count else {
    return XCTFail("count \(actual.count) != \(expected.count)", file: file, line: line)
  }
  var difference = 0.0
  var norm = 0.0
  var maxDifference = 0.0
  var maxMagnitude = 0.0
  for (a, e) in zip(actual, expected) {
    difference += Double(a - e) * Double(a - e)
    norm += Double(e) * Double(e)
    maxDifference = max(maxDifference, abs(Double(a - e)))
    maxMagnitude = max(maxMagnitude, abs(Double(e)))
  }
  let relative = norm > 0 ? (difference / norm).squareRoot() : difference.squareRoot()
  if relative > tolerance {
    let firstBad =
      actual.indices.first { abs(Double(actual[$0] - expected[$0])) > tolerance * maxMagnitude } ?? -1
    XCTFail(
      "relative error \(relative) > \(tolerance); max |diff| \(maxDifference); first bad index \(firstBad)",
      file: file, line: line)
  }
}
