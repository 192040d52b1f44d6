// NPY.swift: the NumPy `.npy` format, versions 1.0, 2.0 and 3.0 (numpy/lib/format.py): a strict
// reader that validates every field before using it, and a float32 writer.
//
// Layout: the magic "\x93NUMPY", major and minor version bytes, the header length (UInt16 LE in
// 1.0, UInt32 LE in 2.0 and 3.0), the header (latin-1; UTF-8 in 3.0): a Python dict literal
// `{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }` padded with spaces and ended by
// '\n', then exactly product(shape) × itemsize bytes of payload. Only little-endian (or
// single-byte), C-order, non-structured dtypes are accepted.

import Foundation

/// Reading and writing single `.npy` arrays.
public enum NPY {
  /// The longest header accepted (numpy itself refuses more than 10,000 bytes by default).
  static let maxHeaderBytes = 1 << 20
  /// The most dimensions accepted (NumPy's own limit).
  static let maxDimensions = 64

  /// Decodes a whole `.npy` file; `source` names it in error messages.
  public static func decode(_ bytes: Data, source: String = "array.npy") throws -> TypedArray {
    let magic: [UInt8] = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]  // "\x93NUMPY"
    guard bytes.count >= 10, bytes.prefix(6).elementsEqual(magic) else {
      throw CheckpointFormatError(source, "not a .npy file (missing the \\x93NUMPY magic)")
    }
    let start = bytes.startIndex
    let major = bytes[start + 6]
    let minor = bytes[start + 7]
    let lengthBytes: Int
    switch (major, minor) {
    case (1, 0): lengthBytes = 2
    case (2, 0), (3, 0): lengthBytes = 4
    default: throw CheckpointFormatError(source, "unsupported .npy version \(major).\(minor)")
    }
    guard bytes.count >= 8 + lengthBytes else {
      throw CheckpointFormatError(source, "truncated in the header length")
    }
    var headerLength = 0
    for index in 0..<lengthBytes {
      headerLength |= Int(bytes[start + 8 + index]) << (8 * index)
    }
    let headerStart = 8 + lengthBytes
    guard headerLength <= maxHeaderBytes else {
      throw CheckpointFormatError(source, "header length \(headerLength) exceeds \(maxHeaderBytes) bytes")
    }
    guard headerLength <= bytes.count - headerStart else {
      throw CheckpointFormatError(
        source, "header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
    }
    let headerBytes = [UInt8](bytes[(start + headerStart)..<(start + headerStart + headerLength)])
    let header = try parseHeader(headerBytes, source: source)

    guard let count = elementCount(header.shape) else {
      throw CheckpointFormatError(source, "shape \(header.shape) has no valid element count")
    }
    let (payloadLength, overflow) = count.multipliedReportingOverflow(by: header.type.byteCount)
    guard !overflow else {
      throw CheckpointFormatError(source, "shape \(header.shape) is too large")
    }
    let payloadStart = headerStart + headerLength
    let available = bytes.count - payloadStart
    guard available == payloadLength else {
      throw CheckpointFormatError(
        source,
        "payload is \(available) bytes, shape \(header.shape) of \(header.type) needs \(payloadLength)")
    }
    let payload = Data(bytes[(start + payloadStart)...])
    return TypedArray(elementType: header.type, shape: header.shape, payload: payload, source: source)
  }

  /// Reads a `.npy` file.
  public static func read(contentsOf url: URL) throws -> TypedArray {
    try decode(Data(contentsOf: url), source: url.lastPathComponent)
  }

