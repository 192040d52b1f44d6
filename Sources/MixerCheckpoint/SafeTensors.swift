// SafeTensors.swift: the safetensors format (huggingface/safetensors): a strict reader that can
// fetch one tensor, or a slice of one, without loading the rest of the file, and the writer of
// every safetensors file the project saves (float32 streamed to disk, or any element type).
//
// Layout: N as UInt64 little-endian, N bytes of UTF-8 JSON (possibly padded with spaces)
// `{"__metadata__": {str: str}, NAME: {"dtype": "F32" (or "I8", "BF16", ...), "shape": [..], "data_offsets": [b, e]}}`,
// then the byte buffer. Offsets are relative to the buffer; the tensors tile it exactly, without
// gaps or overlaps, and each span is product(shape) × itemsize bytes.

import Foundation

/// A validated safetensors file: the tensor table and metadata, with the data left in place
/// (in memory or on disk) until a tensor is asked for.
public struct SafeTensorsFile: Sendable {
  /// One entry of the header.
  public struct Tensor: Sendable, Equatable {
    /// The tensor's key in the header.
    public let name: String
    /// The stored element type (`dtype`).
    public let elementType: ElementType
    /// Dimensions, outermost first; `[]` for a scalar.
    public let shape: [Int]
    /// Bytes of the data buffer holding this tensor (offsets relative to the buffer).
    public let byteRange: Range<Int>

    /// Number of elements.
    public var count: Int { byteRange.count / elementType.byteCount }
  }

  /// The tensors in the order of their data in the file.
  public let tensors: [Tensor]
  /// The `__metadata__` strings (empty when absent).
  public let metadata: [String: String]

  enum Storage {
    case memory(Data)
    case file(URL)
  }

  let storage: Storage
  /// Offset of the data buffer in the file: 8 + header length.
  let bufferOffset: Int
  let source: String
  let index: [String: Int]

  /// Parses the header of a safetensors file on disk; tensor data is read on request.
  public init(contentsOf url: URL) throws {
    let source = url.lastPathComponent
    let handle = try FileHandle(forReadingFrom: url)
    defer { try? handle.close() }
    let fileSize = try handle.seekToEnd()
    try handle.seek(toOffset: 0)
    let prefix = try handle.read(upToCount: 8) ?? Data()
    let headerLength = try SafeTensorsFile.headerLength(prefix, fileSize: fileSize, source: source)
    let header = try handle.read(upToCount: headerLength) ?? Data()
    guard header.count == headerLength else {
      throw CheckpointFormatError(source, "file shrank while reading its header")
    }
    try self.init(
      header: header, bufferSize: Int(fileSize) - 8 - headerLength, storage: .file(url), source: source)
  }

  /// Parses a safetensors file held in memory.
  public init(data: Data, source: String = "tensors.safetensors") throws {
    let headerLength = try SafeTensorsFile.headerLength(
      data.prefix(8), fileSize: UInt64(data.count), source: source)
    let start = data.startIndex
    let header = data.subdata(in: (start + 8)..<(start + 8 + headerLength))
    try self.init(
      header: header, bufferSize: data.count - 8 - headerLength, storage: .memory(data), source: source)
  }

  /// Reads a file's 8-byte header length and checks it against the file size and the limit.
  static func headerLength(_ prefix: Data, fileSize: UInt64, source: String) throws -> Int {
    guard prefix.count == 8 else {
      throw CheckpointFormatError(source, "file is \(prefix.count) bytes, too short for the header length")
    }
    let length = prefix.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard length <= UInt64(SafeTensors.maxHeaderBytes) else {
      throw CheckpointFormatError(
        source, "header length \(length) exceeds \(SafeTensors.maxHeaderBytes) bytes")
    }
    guard fileSize >= 8, length <= fileSize - 8, Int(exactly: fileSize) != nil else {
      throw CheckpointFormatError(
        source, "header length \(length) runs past the end of the \(fileSize)-byte file")
    }
    return Int(length)
  }

