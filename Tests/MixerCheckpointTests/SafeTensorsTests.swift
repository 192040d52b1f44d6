// SafeTensorsTests.swift: the safetensors reader and writer: round trips in memory and on
// disk, slices, other dtypes, and malformed headers and layouts that must throw (never crash).

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

/// A safetensors file from a header JSON text and a data buffer.
func makeSafeTensors(_ header: String, _ buffer: [UInt8], padTo alignment: Int = 1) -> Data {
  var json = Array(header.utf8)
  json += [UInt8](repeating: 0x20, count: (alignment - json.count % alignment) % alignment)
  var data = Data()
  data.appendLE(UInt64(json.count))
  data.append(contentsOf: json)
  data.append(contentsOf: buffer)
  return data
}

final class SafeTensorsTests: XCTestCase {
  let tensors: [(name: String, array: NDArray)] = [
    ("params/stem/kernel", NDArray(shape: [2, 2, 3, 4], data: sampleFloats(48))),
    ("optimizer/adam_m", NDArray(shape: [37], data: sampleFloats(37, seed: 2))),
    ("step", NDArray(scalar: 7)),
    ("empty", NDArray(shape: [3, 0], data: [])),
  ]

  func testRoundTripInMemory() throws {
    let metadata = ["format": "mixer-dist", "quote\"and\\slash\n": "ünïcode ✓ \u{1}"]
    let encoded = try SafeTensors.encode(tensors, metadata: metadata)
    let headerLength = Int(encoded[0]) | Int(encoded[1]) << 8
    XCTAssertEqual(headerLength % 8, 0, "data buffer is 8-byte aligned")
    let file = try SafeTensorsFile(data: encoded)
    XCTAssertEqual(file.metadata, metadata)
    XCTAssertEqual(file.tensors.map(\.name), tensors.map(\.name), "tensors come back in data order")
    for (name, array) in tensors {
      XCTAssertEqual(try file.tensor(name).ndarray, array)
      XCTAssertEqual(try file.info(name).elementType, .float32)
    }
    XCTAssertEqual(try file.floats("optimizer/adam_m", elements: 5..<9), Array(tensors[1].array.data[5..<9]))
    XCTAssertEqual(try file.floats("optimizer/adam_m", elements: 37..<37), [])
    assertFormatError("outside the tensor") { _ = try file.floats("optimizer/adam_m", elements: 30..<38) }
    assertFormatError("no tensor named 'missing'") { _ = try file.floats("missing") }
  }

  func testRoundTripOnDiskReadsSlicesLazily() throws {
    let url = try makeTemporaryDirectory(self).appendingPathComponent("rank0.safetensors")
    try SafeTensors.write(tensors, metadata: ["step": "7"], to: url)
    XCTAssertEqual(try Data(contentsOf: url), try SafeTensors.encode(tensors, metadata: ["step": "7"]))
    let file = try SafeTensorsFile(contentsOf: url)
    XCTAssertEqual(file.metadata, ["step": "7"])
    XCTAssertEqual(try file.floats("params/stem/kernel"), tensors[0].array.data)
    XCTAssertEqual(
      try file.floats("optimizer/adam_m", elements: 10..<37), Array(tensors[1].array.data[10...]))
    XCTAssertEqual(try file.floats("empty"), [])
    // A file truncated after its header was parsed is reported, not trusted.
    try Data(try Data(contentsOf: url).prefix(100)).write(to: url)
    assertFormatError("shorter than its header") { _ = try file.floats("optimizer/adam_m") }
  }

  func testWriterRejectsBadInput() {
    assertFormatError("reserved or repeated") {
      _ = try SafeTensors.encode([("__metadata__", NDArray(scalar: 1))])
    }
    assertFormatError("reserved or repeated") {
      _ = try SafeTensors.encode([("a", NDArray(scalar: 1)), ("a", NDArray(scalar: 1))])
    }
    var broken = NDArray(shape: [2], data: [1, 2])
    broken.shape = [3]
    assertFormatError("does not hold 2 elements") { _ = try SafeTensors.encode([("a", broken)]) }
  }

