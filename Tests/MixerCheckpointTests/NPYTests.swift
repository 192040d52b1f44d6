// NPYTests.swift: the `.npy` reader and writer: round trips, every supported dtype, header
// variants NumPy writes, and a battery of malformed files that must throw (never crash).

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

/// A `.npy` file built by hand from header text and payload bytes.
func makeNPY(_ header: String, _ payload: [UInt8], major: UInt8 = 1) -> Data {
  var text = Array(header.utf8) + [0x0a]
  var bytes: [UInt8] = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]
  if major == 1 {
    bytes += [UInt8(text.count & 0xff), UInt8(text.count >> 8)]
  } else {
    bytes += [UInt8(text.count & 0xff), UInt8((text.count >> 8) & 0xff), 0, 0]
  }
  text += payload
  return Data(bytes + text)
}

/// The little-endian bytes of `values`.
func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
  values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

final class NPYTests: XCTestCase {
  func testRoundTripKeepsShapeAndBits() throws {
    for shape in [[], [0], [5], [2, 3, 4], [1, 1, 7], [3, 0, 2]] {
      let count = shape.reduce(1, *)
      var values = sampleFloats(count, seed: UInt64(shape.count + 1))
      if count > 2 {
        values[0] = .infinity
        values[1] = -0.0
        values[2] = .leastNonzeroMagnitude
      }
      let array = NDArray(shape: shape, data: values)
      let encoded = try NPY.encode(array)
      XCTAssertEqual((encoded.count - count * 4) % 64, 0, "header is padded to 64 bytes")
      let decoded = try NPY.decode(encoded)
      XCTAssertEqual(decoded.shape, shape)
      XCTAssertEqual(decoded.elementType, .float32)
      XCTAssertEqual(decoded.floats().map(\.bitPattern), values.map(\.bitPattern))
      XCTAssertEqual(decoded.ndarray, array)
    }
  }

  func testWriterHeaderMatchesNumPy() throws {
    let encoded = try NPY.encode(NDArray(shape: [4], data: [1, 2, 3, 4]))
    let header = String(decoding: encoded[10..<(encoded.count - 16)], as: UTF8.self)
    XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"))
    XCTAssertTrue(header.hasSuffix(" \n"))
    let scalar = String(
      decoding: try NPY.encode(NDArray(scalar: 2.5)).dropFirst(10).dropLast(4), as: UTF8.self)
    XCTAssertTrue(scalar.contains("'shape': ()"))
  }

