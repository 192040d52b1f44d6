// TypedArray.swift: the in-memory arrays of the file layer. `NDArray` is what the trainer uses
// (float32, C order); `TypedArray` is what a reader decoded from a `.npy`, `.npz` or safetensors
// file (an element type, a shape and the little-endian payload), converted on request to floats
// or, for integer arrays such as labels, to exact integers.

import Foundation

/// A float32 tensor: a shape and its elements in C (row-major) order.
public struct NDArray: Equatable, Sendable {
  /// Dimensions, outermost first; `[]` for a scalar (one element).
  public var shape: [Int]
  /// The product of `shape` elements, row-major.
  public var data: [Float]

  /// Creates an array; `data.count` must equal the product of `shape`.
  public init(shape: [Int], data: [Float]) {
    precondition(
      elementCount(shape) == data.count, "NDArray: shape \(shape) does not hold \(data.count) elements")
    self.shape = shape
    self.data = data
  }

  /// Creates a 0-d array holding `value`.
  public init(scalar value: Float) {
    self.init(shape: [], data: [value])
  }
}

/// The element types the readers understand. Each has a NumPy `descr` code (without the byte
/// order character) and a safetensors dtype name; `bfloat16` has no NumPy code.
public enum ElementType: String, CaseIterable, Sendable {
  case bool, int8, uint8, int16, int32, int64, float16, bfloat16, float32, float64

  /// Bytes per element.
  public var byteCount: Int {
    switch self {
    case .bool, .int8, .uint8: return 1
    case .int16, .float16, .bfloat16: return 2
    case .int32, .float32: return 4
    case .int64, .float64: return 8
    }
  }

  /// True for the integer and boolean types, which convert exactly to `Int`.
  public var isInteger: Bool {
    switch self {
    case .bool, .int8, .uint8, .int16, .int32, .int64: return true
    case .float16, .bfloat16, .float32, .float64: return false
    }
  }

  /// The NumPy type code (`"f4"`), nil for bfloat16.
  var numpyCode: String? {
    switch self {
    case .bool: return "b1"
    case .int8: return "i1"
    case .uint8: return "u1"
    case .int16: return "i2"
    case .int32: return "i4"
    case .int64: return "i8"
    case .float16: return "f2"
    case .bfloat16: return nil
    case .float32: return "f4"
    case .float64: return "f8"
    }
  }

  /// The safetensors dtype name (`"F32"`).
  var safetensorsName: String {
    switch self {
    case .bool: return "BOOL"
    case .int8: return "I8"
    case .uint8: return "U8"
    case .int16: return "I16"
    case .int32: return "I32"
    case .int64: return "I64"
    case .float16: return "F16"
    case .bfloat16: return "BF16"
    case .float32: return "F32"
    case .float64: return "F64"
    }
  }
}

/// A decoded array: element type, shape and exactly `count × elementType.byteCount` bytes of
/// little-endian payload. Readers only build it after validating all three.
public struct TypedArray: Sendable {
  /// The element type found in the file.
  public let elementType: ElementType
  /// Dimensions, outermost first; `[]` for a scalar.
  public let shape: [Int]
  /// The payload, little-endian, C order.
  let payload: Data
  /// The file and entry it came from, for error messages.
  let source: String

  init(elementType: ElementType, shape: [Int], payload: Data, source: String) {
    self.elementType = elementType
    self.shape = shape
    self.payload = payload
    self.source = source
  }

  /// An array to write: `values` stored as `elementType`, whose width must be `T`'s (`Int8` as
  /// `.int8`, bf16 bit patterns `UInt16` as `.bfloat16`, `Float` as `.float32`, ...).
  public init<T>(_ elementType: ElementType, shape: [Int], values: [T], source: String = "tensor") {
    precondition(
      MemoryLayout<T>.size == elementType.byteCount && elementCount(shape) == values.count,
      "TypedArray: \(values.count) values of \(T.self) as \(elementType) \(shape)")
    #if _endian(little)
      let payload = values.withUnsafeBytes { Data($0) }
    #else
      #error("TypedArray(_:shape:values:) stores the host's bytes: little-endian hosts only")
    #endif
    self.init(elementType: elementType, shape: shape, payload: payload, source: source)
  }