  /// The one writer for every dtype (a quantized checkpoint's I8, BF16 and F32 tensors): names
  /// are escaped in the header, each tensor reads back as written, and float32 written as a
  /// `TypedArray` gives the same bytes as float32 from an `NDArray`.
  func testTypedTensorsRoundTripWithEscapedNames() throws {
    let typed: [(name: String, array: TypedArray)] = [
      ("block \"0\"\\kernel\n", TypedArray(.int8, shape: [2, 3], values: [Int8](arrayLiteral: -128, -1, 0, 1, 2, 127))),
      ("kernel_scale", TypedArray(.float32, shape: [3], values: [Float](arrayLiteral: 0.5, 0.25, 2))),
      ("bf16", TypedArray(.bfloat16, shape: [2], values: [UInt16](arrayLiteral: 0x3F80, 0xC000))),
      ("bytes", TypedArray(.uint8, shape: [2], values: [UInt8](arrayLiteral: 0, 255))),
      ("counts", TypedArray(.int32, shape: [1], values: [Int32](arrayLiteral: -7))),
    ]
    let url = try makeTemporaryDirectory(self).appendingPathComponent("typed.safetensors")
    let (bytes, sha256) = try SafeTensors.write(typed, metadata: ["format": "mixer-dist-quantized"], to: url)
    let data = try Data(contentsOf: url)
    XCTAssertEqual(data, try SafeTensors.encode(typed, metadata: ["format": "mixer-dist-quantized"]))
    XCTAssertEqual(bytes, data.count)
    XCTAssertEqual(sha256, SHA256.hex(of: data))
    let file = try SafeTensorsFile(contentsOf: url)
    XCTAssertEqual(file.tensors.map(\.name), typed.map(\.name))
    XCTAssertEqual(file.tensors.map(\.elementType), [.int8, .float32, .bfloat16, .uint8, .int32])
    XCTAssertEqual(try file.tensor(typed[0].name).ints(), [-128, -1, 0, 1, 2, 127])
    XCTAssertEqual(try file.floats("kernel_scale"), [0.5, 0.25, 2])
    XCTAssertEqual(try file.floats("bf16"), [1, -2])
    XCTAssertEqual(try file.tensor("bytes").ints(), [0, 255])
    XCTAssertEqual(try file.tensor("counts").ints(), [-7])
    let floats = tensors.map { ($0.name, TypedArray(.float32, shape: $0.array.shape, values: $0.array.data)) }
    XCTAssertEqual(try SafeTensors.encode(floats, metadata: ["step": "7"]), try SafeTensors.encode(tensors, metadata: ["step": "7"]))
  }

  func testOtherDtypesConvert() throws {
    let header = """
      {"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},\
      "c":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},"d":{"dtype":"BF16","shape":[1],"data_offsets":[24,26]},\
      "e":{"dtype":"F16","shape":[],"data_offsets":[26,28]},"f":{"dtype":"U8","shape":[2],"data_offsets":[28,30]},\
      "__metadata__":null}
      """
    var buffer =
      littleEndianBytes([(1.5).bitPattern]) + littleEndianBytes([Int32(-3), 9])
      + littleEndianBytes([Int64(1) << 33])
    buffer += littleEndianBytes([UInt16(0x4049), UInt16(0xc000)]) + [200, 1]
    let file = try SafeTensorsFile(data: makeSafeTensors(header, buffer, padTo: 8))
    XCTAssertEqual(file.tensors.map(\.name), ["a", "b", "c", "d", "e", "f"])
    XCTAssertEqual(try file.floats("a"), [1.5])
    XCTAssertEqual(try file.tensor("b").int32s(), [-3, 9])
    XCTAssertEqual(try file.tensor("c").ints(), [1 << 33])
    XCTAssertEqual(try file.floats("d"), [3.140625])
    XCTAssertEqual(try file.tensor("e").shape, [])
    XCTAssertEqual(try file.floats("e"), [-2])
    XCTAssertEqual(try file.tensor("f").ints(), [200, 1])
    XCTAssertEqual(try file.floats("b", elements: 1..<2), [9])
  }

