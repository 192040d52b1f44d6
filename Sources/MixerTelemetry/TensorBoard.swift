// A TensorBoard event-file writer with no dependencies: scalars as `Event` protocol buffers
// (encoded by hand) in TFRecord framing, checksummed with CRC32C (Castagnoli).
//
// File layout: `events.out.tfevents.<unix seconds>.<hostname>`, a sequence of records
//   uint64 length (little-endian) | uint32 masked CRC32C of the length | payload |
//   uint32 masked CRC32C of the payload
// The first record is `Event{wall_time, file_version: "brain.Event:2"}`; each scalar is
//   Event{wall_time (1, double), step (2, int64),
//         summary (5) = Summary{value (1) = Value{tag (1, string), simple_value (2, float)}}}
// Field numbers are those of tensorflow/core/util/event.proto and framework/summary.proto.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes scalar summaries to one TensorBoard event file.
///
/// Records are buffered in memory and written by `flush()` (also when the buffer passes 64 KiB,
/// and on `close()`); a write failure is kept in `writeError` and stops further writes.
public final class TensorBoardWriter {
  /// The event file's full path.
  public let path: String
  /// The first error met while writing, if any (later records are dropped).
  public private(set) var writeError: Error?

  let handle: FileHandle
  var pending = [UInt8]()
  var closed = false
  let lock = NSLock()
  static let flushThreshold = 64 * 1024

  /// Creates `directory` if needed and starts a new event file in it.
  public init(directory: String) throws {
    try FileManager.default.createDirectory(
      atPath: directory, withIntermediateDirectories: true)
    let seconds = Int(Date().timeIntervalSince1970)
    let name = "events.out.tfevents.\(seconds).\(hostName())"
    // a second writer started in the same second gets a numbered name instead of truncating
    let folder = URL(fileURLWithPath: directory)
    var candidate = folder.appendingPathComponent(name).path
    var copy = 0
    while FileManager.default.fileExists(atPath: candidate) {
      copy += 1
      candidate = folder.appendingPathComponent("\(name).\(copy)").path
    }
    path = candidate
    guard FileManager.default.createFile(atPath: path, contents: nil),
      let handle = FileHandle(forWritingAtPath: path)
    else {
      throw TelemetryError("cannot create the TensorBoard event file \(path)")
    }
    self.handle = handle
    var event = ProtobufEncoder()
    event.appendDouble(field: 1, Date().timeIntervalSince1970)
    event.appendString(field: 3, "brain.Event:2")
    pending += tfRecord(event.bytes)
    flush()
  }

  deinit {
    close()
  }

  /// Appends one scalar: `value` (stored as a 32-bit float) under `tag` at `step`.
  /// `wallTime` is in seconds since 1970 (default: now).
  public func scalar(_ tag: String, _ value: Double, step: Int, wallTime: Double? = nil) {
    let event = scalarEvent(
      tag: tag, value: value, step: step, wallTime: wallTime ?? Date().timeIntervalSince1970)
    lock.lock()
    defer { lock.unlock() }
    guard !closed else { return }
    pending += tfRecord(event)
    if pending.count >= Self.flushThreshold { writePending() }
  }

  /// Writes every buffered record to the file.
  public func flush() {
    lock.lock()
    defer { lock.unlock() }
    writePending()
  }

  /// Flushes and closes the file; later calls do nothing.
  public func close() {
    lock.lock()
    defer { lock.unlock() }
    guard !closed else { return }
    writePending()
    closed = true
    try? handle.close()
  }

  /// Writes `pending` (the caller holds the lock).
  func writePending() {
    guard !closed, !pending.isEmpty else { return }
    defer { pending.removeAll(keepingCapacity: true) }
    guard writeError == nil else { return }
    do {
      try handle.write(contentsOf: pending)
    } catch {
      writeError = error
    }
  }
}

/// The payload of one scalar `Event`.
func scalarEvent(tag: String, value: Double, step: Int, wallTime: Double) -> [UInt8] {
  var summaryValue = ProtobufEncoder()
  summaryValue.appendString(field: 1, tag)
  summaryValue.appendFloat(field: 2, Float(value))
  var summary = ProtobufEncoder()
  summary.appendMessage(field: 1, summaryValue.bytes)
  var event = ProtobufEncoder()
  event.appendDouble(field: 1, wallTime)
  event.appendVarint(field: 2, UInt64(bitPattern: Int64(step)))
  event.appendMessage(field: 5, summary.bytes)
  return event.bytes
}

/// One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload.
func tfRecord(_ payload: [UInt8]) -> [UInt8] {
  var record = [UInt8]()
  record.reserveCapacity(payload.count + 16)
  let length = littleEndianBytes(UInt64(payload.count))
  record += length
  record += littleEndianBytes(maskedCRC32C(length))
  record += payload
  record += littleEndianBytes(maskedCRC32C(payload))
  return record
}

/// The TFRecord checksum: CRC32C rotated right by 15 bits plus a constant, so that a CRC of
/// data that itself holds CRCs stays well distributed.
func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
  let crc = crc32c(bytes)
  return ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as in iSCSI and TFRecord.
/// `crc32c(Array("123456789".utf8)) == 0xE3069283`.
func crc32c(_ bytes: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xffff_ffff
  for byte in bytes {
    crc = crc32cTable[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8)
  }
  return crc ^ 0xffff_ffff
}

/// The CRC of each byte value, one bit at a time.
let crc32cTable: [UInt32] = (0..<256).map { index in
  var crc = UInt32(index)
  for _ in 0..<8 {
    crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82f6_3b78 : crc >> 1
  }
  return crc
}

/// The bytes of an integer, least significant first.
func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
  withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A protocol buffer message written field by field (proto3 wire format).
struct ProtobufEncoder {
  var bytes = [UInt8]()

  /// Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
  mutating func appendKey(field: Int, wireType: UInt64) {
    appendRawVarint(UInt64(field) << 3 | wireType)
  }

  mutating func appendRawVarint(_ value: UInt64) {
    var rest = value
    while rest >= 0x80 {
      bytes.append(UInt8(rest & 0x7f) | 0x80)
      rest >>= 7
    }
    bytes.append(UInt8(rest))
  }

  mutating func appendVarint(field: Int, _ value: UInt64) {
    appendKey(field: field, wireType: 0)
    appendRawVarint(value)
  }

  mutating func appendDouble(field: Int, _ value: Double) {
    appendKey(field: field, wireType: 1)
    bytes += littleEndianBytes(value.bitPattern)
  }

  mutating func appendFloat(field: Int, _ value: Float) {
    appendKey(field: field, wireType: 5)
    bytes += littleEndianBytes(value.bitPattern)
  }

  mutating func appendMessage(field: Int, _ message: [UInt8]) {
    appendKey(field: field, wireType: 2)
    appendRawVarint(UInt64(message.count))
    bytes += message
  }

  mutating func appendString(field: Int, _ text: String) {
    appendMessage(field: field, Array(text.utf8))
  }
}

/// This machine's host name (`localhost` if it cannot be read), for the event file's name.
func hostName() -> String {
  var buffer = [CChar](repeating: 0, count: 256)
  guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
  let name = String(cString: buffer)
  return name.isEmpty ? "localhost" : name
}