  /// Encodes a float32 array as a version 1.0 `.npy` (2.0 if the header needs it), with the
  /// header padded to a multiple of 64 bytes as NumPy does.
  public static func encode(_ array: NDArray) throws -> Data {
    guard let count = elementCount(array.shape), count == array.data.count else {
      throw CheckpointFormatError(
        "npy writer", "shape \(array.shape) does not hold \(array.data.count) elements")
    }
    let shapeText: String
    switch array.shape.count {
    case 0: shapeText = "()"
    case 1: shapeText = "(\(array.shape[0]),)"
    default: shapeText = "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
    }
    var dictionary = Array("{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }".utf8)
    var major: UInt8 = 1
    var prefixLength = 10
    if dictionary.count + 1 + 64 > 0xffff {
      major = 2
      prefixLength = 12
    }
    let padding = (64 - (prefixLength + dictionary.count + 1) % 64) % 64
    dictionary += [UInt8](repeating: 0x20, count: padding) + [0x0a]
    var result = Data([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0])
    let headerLength = dictionary.count
    for index in 0..<(prefixLength - 8) {
      result.append(UInt8(truncatingIfNeeded: headerLength >> (8 * index)))
    }
    result.append(contentsOf: dictionary)
    appendLittleEndian(array.data, to: &result)
    return result
  }

  /// Writes a float32 array to a `.npy` file atomically.
  public static func write(_ array: NDArray, to url: URL) throws {
    try AtomicFile.write(encode(array), to: url)
  }

  /// The three fields of a `.npy` header.
  struct Header {
    var type: ElementType
    var shape: [Int]
  }

  /// Parses the header dict strictly: exactly the keys descr, fortran_order and shape.
  static func parseHeader(_ bytes: [UInt8], source: String) throws -> Header {
    var parser = PythonLiteralParser(bytes: bytes, source: source)
    let entries = try parser.parseDictionary()
    var descr: String?
    var fortranOrder: Bool?
    var shape: [Int]?
    for (key, value) in entries {
      switch (key, value) {
      case ("descr", .string(let text)) where descr == nil: descr = text
      case ("fortran_order", .bool(let flag)) where fortranOrder == nil: fortranOrder = flag
      case ("shape", .tuple(let dimensions)) where shape == nil: shape = dimensions
      case ("descr", _), ("fortran_order", _), ("shape", _):
        throw CheckpointFormatError(source, "header key '\(key)' is repeated or has the wrong type")
      default:
        throw CheckpointFormatError(source, "header has an unexpected key '\(key)'")
      }
    }
    guard let descr, let fortranOrder, let shape else {
      throw CheckpointFormatError(source, "header lacks one of 'descr', 'fortran_order', 'shape'")
    }
    guard !fortranOrder else {
      throw CheckpointFormatError(source, "Fortran-order arrays are not supported (save in C order)")
    }
    guard shape.count <= maxDimensions else {
      throw CheckpointFormatError(source, "shape has \(shape.count) dimensions, at most \(maxDimensions)")
    }
    if let negative = shape.first(where: { $0 < 0 }) {
      throw CheckpointFormatError(source, "shape \(shape) has a negative dimension \(negative)")
    }
    return Header(type: try elementType(descr: descr, source: source), shape: shape)
  }

  /// Maps a NumPy type string such as `<f4` or `|u1` to an element type.
  static func elementType(descr: String, source: String) throws -> ElementType {
    guard let order = descr.first, "<>|=".contains(order),
      let type = ElementType.allCases.first(where: { $0.numpyCode == String(descr.dropFirst()) })
    else {
      throw CheckpointFormatError(source, "unsupported dtype '\(descr)'")
    }
    if type.byteCount > 1 {
      guard order != ">" else {
        throw CheckpointFormatError(source, "big-endian dtype '\(descr)' is not supported")
      }
      guard order != "|" else {
        throw CheckpointFormatError(source, "dtype '\(descr)' lacks a byte order")
      }
      #if !_endian(little)
        guard order != "=" else {
          throw CheckpointFormatError(source, "native-order dtype '\(descr)' on a big-endian host")
        }
      #endif
    }
    return type
  }
}

/// Appends `values` as little-endian float32 bytes.
func appendLittleEndian(_ values: [Float], to data: inout Data) {
  #if _endian(little)
    values.withUnsafeBytes { data.append(contentsOf: $0) }
  #else
    for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
  #endif
}

/// A value of the Python literal subset found in `.npy` headers.
enum PythonValue: Equatable {
  case string(String)
  case bool(Bool)
  case tuple([Int])
}

/// A strict parser for the `.npy` header dict: `{'key': value, ...}` with string keys and values
/// that are strings, True/False, or tuples of integers (`()`, `(4,)`, `(4, 3)`), trailing commas
/// allowed, trailing spaces and one newline after the closing brace.
struct PythonLiteralParser {
  let bytes: [UInt8]
  let source: String
  var position = 0