  /// Validates the JSON header against a data buffer of `bufferSize` bytes.
  init(header: Data, bufferSize: Int, storage: Storage, source: String) throws {
    guard header.first == UInt8(ascii: "{") else {
      throw CheckpointFormatError(source, "header does not start with '{'")
    }
    let json: JSONValue
    do {
      json = try JSONParser.parse([UInt8](header))
    } catch let error as JSONError {
      throw CheckpointFormatError(source, "header is not valid JSON: \(error)")
    }
    guard case .object(let members) = json else {
      throw CheckpointFormatError(source, "header is not a JSON object")
    }
    var metadata: [String: String] = [:]
    var sawMetadata = false
    var tensors: [Tensor] = []
    var names = Set<String>()
    for (key, value) in members {
      if key == "__metadata__" {
        guard !sawMetadata else { throw CheckpointFormatError(source, "__metadata__ appears twice") }
        sawMetadata = true
        metadata = try SafeTensorsFile.parseMetadata(value, source: source)
        continue
      }
      guard names.insert(key).inserted else {
        throw CheckpointFormatError(source, "tensor '\(key)' appears twice")
      }
      tensors.append(try SafeTensorsFile.parseTensor(key, value, source: source))
    }
    // The spans must tile [0, bufferSize) exactly.
    tensors.sort {
      ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
    }
    var covered = 0
    for tensor in tensors {
      guard tensor.byteRange.lowerBound == covered else {
        let problem = tensor.byteRange.lowerBound < covered ? "overlaps the previous tensor" : "leaves a gap"
        throw CheckpointFormatError(
          source,
          "tensor '\(tensor.name)' at byte \(tensor.byteRange.lowerBound) \(problem) (expected \(covered))")
      }
      covered = tensor.byteRange.upperBound
    }
    guard covered == bufferSize else {
      throw CheckpointFormatError(
        source, "tensors cover \(covered) bytes, the data buffer holds \(bufferSize)")
    }
    self.tensors = tensors
    self.metadata = metadata
    self.storage = storage
    self.bufferOffset = header.count + 8
    self.source = source
    self.index = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
  }

  static func parseMetadata(_ value: JSONValue, source: String) throws -> [String: String] {
    if value == .null { return [:] }
    guard case .object(let pairs) = value else {
      throw CheckpointFormatError(source, "__metadata__ is not an object")
    }
    var metadata: [String: String] = [:]
    for (key, item) in pairs {
      guard case .string(let text) = item else {
        throw CheckpointFormatError(source, "__metadata__ value for '\(key)' is not a string")
      }
      guard metadata.updateValue(text, forKey: key) == nil else {
        throw CheckpointFormatError(source, "__metadata__ key '\(key)' appears twice")
      }
    }
    return metadata
  }

  static func parseTensor(_ name: String, _ value: JSONValue, source: String) throws -> Tensor {
    let tensorSource = "\(source): \(name)"
    guard case .object(let fields) = value else {
      throw CheckpointFormatError(tensorSource, "tensor entry is not an object")
    }
    var dtype: String?
    var shape: [Int]?
    var offsets: [Int]?
    for (key, item) in fields {
      switch (key, item) {
      case ("dtype", .string(let text)) where dtype == nil:
        dtype = text
      case ("shape", .array(let items)) where shape == nil:
        shape = try items.map { item in
          guard let dimension = item.nonNegativeInteger else {
            throw CheckpointFormatError(tensorSource, "shape entry is not a non-negative integer")
          }
          return dimension
        }
      case ("data_offsets", .array(let items)) where offsets == nil:
        offsets = try items.map { item in
          guard let offset = item.nonNegativeInteger else {
            throw CheckpointFormatError(tensorSource, "data offset is not a non-negative integer")
          }
          return offset
        }
      default:
        throw CheckpointFormatError(
          tensorSource, "field '\(key)' is unexpected, repeated or of the wrong type")
      }
    }
    guard let dtype, let shape, let offsets else {
      throw CheckpointFormatError(tensorSource, "tensor lacks one of dtype, shape, data_offsets")
    }
    guard let type = ElementType.allCases.first(where: { $0.safetensorsName == dtype }) else {
      throw CheckpointFormatError(tensorSource, "unsupported dtype '\(dtype)'")
    }
    guard offsets.count == 2, offsets[0] <= offsets[1] else {
      throw CheckpointFormatError(
        tensorSource, "data_offsets \(offsets) is not [begin, end] with begin <= end")
    }
    guard let count = elementCount(shape),
      case (let bytes, false) = count.multipliedReportingOverflow(by: type.byteCount),
      bytes == offsets[1] - offsets[0]
    else {
      throw CheckpointFormatError(
        tensorSource,
        "shape \(shape) of \(dtype) does not match the \(offsets[1] - offsets[0]) bytes at \(offsets)")
    }
    return Tensor(name: name, elementType: type, shape: shape, byteRange: offsets[0]..<offsets[1])
  }