  func testFileRoundTrip() throws {
    let directory = try makeTemporaryDirectory(self)
    let url = directory.appendingPathComponent("a.npy")
    let array = NDArray(shape: [3, 2], data: sampleFloats(6))
    try NPY.write(array, to: url)
    XCTAssertEqual(try NPY.read(contentsOf: url).ndarray, array)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["a.npy"])
  }

  func testEveryDtypeConverts() throws {
    let dict = { (descr: String, shape: String) in
      "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
    }
    let int32 = try NPY.decode(makeNPY(dict("<i4", "(4,)"), littleEndianBytes([Int32(9), 7, -4, Int32.max])))
    XCTAssertEqual(try int32.int32s(), [9, 7, -4, Int32.max])
    XCTAssertEqual(int32.floats(), [9, 7, -4, 2_147_483_648])
    let int64 = try NPY.decode(makeNPY(dict("<i8", "(2,)"), littleEndianBytes([Int64(-3), 1 << 40])))
    XCTAssertEqual(try int64.ints(), [-3, 1 << 40])
    assertFormatError("does not fit in Int32") { _ = try int64.int32s() }
    let uint8 = try NPY.decode(makeNPY(dict("|u1", "(3,)"), [0, 128, 255]))
    XCTAssertEqual(try uint8.ints(), [0, 128, 255])
    XCTAssertEqual(try NPY.decode(makeNPY(dict("<u1", "(1,)"), [7])).floats(), [7])
    XCTAssertEqual(try NPY.decode(makeNPY(dict("|i1", "(2,)"), [0xff, 0x7f])).ints(), [-1, 127])
    XCTAssertEqual(
      try NPY.decode(makeNPY(dict("<i2", "(1,)"), littleEndianBytes([Int16(-300)]))).ints(), [-300])
    XCTAssertEqual(try NPY.decode(makeNPY(dict("|b1", "(3,)"), [1, 0, 1])).ints(), [1, 0, 1])
    let float64 = try NPY.decode(
      makeNPY(dict("<f8", "(2,)"), littleEndianBytes([(0.1).bitPattern, (-2.5).bitPattern])))
    XCTAssertEqual(float64.floats(), [0.1, -2.5])
    assertFormatError("expected an integer array") { _ = try float64.ints() }
    let halves: [UInt16] = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x3555]
    let float16 = try NPY.decode(makeNPY(dict("<f2", "(7,)"), littleEndianBytes(halves))).floats()
    XCTAssertEqual(Array(float16[0..<5]), [1, -2, 65504, 1.0 / 16_777_216, .infinity])
    XCTAssertEqual(float16[5].bitPattern, (-0.0 as Float).bitPattern)
    XCTAssertEqual(float16[6], 0.333251953125)
    XCTAssertEqual(
      try NPY.decode(makeNPY(dict("=f4", "()"), littleEndianBytes([Float(3).bitPattern]))).floats(), [3])
  }

  func testHeaderVariantsNumPyWrites() throws {
    let payload = littleEndianBytes([Float(1).bitPattern, Float(2).bitPattern])
    for header in [
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,)}",
      "{'shape': (2, ), 'fortran_order': False, 'descr': '<f4'}     ",
      "{'descr':'<f4','fortran_order':False,'shape':(1,2)}",
    ] {
      for major: UInt8 in [1, 2, 3] {
        XCTAssertEqual(try NPY.decode(makeNPY(header, payload, major: major)).floats(), [1, 2], header)
      }
    }
  }

  func testMalformedHeadersThrow() {
    let payload = littleEndianBytes([Float(1).bitPattern])
    let cases: [(String, String)] = [
      ("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", "Fortran-order"),
      ("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "big-endian"),
      ("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", "lacks a byte order"),
      ("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"),
      ("{'descr': '<U4', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"),
      ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "structured"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "negative dimension"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (1), }", "not a tuple"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", "structured dtypes and lists"),
      ("{'descr': '<f4', 'fortran_order': False, }", "lacks one of"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1, }", "expected a string, True"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 'x', }", "unexpected key"),
      ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "repeated"),
      ("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", "expected a string, True"),
      ("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,), }", "expected ',' or '}'"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x", "unexpected text"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "out of range"),
      ("{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,), }", "unsupported character"),
      ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected ',' or '}'"),
      ("{'descr: '<f4', 'fortran_order': False, 'shape': (1,), }", "expected ':'"),
      ("", "expected '{'"),
    ]
    for (header, fragment) in cases {
      assertFormatError(fragment) { _ = try NPY.decode(makeNPY(header, payload), source: "case.npy") }
    }
    let deep =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + String(repeating: "1,", count: 65) + "), }"
    assertFormatError("at most 64") { _ = try NPY.decode(makeNPY(deep, payload)) }
  }

  func testShapeAndPayloadMustAgree() {
    let dict = { (shape: String) in "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }" }
    let four = littleEndianBytes([UInt32](repeating: 0, count: 4))
    assertFormatError("payload is 16 bytes, shape [5]") { _ = try NPY.decode(makeNPY(dict("(5,)"), four)) }
    assertFormatError("payload is 16 bytes, shape [3]") { _ = try NPY.decode(makeNPY(dict("(3,)"), four)) }
    assertFormatError("payload is 16 bytes") { _ = try NPY.decode(makeNPY(dict("()"), four)) }
    // Products that overflow Int, and ones whose byte count overflows.
    assertFormatError("no valid element count") {
      _ = try NPY.decode(makeNPY(dict("(4294967296, 4294967296)"), four))
    }
    assertFormatError("too large") { _ = try NPY.decode(makeNPY(dict("(4611686018427387904,)"), four)) }
    assertFormatError("payload is 16 bytes") {
      _ = try NPY.decode(makeNPY(dict("(0, 9223372036854775807)"), four))
    }
  }

  func testBadPreambleThrows() throws {
    let good = try NPY.encode(NDArray(shape: [2], data: [1, 2]))
    var badMagic = good
    badMagic[1] = UInt8(ascii: "M")
    assertFormatError("magic") { _ = try NPY.decode(badMagic) }
    var badVersion = good
    badVersion[6] = 4
    assertFormatError("version 4.0") { _ = try NPY.decode(badVersion) }
    badVersion[6] = 1
    badVersion[7] = 1
    assertFormatError("version 1.1") { _ = try NPY.decode(badVersion) }
    var longHeader = good
    longHeader[8] = 0xff
    longHeader[9] = 0xff
    assertFormatError("runs past the end") { _ = try NPY.decode(longHeader) }
    var version2 = Data([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0, 0xff, 0xff, 0xff, 0xff])
    assertFormatError("exceeds") { _ = try NPY.decode(version2) }
    version2[11] = 0
    version2[10] = 0
    assertFormatError("runs past the end") { _ = try NPY.decode(version2) }
    assertFormatError("magic") { _ = try NPY.decode(Data()) }
  }

  func testEveryTruncationAndExtensionThrows() throws {
    let good = try NPY.encode(NDArray(shape: [2, 3], data: sampleFloats(6)))
    for length in 0..<good.count {
      XCTAssertThrowsError(try NPY.decode(good.prefix(length)), "prefix of \(length) bytes")
    }
    XCTAssertThrowsError(try NPY.decode(good + Data([0])))
    // Slices with a non-zero start index decode like copies.
    let embedded = (Data([1, 2, 3]) + good).dropFirst(3)
    XCTAssertEqual(try NPY.decode(embedded).shape, [2, 3])
  }

  func testBitFlipsNeverCrash() throws {
    let good = try NPY.encode(NDArray(shape: [2, 3], data: sampleFloats(6)))
    var failures = 0
    for bit in 0..<(good.count * 8) {
      do { _ = try NPY.decode(flipping(good, bit: bit)) } catch { failures += 1 }
    }
    // Flips in the magic, version and header length always fail; in the payload they never do.
    XCTAssertGreaterThan(failures, 80)
    XCTAssertLessThan(failures, good.count * 8 - 6 * 32)
  }
}