  init(bytes: [UInt8], source: String) {
    self.bytes = bytes
    self.source = source
  }

  /// Parses the whole header as one dict; nothing but whitespace may follow it.
  mutating func parseDictionary() throws -> [(String, PythonValue)] {
    skipSpaces()
    try expect(UInt8(ascii: "{"))
    var entries: [(String, PythonValue)] = []
    skipSpaces()
    while peek() != UInt8(ascii: "}") {
      let key = try parseString()
      skipSpaces()
      try expect(UInt8(ascii: ":"))
      skipSpaces()
      entries.append((key, try parseValue()))
      skipSpaces()
      if peek() == UInt8(ascii: ",") {
        position += 1
        skipSpaces()
      } else if peek() != UInt8(ascii: "}") {
        throw failure("expected ',' or '}'")
      }
    }
    position += 1
    skipSpaces()
    guard position == bytes.count else { throw failure("unexpected text after the header dict") }
    return entries
  }

  mutating func parseValue() throws -> PythonValue {
    switch peek() {
    case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "("): return .tuple(try parseTuple())
    case UInt8(ascii: "T"):
      try expectWord("True")
      return .bool(true)
    case UInt8(ascii: "F"):
      try expectWord("False")
      return .bool(false)
    case UInt8(ascii: "["): throw failure("structured dtypes and lists are not supported")
    default: throw failure("expected a string, True, False or a tuple")
    }
  }

  /// A quoted string without escapes (NumPy never writes any in a header).
  mutating func parseString() throws -> String {
    guard let quote = peek(), quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
      throw failure("expected a quoted string")
    }
    position += 1
    let start = position
    while let byte = peek(), byte != quote {
      guard byte != UInt8(ascii: "\\"), byte != 0x0a else {
        throw failure("unsupported character in a string")
      }
      position += 1
    }
    guard position < bytes.count else { throw failure("unterminated string") }
    let text = String(decoding: bytes[start..<position], as: UTF8.self)
    position += 1
    return text
  }

  /// `()`, `(n,)` or `(n, m, ...)` with an optional trailing comma; `(n)` is not a tuple.
  mutating func parseTuple() throws -> [Int] {
    try expect(UInt8(ascii: "("))
    var values: [Int] = []
    var sawComma = false
    skipSpaces()
    while peek() != UInt8(ascii: ")") {
      values.append(try parseInteger())
      skipSpaces()
      if peek() == UInt8(ascii: ",") {
        position += 1
        sawComma = true
        skipSpaces()
      } else if peek() != UInt8(ascii: ")") {
        throw failure("expected ',' or ')' in the shape")
      }
    }
    position += 1
    guard values.count != 1 || sawComma else { throw failure("'(n)' is not a tuple, expected '(n,)'") }
    return values
  }

  /// A decimal integer with an optional minus sign; overflow is an error.
  mutating func parseInteger() throws -> Int {
    var negative = false
    if peek() == UInt8(ascii: "-") {
      negative = true
      position += 1
    }
    var value = 0
    var digits = 0
    while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
      let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (next, overflow2) = shifted.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
      guard !overflow1, !overflow2 else { throw failure("integer out of range in the shape") }
      value = next
      digits += 1
      position += 1
    }
    guard digits > 0 else { throw failure("expected an integer") }
    return negative ? -value : value
  }

  func peek() -> UInt8? {
    position < bytes.count ? bytes[position] : nil
  }

  mutating func skipSpaces() {
    while let byte = peek(), byte == 0x20 || byte == 0x0a || byte == 0x09 || byte == 0x0d {
      position += 1
    }
  }

  mutating func expect(_ byte: UInt8) throws {
    guard peek() == byte else { throw failure("expected '\(Character(Unicode.Scalar(byte)))'") }
    position += 1
  }

  mutating func expectWord(_ word: String) throws {
    for byte in word.utf8 { try expect(byte) }
  }

  func failure(_ message: String) -> CheckpointFormatError {
    CheckpointFormatError(source, "bad header at byte \(position): \(message)")
  }
}