  /// Number of elements (the product of `shape`).
  public var count: Int { payload.count / elementType.byteCount }

  /// The elements converted to Float (exact for float16, bfloat16, float32 and for integers of
  /// magnitude up to 2^24; float64 and larger integers round to nearest).
  public func floats() -> [Float] {
    floats(elements: 0..<count)
  }

  /// The elements in `elements` (flat indices, clamped to the array) converted to Float.
  func floats(elements: Range<Int>) -> [Float] {
    let range = elements.clamped(to: 0..<count)
    let width = elementType.byteCount
    let type = elementType
    return payload.withUnsafeBytes { raw -> [Float] in
      #if _endian(little)
        if type == .float32 {
          return [Float](unsafeUninitializedCapacity: range.count) { buffer, initialized in
            let source = UnsafeRawBufferPointer(rebasing: raw[range.lowerBound * 4..<range.upperBound * 4])
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
            initialized = range.count
          }
        }
      #endif
      return range.map { decodeFloat(raw, offset: $0 * width, type: type) }
    }
  }

  /// The array converted to a float32 `NDArray`.
  public var ndarray: NDArray { NDArray(shape: shape, data: floats()) }

  /// The elements of an integer or boolean array as `Int`; throws for floating-point arrays.
  public func ints() throws -> [Int] {
    guard elementType.isInteger else {
      throw CheckpointFormatError(source, "expected an integer array, found \(elementType)")
    }
    let width = elementType.byteCount
    let type = elementType
    return payload.withUnsafeBytes { raw in
      (0..<count).map { decodeInteger(raw, offset: $0 * width, type: type) }
    }
  }

  /// The elements of an integer or boolean array as `Int32`; throws for floating-point arrays
  /// and for int64 values outside the Int32 range.
  public func int32s() throws -> [Int32] {
    let values = try ints()
    var result = [Int32]()
    result.reserveCapacity(values.count)
    for (index, value) in values.enumerated() {
      guard let narrow = Int32(exactly: value) else {
        throw CheckpointFormatError(source, "element \(index) = \(value) does not fit in Int32")
      }
      result.append(narrow)
    }
    return result
  }
}

/// The little-endian element at `offset` of `raw` as Float. The caller guarantees the bounds.
private func decodeFloat(_ raw: UnsafeRawBufferPointer, offset: Int, type: ElementType) -> Float {
  switch type {
  case .float16:
    return floatFromHalf(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
  case .bfloat16:
    let bits = UInt32(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian) << 16
    return Float(bitPattern: bits)
  case .float32:
    return Float(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
  case .float64:
    return Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian))
  case .bool, .int8, .uint8, .int16, .int32, .int64:
    return Float(decodeInteger(raw, offset: offset, type: type))
  }
}

/// The little-endian integer at `offset` of `raw`; floating types give 0 (never asked).
private func decodeInteger(_ raw: UnsafeRawBufferPointer, offset: Int, type: ElementType) -> Int {
  switch type {
  case .bool: return raw[offset] != 0 ? 1 : 0
  case .int8: return Int(Int8(bitPattern: raw[offset]))
  case .uint8: return Int(raw[offset])
  case .int16: return Int(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int16.self)))
  case .int32: return Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
  case .int64: return Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
  case .float16, .bfloat16, .float32, .float64: return 0
  }
}

/// IEEE 754 binary16 to binary32, exact (subnormals, infinities and NaN payloads included).
private func floatFromHalf(_ half: UInt16) -> Float {
  let sign = UInt32(half & 0x8000) << 16
  let exponent = Int(half >> 10) & 0x1f
  let mantissa = UInt32(half & 0x03ff)
  switch exponent {
  case 0:
    // Zero or subnormal: mantissa × 2^-24.
    let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
    return sign == 0 ? magnitude : -magnitude
  case 0x1f:
    return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
  default:
    return Float(bitPattern: sign | (UInt32(exponent + 127 - 15) << 23) | (mantissa << 13))
  }
}
