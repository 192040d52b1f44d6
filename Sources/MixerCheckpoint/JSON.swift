// JSON.swift: a small strict JSON (RFC 8259) parser and string escaper for the safetensors
// header. Objects keep their key order, numbers keep their text (the caller decides what an
// acceptable integer is), nesting is limited, and malformed input of any kind throws.

import Foundation

/// A parsed JSON value.
enum JSONValue: Equatable {
  case object([(key: String, value: JSONValue)])
  case array([JSONValue])
  case string(String)
  /// The number's literal text, e.g. `"123"` or `"-1.5e3"`.
  case number(String)
  case bool(Bool)
  case null

  static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
    switch (lhs, rhs) {
    case (.object(let a), .object(let b)):
      return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    case (.array(let a), .array(let b)): return a == b
    case (.string(let a), .string(let b)): return a == b
    case (.number(let a), .number(let b)): return a == b
    case (.bool(let a), .bool(let b)): return a == b
    case (.null, .null): return true
    default: return false
    }
  }

  /// The value as a non-negative integer: digits only, no sign, fraction or exponent.
  var nonNegativeInteger: Int? {
    guard case .number(let text) = self, !text.isEmpty else { return nil }
    var value = 0
    for byte in text.utf8 {
      guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
      let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (next, overflow2) = shifted.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
      guard !overflow1, !overflow2 else { return nil }
      value = next
    }
    return value
  }
}

/// A recursive-descent JSON parser over UTF-8 bytes.
struct JSONParser {
  /// Deepest nesting accepted; a safetensors header needs 3.
  static let maxDepth = 64

  let bytes: [UInt8]
  var position = 0

  /// Parses `bytes` as exactly one JSON value surrounded by optional whitespace.
  static func parse(_ bytes: [UInt8]) throws -> JSONValue {
    guard String(validating: bytes, as: UTF8.self) != nil else {
      throw JSONError("text is not valid UTF-8", 0)
    }
    var parser = JSONParser(bytes: bytes)
    parser.skipWhitespace()
    let value = try parser.parseValue(depth: 0)
    parser.skipWhitespace()
    guard parser.position == bytes.count else { throw parser.error("unexpected text after the value") }
    return value
  }

  mutating func parseValue(depth: Int) throws -> JSONValue {
    guard depth < JSONParser.maxDepth else { throw error("nesting deeper than \(JSONParser.maxDepth)") }
    guard let byte = peek() else { throw error("unexpected end of text") }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject(depth: depth)
    case UInt8(ascii: "["): return try parseArray(depth: depth)
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"):
      try expectWord("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expectWord("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expectWord("null")
      return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
    default: throw error("unexpected character")
    }
  }

  mutating func parseObject(depth: Int) throws -> JSONValue {
    position += 1
    var members: [(key: String, value: JSONValue)] = []
    skipWhitespace()
    if peek() == UInt8(ascii: "}") {
      position += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
      let key = try parseString()
      skipWhitespace()
      try expect(UInt8(ascii: ":"))
      skipWhitespace()
      members.append((key, try parseValue(depth: depth + 1)))
      skipWhitespace()
      guard let separator = peek() else { throw error("unterminated object") }
      position += 1
      if separator == UInt8(ascii: "}") { return .object(members) }
      guard separator == UInt8(ascii: ",") else { throw error("expected ',' or '}'") }
    }
  }

  mutating func parseArray(depth: Int) throws -> JSONValue {
    position += 1
    var elements: [JSONValue] = []
    skipWhitespace()
    if peek() == UInt8(ascii: "]") {
      position += 1
      return .array(elements)
    }
    while true {
      skipWhitespace()
      elements.append(try parseValue(depth: depth + 1))
      skipWhitespace()
      guard let separator = peek() else { throw error("unterminated array") }
      position += 1
      if separator == UInt8(ascii: "]") { return .array(elements) }
      guard separator == UInt8(ascii: ",") else { throw error("expected ',' or ']'") }
    }
  }

