// MetricsTests.swift: a metrics.jsonl record is one line of valid JSON whatever its keys hold
// (per-class keys come from folder names).

import Foundation
import XCTest

@testable import MixerTelemetry

final class MetricsTests: XCTestCase {
  func testRecordWithAwkwardKeysIsOneLineOfJSON() throws {
    let key = "val_iou_a \"quoted\" back\\slash\nnew\tline\u{1}"
    let record = MetricRecord(kind: "eval\"", step: 7, values: [(key, 0.5), ("loss", .nan), ("lr", 1e-5)])
    let line = record.json
    XCTAssertFalse(line.contains("\n"), line)
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
    XCTAssertEqual(object["kind"] as? String, "eval\"")
    XCTAssertEqual(object["step"] as? Int, 7)
    XCTAssertEqual(object[key] as? Double, 0.5)
    XCTAssertTrue(object["loss"] is NSNull, line)
    XCTAssertEqual(object["lr"] as? Double, 1e-5)
    XCTAssertTrue(line.hasPrefix("{\"kind\":\"eval\\\"\",\"step\":7,"), line)
  }
}