  func testMalformedLayoutsThrow() {
    let four = [UInt8](repeating: 0, count: 16)
    let cases: [(String, [UInt8], String)] = [
      (
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        Array(four.prefix(12)), "overlaps the previous tensor"
      ),
      (
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#,
        four, "leaves a gap"
      ),
      (
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, four,
        "tensors cover 8 bytes, the data buffer holds 16"
      ),
      (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, Array(four.prefix(15)), "cover 16 bytes"),
      (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, four, "does not match the 16 bytes"),
      (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#, four, "begin <= end"),
      (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,16]}}"#, four, "is not [begin, end]"),
      (#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#, four, "not a non-negative integer"),
      (#"{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}"#, four, "not a non-negative integer"),
      (#"{"a":{"dtype":"F32","shape":[1e1],"data_offsets":[0,16]}}"#, four, "not a non-negative integer"),
      (
        #"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,16]}}"#, four,
        "not a non-negative integer"
      ),
      (
        #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#, four,
        "does not match"
      ),
      (#"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}}"#, four, "does not match"),
      (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,"16"]}}"#, four, "data offset is not"),
      (#"{"a":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}}"#, four, "unsupported dtype 'C64'"),
      (#"{"a":{"dtype":"F32","shape":[4]}}"#, four, "lacks one of"),
      (#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":1}}"#, four, "field 'x' is unexpected"),
      (#"{"a":{"dtype":"F32","dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, four, "field 'dtype'"),
      (
        #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[0],"data_offsets":[16,16]}}"#,
        four, "'a' appears twice"
      ),
      (#"{"a":[1,2]}"#, four, "not an object"),
      (#"{"__metadata__":{"k":1}}"#, [], "is not a string"),
      (#"{"__metadata__":[]}"#, [], "__metadata__ is not an object"),
      (#"{"__metadata__":{},"__metadata__":{}}"#, [], "appears twice"),
      (#"{"__metadata__":{"k":"a","k":"b"}}"#, [], "appears twice"),
      (#"[]"#, [], "does not start with '{'"),
      (#" {}"#, [], "does not start with '{'"),
      (#"{"a":}"#, [], "not valid JSON"),
      (#"{"a":{"dtype":"F32",}}"#, [], "not valid JSON"),
      (#"{"a" {}}"#, [], "not valid JSON"),
      (#"{} {}"#, [], "not valid JSON"),
      (#"{"a\u0":{}}"#, [], "not valid JSON"),
      (#"{"\ud800":{}}"#, [], "not valid JSON"),
      (#"{"\udc00x":{}}"#, [], "not valid JSON"),
      (#"{"a\qb":{}}"#, [], "not valid JSON"),
      ("{\"a\tb\":{}}", [], "not valid JSON"),
      (#"{"a":tru}"#, [], "not valid JSON"),
      (#"{"a":01}"#, [], "not valid JSON"),
      (#"{"a":-}"#, [], "not valid JSON"),
      (#"{"a":1.}"#, [], "not valid JSON"),
      (#"{"a":1e}"#, [], "not valid JSON"),
      ("{\"a\":" + String(repeating: "[", count: 100_000), [], "nesting deeper than 64"),
      (#"{"#, [], "not valid JSON"),
      (#"{"a":"#, [], "not valid JSON"),
      (#"{"a":"x"#, [], "not valid JSON"),
    ]
    for (header, buffer, fragment) in cases {
      assertFormatError(fragment) { _ = try SafeTensorsFile(data: makeSafeTensors(header, buffer)) }
    }
    var invalidUTF8 = makeSafeTensors(#"{"__metadata__":{"k":"ab"}}"#, [])
    invalidUTF8[invalidUTF8.count - 4] = 0xff
    assertFormatError("not valid UTF-8") { _ = try SafeTensorsFile(data: invalidUTF8) }
    // Valid but unusual: escapes and surrogate pairs in names, an empty file table, padding.
    let unusual = try? SafeTensorsFile(
      data: makeSafeTensors(
        #"{"\ud83d\ude00\n\u00e9":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#, [], padTo: 8))
    XCTAssertEqual(unusual?.tensors.first?.name, "😀\né")
    XCTAssertEqual(try? SafeTensorsFile(data: makeSafeTensors("{}", [], padTo: 8)).tensors.count, 0)
  }

  func testBadHeaderLengthsThrow() {
    assertFormatError("too short for the header length") { _ = try SafeTensorsFile(data: Data([1, 2, 3])) }
    var absurd = Data()
    absurd.appendLE(UInt64.max)
    absurd.append(contentsOf: Array("{}".utf8))
    assertFormatError("exceeds 100000000 bytes") { _ = try SafeTensorsFile(data: absurd) }
    var pastEnd = Data()
    pastEnd.appendLE(UInt64(1_000))
    pastEnd.append(contentsOf: Array("{}".utf8))
    assertFormatError("runs past the end of the 10-byte file") { _ = try SafeTensorsFile(data: pastEnd) }
    var empty = Data()
    empty.appendLE(UInt64(0))
    assertFormatError("does not start with '{'") { _ = try SafeTensorsFile(data: empty) }
  }

  func testEveryTruncationThrowsAndBitFlipsNeverCrash() throws {
    let small = try SafeTensors.encode(
      [("a", NDArray(shape: [2], data: [1, 2])), ("b", NDArray(scalar: 3))], metadata: ["k": "v"])
    for length in 0..<small.count {
      XCTAssertThrowsError(try SafeTensorsFile(data: small.prefix(length)), "prefix of \(length) bytes")
    }
    XCTAssertThrowsError(try SafeTensorsFile(data: small + Data([0])))
    var failures = 0
    for bit in 0..<(small.count * 8) {
      do {
        let file = try SafeTensorsFile(data: flipping(small, bit: bit))
        for tensor in file.tensors { _ = try file.floats(tensor.name) }
      } catch {
        failures += 1
      }
    }
    XCTAssertGreaterThan(failures, small.count * 8 / 2)
    XCTAssertLessThan(failures, small.count * 8 - 12 * 8)
  }
}
