// AssertClose.swift: float comparisons that say where they failed. Four measures: element by
// element (|a − e| ≤ absolute + relative·|e|, the kernel tests'), over the whole array
// (‖a − e‖ / ‖e‖, for values that went through a file format or a library), on the scale of the
// values (max |a − e| ≤ tolerance · max(1, max |e|): logits, activations), and per named tensor of
// a flat parameter vector (two training runs compared).

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
  _ actual: [Float], _ expected: [Float], tolerance: Double = 1e-6, _ label: String = "",
  file: StaticString = #filePath, line: UInt = #line
) {
  let prefix = label.isEmpty ? "" : label + ": "
  guard actual.count == expected.count else {
    return XCTFail("\(prefix)count \(actual.count) != \(expected.count)", file: file, line: line)
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
      "\(prefix)relative error \(relative) > \(tolerance); max |diff| \(maxDifference); first bad index \(firstBad)",
      file: file, line: line)
  }
}

/// Asserts max |actual − expected| ≤ tolerance · max(1, max |expected|): a check on the scale of
/// the values (logits, a residual stream), reporting the worst index.
public func assertClose(
  _ actual: [Float], _ expected: [Float], scaledTolerance tolerance: Double, _ label: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  guard actual.count == expected.count else {
    return XCTFail("\(label): count \(actual.count) != \(expected.count)", file: file, line: line)
  }
  let scale = max(1, expected.map { abs(Double($0)) }.max() ?? 0)
  var worst = 0, worstDifference = 0.0
  for i in actual.indices where abs(Double(actual[i]) - Double(expected[i])) > worstDifference {
    (worst, worstDifference) = (i, abs(Double(actual[i]) - Double(expected[i])))
  }
  XCTAssertLessThanOrEqual(
    worstDifference, tolerance * scale,
    "\(label): max |diff| \(worstDifference) at [\(worst)] (\(actual[worst]) vs \(expected[worst]))",
    file: file, line: line)
}

/// Per named tensor of two flat parameter vectors laid out as `layout`: max |a − b| /
/// max(max |a|, max |b|, 1e-3). The 1e-3 floor makes the measure absolute for tensors that are
/// themselves rounding noise (zero-gradient biases under SGD stay around 1e-9).
public func tensorDifferences(
  _ a: [Float], _ b: [Float], layout: [(name: String, range: Range<Int>)],
  skipping skip: (String) -> Bool = { _ in false }
) -> [(name: String, relative: Double)] {
  layout.filter { !skip($0.name) }.map { name, range in
    var difference = 0.0, scale = 1e-3
    for i in range {
      difference = max(difference, abs(Double(a[i]) - Double(b[i])))
      scale = max(scale, abs(Double(a[i])), abs(Double(b[i])))
    }
    return (name, difference / scale)
  }
}

/// Asserts `tensorDifferences` ≤ tolerance for every tensor not skipped (and that what is
/// skipped is under a tenth of the parameters), naming each tensor that differs.
public func assertTensorsClose(
  _ a: [Float], _ b: [Float], layout: [(name: String, range: Range<Int>)], tolerance: Double,
  skipping skip: (String) -> Bool = { _ in false }, _ label: String,
  file: StaticString = #filePath, line: UInt = #line
) {
  let total = layout.last?.range.upperBound ?? 0
  XCTAssertEqual(a.count, total, label, file: file, line: line)
  XCTAssertEqual(b.count, total, label, file: file, line: line)
  guard a.count == total, b.count == total else { return }
  for (name, relative) in tensorDifferences(a, b, layout: layout, skipping: skip) {
    XCTAssertLessThanOrEqual(relative, tolerance, "\(label): \(name) differs (relative)", file: file, line: line)
  }
  let compared = layout.filter { !skip($0.name) }.map(\.range.count).reduce(0, +)
  XCTAssertGreaterThan(compared, total * 9 / 10, label, file: file, line: line)
}