  /// A string with all RFC 8259 escapes; raw control characters and lone surrogates are errors.
  mutating func parseString() throws -> String {
    position += 1
    var result: [UInt8] = []
    while true {
      guard let byte = peek() else { throw error("unterminated string") }
      position += 1
      switch byte {
      case UInt8(ascii: "\""):
        return String(decoding: result, as: UTF8.self)
      case 0..<0x20:
        throw error("control character in a string")
      case UInt8(ascii: "\\"):
        guard let escape = peek() else { throw error("unterminated escape") }
        position += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): result.append(escape)
        case UInt8(ascii: "b"): result.append(0x08)
        case UInt8(ascii: "f"): result.append(0x0c)
        case UInt8(ascii: "n"): result.append(0x0a)
        case UInt8(ascii: "r"): result.append(0x0d)
        case UInt8(ascii: "t"): result.append(0x09)
        case UInt8(ascii: "u"):
          var code = UInt32(try parseHex4())
          if (0xd800..<0xdc00).contains(code) {
            guard peek() == UInt8(ascii: "\\") else { throw error("lone high surrogate") }
            position += 1
            try expect(UInt8(ascii: "u"))
            let low = UInt32(try parseHex4())
            guard (0xdc00..<0xe000).contains(low) else { throw error("lone high surrogate") }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
          }
          guard let scalar = Unicode.Scalar(code) else { throw error("lone low surrogate") }
          result.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
          throw error("bad escape sequence")
        }
      default:
        result.append(byte)
      }
    }
  }

  mutating func parseHex4() throws -> UInt16 {
    var value: UInt16 = 0
    for _ in 0..<4 {
      guard let byte = peek() else { throw error("truncated \\u escape") }
      let digit: UInt16
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt16(byte - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt16(byte - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt16(byte - UInt8(ascii: "A") + 10)
      default: throw error("bad hex digit in \\u escape")
      }
      value = value << 4 | digit
      position += 1
    }
    return value
  }

  /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, returned as text.
  mutating func parseNumber() throws -> String {
    let start = position
    if peek() == UInt8(ascii: "-") { position += 1 }
    if peek() == UInt8(ascii: "0") {
      position += 1
    } else {
      guard try skipDigits() > 0 else { throw error("bad number") }
    }
    if peek() == UInt8(ascii: ".") {
      position += 1
      guard try skipDigits() > 0 else { throw error("bad number") }
    }
    if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
      position += 1
      if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
      guard try skipDigits() > 0 else { throw error("bad number") }
    }
    return String(decoding: bytes[start..<position], as: UTF8.self)
  }

  mutating func skipDigits() throws -> Int {
    var count = 0
    while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
      position += 1
      count += 1
    }
    return count
  }

  func peek() -> UInt8? {
    position < bytes.count ? bytes[position] : nil
  }

  mutating func skipWhitespace() {
    while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d {
      position += 1
    }
  }

  mutating func expect(_ byte: UInt8) throws {
    guard peek() == byte else { throw error("expected '\(Character(Unicode.Scalar(byte)))'") }
    position += 1
  }

  mutating func expectWord(_ word: String) throws {
    for byte in word.utf8 { try expect(byte) }
  }

  func error(_ message: String) -> JSONError {
    JSONError(message, position)
  }
}

/// A JSON syntax error at a byte offset.
struct JSONError: Error, CustomStringConvertible {
  let message: String
  let offset: Int

  init(_ message: String, _ offset: Int) {
    self.message = message
    self.offset = offset
  }

  var description: String { "\(message) at byte \(offset)" }
}

/// `text` as a JSON string literal, quotes included.
func jsonQuoted(_ text: String) -> String {
  var result = "\""
  for scalar in text.unicodeScalars {
    switch scalar {
    case "\"": result += "\\\""
    case "\\": result += "\\\\"
    case "\n": result += "\\n"
    case "\r": result += "\\r"
    case "\t": result += "\\t"
    case "\u{00}"..."\u{1f}":
      let hex = String(scalar.value, radix: 16)
      result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    default: result.unicodeScalars.append(scalar)
    }
  }
  return result + "\""
}