  /// The header entry for `name`.
  public func info(_ name: String) throws -> Tensor {
    guard let position = index[name] else {
      throw CheckpointFormatError(source, "no tensor named '\(name)'")
    }
    return tensors[position]
  }

  /// The tensor `name` with its stored element type.
  public func tensor(_ name: String) throws -> TypedArray {
    let entry = try info(name)
    return TypedArray(
      elementType: entry.elementType, shape: entry.shape, payload: try bytes(entry.byteRange),
      source: "\(source): \(name)")
  }

  /// The elements of tensor `name` converted to Float.
  public func floats(_ name: String) throws -> [Float] {
    try tensor(name).floats()
  }

  /// The flat elements `elements` of tensor `name`, converted to Float; only those bytes are
  /// read (the checkpoint loader reads slices of flat optimizer tensors this way).
  public func floats(_ name: String, elements: Range<Int>) throws -> [Float] {
    let entry = try info(name)
    guard elements.lowerBound >= 0, elements.upperBound <= entry.count else {
      throw CheckpointFormatError(
        "\(source): \(name)", "elements \(elements) are outside the tensor's \(entry.count)")
    }
    let width = entry.elementType.byteCount
    let start = entry.byteRange.lowerBound + elements.lowerBound * width
    let slice = TypedArray(
      elementType: entry.elementType, shape: [elements.count],
      payload: try bytes(start..<(start + elements.count * width)), source: "\(source): \(name)")
    return slice.floats()
  }

  /// The bytes `range` of the data buffer.
  func bytes(_ range: Range<Int>) throws -> Data {
    switch storage {
    case .memory(let data):
      let start = data.startIndex + bufferOffset
      return data.subdata(in: (start + range.lowerBound)..<(start + range.upperBound))
    case .file(let url):
      let handle = try FileHandle(forReadingFrom: url)
      defer { try? handle.close() }
      try handle.seek(toOffset: UInt64(bufferOffset + range.lowerBound))
      let data = range.isEmpty ? Data() : (try handle.read(upToCount: range.count) ?? Data())
      guard data.count == range.count else {
        throw CheckpointFormatError(source, "file is shorter than its header says (changed on disk?)")
      }
      return data
    }
  }
}

/// Writing safetensors files: the one writer of the project, for float32 parameters (streamed
/// from `NDArray`s) and for tensors of any element type (`TypedArray`: a quantized checkpoint's
/// I8, BF16 and F32 tensors). Names and metadata are escaped in the JSON header.
public enum SafeTensors {
  /// The longest header accepted (the reference implementation's limit).
  public static let maxHeaderBytes = 100_000_000

  /// Encodes float32 tensors, in the given order, with optional string metadata.
  public static func encode(
    _ tensors: [(name: String, array: NDArray)], metadata: [String: String] = [:]
  ) throws -> Data {
    var result = try header(tensors.map { ($0.name, .float32, $0.array.shape, $0.array.data.count) }, metadata: metadata)
    for (_, array) in tensors {
      appendLittleEndian(array.data, to: &result)
    }
    return result
  }

