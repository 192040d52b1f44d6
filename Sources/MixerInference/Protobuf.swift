// A minimal protocol-buffers encoder: the wire format (varints, length-delimited fields, fixed32)
// and nothing else, enough to write the handful of ONNX messages ONNXExport.swift needs. Fields
// are appended in the order written; repeated scalars are written unpacked (proto2's default,
// which every parser accepts).

import Foundation

/// One protobuf message being built.
struct ProtobufMessage {
  private(set) var bytes: [UInt8] = []

  private mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  private mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

  /// An int64/int32/enum field (negative values take ten bytes, as protobuf encodes them).
  mutating func int(_ field: Int, _ value: Int) {
    key(field, 0)
    varint(UInt64(bitPattern: Int64(value)))
  }

  /// A float field (fixed32, little-endian).
  mutating func float(_ field: Int, _ value: Float) {
    key(field, 5)
    withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
  }

  /// A bytes field.
  mutating func bytes(_ field: Int, _ value: [UInt8]) {
    key(field, 2)
    varint(UInt64(value.count))
    bytes.append(contentsOf: value)
  }

  /// A string field (UTF-8).
  mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

  /// An embedded message field.
  mutating func message(_ field: Int, _ value: ProtobufMessage) { bytes(field, value.bytes) }
}
