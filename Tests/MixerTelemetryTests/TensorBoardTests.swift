// The TensorBoard event writer: CRC32C check values, TFRecord framing and the Event protocol
// buffers read back by a small reader written here, and (when python3 can import it) the file
// read by TensorBoard's own EventAccumulator.

import Foundation
import MixerTestSupport
import XCTest
@testable import MixerTelemetry

final class TensorBoardTests: XCTestCase {
  func testCRC32CCheckValues() {
    // the CRC catalogue's check value, and the iSCSI vectors of RFC 3720 B.4
    XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xE306_9283)
    XCTAssertEqual(crc32c([]), 0)
    XCTAssertEqual(crc32c([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    XCTAssertEqual(crc32c([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    XCTAssertEqual(crc32c((0..<32).map { UInt8($0) }), 0x46DD_794E)
  }

  func testMaskedCRCRotatesAndAddsTheConstant() {
    let crc: UInt32 = 0xE306_9283
    let byHand = (UInt64(crc >> 15) + UInt64(crc << 17 & 0xFFFF_FFFF) + 0xA282_EAD8) & 0xFFFF_FFFF
    XCTAssertEqual(maskedCRC32C(Array("123456789".utf8)), UInt32(byHand))
  }

  func testFileNameAndFirstRecord() throws {
    let folder = try makeTemporaryDirectory(self).appendingPathComponent("logs/nested")
    let writer = try TensorBoardWriter(directory: folder.path)
    writer.close()
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
    XCTAssertEqual(names.count, 1)
    let parts = names[0].components(separatedBy: ".")
    XCTAssertEqual(Array(parts.prefix(3)), ["events", "out", "tfevents"])
    let seconds = try XCTUnwrap(Int(parts[3]))
    XCTAssertLessThan(abs(Double(seconds) - Date().timeIntervalSince1970), 120)
    XCTAssertFalse(parts[4].isEmpty, "the host name ends the file name")
    XCTAssertEqual(writer.path, folder.appendingPathComponent(names[0]).path)

    let records = try readRecords(path: writer.path)
    XCTAssertEqual(records.count, 1)
    let event = try decodeFields(records[0])
    XCTAssertEqual(event.string(3), "brain.Event:2")
    let wallTime = try XCTUnwrap(event.double(1))
    XCTAssertLessThan(abs(wallTime - Date().timeIntervalSince1970), 120)
    XCTAssertNil(event.bytes(5), "the first event holds no summary")
  }

  func testScalarsRoundTrip() throws {
    let folder = try makeTemporaryDirectory(self)
    let writer = try TensorBoardWriter(directory: folder.path)
    let scalars: [(tag: String, value: Double, step: Int)] = [
      ("train/loss", 2.302585, 0), ("train/lr", 0.0005, 25), ("eval/top1", 0.52, 100),
      ("train/loss", 1.25, 1 << 40), ("weird tag/ünïcode", -3.5e-7, 7), ("train/loss", 1e30, 8),
    ]
    for (index, scalar) in scalars.enumerated() {
      writer.scalar(scalar.tag, scalar.value, step: scalar.step, wallTime: 1000.5 + Double(index))
    }
    writer.scalar("now", 1, step: 9)
    writer.close()
    writer.scalar("after close", 1, step: 10)  // dropped, not a crash
    XCTAssertNil(writer.writeError)

    let records = try readRecords(path: writer.path)
    XCTAssertEqual(records.count, 1 + scalars.count + 1)
    for (index, scalar) in scalars.enumerated() {
      let event = try decodeFields(records[1 + index])
      XCTAssertEqual(event.double(1), 1000.5 + Double(index))
      XCTAssertEqual(event.varint(2).map { Int(Int64(bitPattern: $0)) }, scalar.step)
      XCTAssertNil(event.string(3))
      let summary = try decodeFields(XCTUnwrap(event.bytes(5)))
      let value = try decodeFields(XCTUnwrap(summary.bytes(1)))
      XCTAssertEqual(value.string(1), scalar.tag)
      XCTAssertEqual(value.float(2), Float(scalar.value))
    }
    let last = try decodeFields(records.last!)
    XCTAssertLessThan(abs(try XCTUnwrap(last.double(1)) - Date().timeIntervalSince1970), 120)
  }

  func testNonFiniteValuesAndNegativeSteps() throws {
    let folder = try makeTemporaryDirectory(self)
    let writer = try TensorBoardWriter(directory: folder.path)
    writer.scalar("nan", .nan, step: -3, wallTime: 1)
    writer.scalar("infinity", .infinity, step: 0, wallTime: 2)
    writer.close()
    let records = try readRecords(path: writer.path)
    XCTAssertEqual(records.count, 3)
    let nanEvent = try decodeFields(records[1])
    XCTAssertEqual(nanEvent.varint(2).map { Int64(bitPattern: $0) }, -3)
    let nanValue = try decodeFields(decodeFields(XCTUnwrap(nanEvent.bytes(5))).bytes(1)!)
    XCTAssertTrue(try XCTUnwrap(nanValue.float(2)).isNaN)
    let infinityEvent = try decodeFields(records[2])
    let infinityValue = try decodeFields(decodeFields(XCTUnwrap(infinityEvent.bytes(5))).bytes(1)!)
    XCTAssertEqual(infinityValue.float(2), .infinity)
  }

  func testManyScalarsPassTheBufferThreshold() throws {
    let folder = try makeTemporaryDirectory(self)
    let writer = try TensorBoardWriter(directory: folder.path)
    for step in 0..<5000 {
      writer.scalar("train/loss", 1 / Double(step + 1), step: step, wallTime: Double(step))
    }
    // more than 64 KiB was buffered, so part of it is on disk before any flush
    let size = try FileManager.default.attributesOfItem(atPath: writer.path)[.size] as? Int ?? 0
    XCTAssertGreaterThan(size, 64 * 1024)
    writer.flush()
    let records = try readRecords(path: writer.path)
    XCTAssertEqual(records.count, 5001)
    writer.close()
  }

  func testTwoWritersInOneSecondKeepBothFiles() throws {
    let folder = try makeTemporaryDirectory(self)
    let first = try TensorBoardWriter(directory: folder.path)
    let second = try TensorBoardWriter(directory: folder.path)
    first.scalar("a", 1, step: 1)
    second.scalar("b", 2, step: 1)
    first.close()
    second.close()
    XCTAssertNotEqual(first.path, second.path)
    XCTAssertEqual(try readRecords(path: first.path).count, 2)
    XCTAssertEqual(try readRecords(path: second.path).count, 2)
  }

  /// TensorBoard's own reader (it checks both CRCs of every record) finds every scalar.
  func testTensorBoardEventAccumulatorReadsTheFile() throws {
    let module = "tensorboard.backend.event_processing.event_accumulator"
    try requirePython([module])
    let folder = try makeTemporaryDirectory(self)
    let writer = try TensorBoardWriter(directory: folder.path)
    let losses = [2.30, 1.90, 1.41, 1.12]
    for (index, loss) in losses.enumerated() {
      writer.scalar("train/loss", loss, step: 25 * (index + 1), wallTime: 100 + Double(index))
    }
    writer.scalar("eval/top1", 0.52, step: 100, wallTime: 104)
    writer.close()

    let script = """
      import json, sys
      from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
      accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
      accumulator.Reload()
      print(json.dumps({tag: [[e.step, e.value, e.wall_time] for e in accumulator.Scalars(tag)]
                        for tag in accumulator.Tags()["scalars"]}))
      """
    let result = try runPython(["-c", script, folder.path])
    XCTAssertEqual(result.status, 0, result.errors)
    let json = try XCTUnwrap(result.output.split(separator: "\n").last, result.errors)
    let scalars = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: [[Double]]])
    XCTAssertEqual(Set(scalars.keys), ["train/loss", "eval/top1"])
    let loss = try XCTUnwrap(scalars["train/loss"])
    XCTAssertEqual(loss.map { $0[0] }, [25, 50, 75, 100])
    XCTAssertEqual(loss.map { Float($0[1]) }, losses.map { Float($0) })
    XCTAssertEqual(loss.map { $0[2] }, [100, 101, 102, 103])
    XCTAssertEqual(scalars["eval/top1"]?.first?[0], 100)
    XCTAssertEqual(scalars["eval/top1"].map { Float($0[0][1]) }, Float(0.52))
  }
}

// MARK: - A reader for the tests

/// The payloads of a TFRecord file; fails on a bad length, CRC or a truncated record.
func readRecords(path: String) throws -> [[UInt8]] {
  let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
  var records = [[UInt8]]()
  var offset = 0
  func littleEndian(_ start: Int, _ count: Int) -> UInt64 {
    (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << (8 * UInt64($1)) }
  }
  while offset < bytes.count {
    guard offset + 12 <= bytes.count else { throw TestReadError("truncated header at \(offset)") }
    let lengthBytes = Array(bytes[offset..<offset + 8])
    let length = Int(littleEndian(offset, 8))
    guard UInt32(littleEndian(offset + 8, 4)) == maskedCRC32C(lengthBytes) else {
      throw TestReadError("bad length CRC at \(offset)")
    }
    let start = offset + 12
    guard start + length + 4 <= bytes.count else { throw TestReadError("truncated at \(offset)") }
    let payload = Array(bytes[start..<start + length])
    guard UInt32(littleEndian(start + length, 4)) == maskedCRC32C(payload) else {
      throw TestReadError("bad payload CRC at \(offset)")
    }
    records.append(payload)
    offset = start + length + 4
  }
  return records
}

/// A decoded protocol buffer message: its fields by number (the last value of each).
struct DecodedFields {
  var varints = [Int: UInt64]()
  var fixed64 = [Int: UInt64]()
  var fixed32 = [Int: UInt32]()
  var delimited = [Int: [UInt8]]()

  func varint(_ field: Int) -> UInt64? { varints[field] }
  func double(_ field: Int) -> Double? { fixed64[field].map { Double(bitPattern: $0) } }
  func float(_ field: Int) -> Float? { fixed32[field].map { Float(bitPattern: $0) } }
  func bytes(_ field: Int) -> [UInt8]? { delimited[field] }
  func string(_ field: Int) -> String? {
    delimited[field].map { String(decoding: $0, as: UTF8.self) }
  }
}

/// Decodes the wire format (varint, fixed64, length-delimited, fixed32 fields).
func decodeFields(_ bytes: [UInt8]) throws -> DecodedFields {
  var fields = DecodedFields()
  var offset = 0
  func readVarint() throws -> UInt64 {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard offset < bytes.count, shift < 64 else { throw TestReadError("bad varint") }
      let byte = bytes[offset]
      offset += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
  }
  func readFixed(_ count: Int) throws -> UInt64 {
    guard offset + count <= bytes.count else { throw TestReadError("truncated fixed field") }
    let value = (0..<count).reduce(UInt64(0)) {
      $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1))
    }
    offset += count
    return value
  }
  while offset < bytes.count {
    let key = try readVarint()
    let field = Int(key >> 3)
    switch key & 7 {
    case 0: fields.varints[field] = try readVarint()
    case 1: fields.fixed64[field] = try readFixed(8)
    case 2:
      let length = Int(try readVarint())
      guard offset + length <= bytes.count else { throw TestReadError("truncated bytes field") }
      fields.delimited[field] = Array(bytes[offset..<offset + length])
      offset += length
    case 5: fields.fixed32[field] = UInt32(try readFixed(4))
    default: throw TestReadError("unexpected wire type \(key & 7)")
    }
  }
  return fields
}

struct TestReadError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