  /// Encodes tensors of any element type, in the given order, with optional string metadata.
  public static func encode(
    _ tensors: [(name: String, array: TypedArray)], metadata: [String: String] = [:]
  ) throws -> Data {
    var result = try header(tensors.map { ($0.name, $0.array.elementType, $0.array.shape, $0.array.count) }, metadata: metadata)
    for (_, array) in tensors { result.append(array.payload) }
    return result
  }

  /// Writes float32 tensors to `url` atomically, streaming each tensor's data to disk.
  /// Returns the file's size and the lowercase hex SHA-256 of its bytes, hashed as they are
  /// written (a checkpoint's manifest records both without reading the file back).
  @discardableResult
  public static func write(
    _ tensors: [(name: String, array: NDArray)], metadata: [String: String] = [:], to url: URL
  ) throws -> (bytes: Int, sha256: String) {
    let header = try header(tensors.map { ($0.name, .float32, $0.array.shape, $0.array.data.count) }, metadata: metadata)
    return try write(header: header, to: url) { put in
      for (_, array) in tensors {
        #if _endian(little)
          try array.data.withUnsafeBytes(put)
        #else
          var bytes = Data()
          appendLittleEndian(array.data, to: &bytes)
          try bytes.withUnsafeBytes(put)
        #endif
      }
    }
  }

  /// Writes tensors of any element type to `url` atomically; returns the file's size and SHA-256
  /// as the float32 `write` does.
  @discardableResult
  public static func write(
    _ tensors: [(name: String, array: TypedArray)], metadata: [String: String] = [:], to url: URL
  ) throws -> (bytes: Int, sha256: String) {
    let header = try header(tensors.map { ($0.name, $0.array.elementType, $0.array.shape, $0.array.count) }, metadata: metadata)
    return try write(header: header, to: url) { put in
      for (_, array) in tensors { try array.payload.withUnsafeBytes(put) }
    }
  }

  /// Creates `url` atomically from `header` and what `body` passes to `put`, hashing the bytes
  /// as they go to disk.
  private static func write(
    header: Data, to url: URL, body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
  ) throws -> (bytes: Int, sha256: String) {
    var hasher = SHA256()
    var size = 0
    try AtomicFile.create(url) { temporary in
      guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
        throw CheckpointIOError(path: temporary.path, operation: "create", code: errno)
      }
      let handle = try FileHandle(forWritingTo: temporary)
      defer { try? handle.close() }
      func put(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        size += bytes.count
        try handle.write(contentsOf: bytes)
      }
      try header.withUnsafeBytes(put)
      try body(put)
    }
    return (size, hasher.finalize().map { String(format: "%02x", $0) }.joined())
  }

  /// The 8-byte length and the JSON header, padded with spaces to a multiple of 8 bytes so the
  /// data buffer is 8-byte aligned. Each entry is a tensor's name, element type, shape and
  /// element count, in the order of the data.
  static func header(
    _ tensors: [(name: String, elementType: ElementType, shape: [Int], count: Int)], metadata: [String: String]
  ) throws -> Data {
    var fields: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.sorted { $0.key < $1.key }.map { jsonQuoted($0.key) + ":" + jsonQuoted($0.value) }
      fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
    }
    var names = Set<String>()
    var offset = 0
    for (name, elementType, shape, count) in tensors {
      guard name != "__metadata__", names.insert(name).inserted else {
        throw CheckpointFormatError("safetensors writer", "tensor name '\(name)' is reserved or repeated")
      }
      guard elementCount(shape) == count else {
        throw CheckpointFormatError(
          "safetensors writer",
          "tensor '\(name)': shape \(shape) does not hold \(count) elements")
      }
      let end = offset + elementType.byteCount * count
      let dimensions = shape.map(String.init).joined(separator: ",")
      fields.append(
        jsonQuoted(name) + ":{\"dtype\":\"\(elementType.safetensorsName)\",\"shape\":[\(dimensions)],\"data_offsets\":[\(offset),\(end)]}")
      offset = end
    }
    var json = Array(("{" + fields.joined(separator: ",") + "}").utf8)
    json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
    var result = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { result.append(contentsOf: $0) }
    result.append(contentsOf: json)
    return result
  }
}
