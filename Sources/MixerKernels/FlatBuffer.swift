// A fixed-size float buffer at a stable address: parameters, gradients and optimizer moments.
// The address never moves, so backward, the communication thread and BLAS can all hold raw
// pointers into it for the buffer's lifetime.

/// `count` floats, zero-initialised, freed with the object.
public final class FlatBuffer: @unchecked Sendable {
  public let pointer: UnsafeMutablePointer<Float>
  public let count: Int

  public init(count: Int, repeating value: Float = 0) {
    self.count = count
    pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    pointer.initialize(repeating: value, count: max(count, 1))
  }

  public convenience init(_ values: [Float]) {
    self.init(count: values.count)
    values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
  }

  deinit { pointer.deallocate() }

  @inline(__always)
  public subscript(i: Int) -> Float {
    get { pointer[i] }
    set { pointer[i] = newValue }
  }

  /// A copy of the values in `range` (all by default).
  public func array(_ range: Range<Int>? = nil) -> [Float] {
    let r = range ?? 0..<count
    return Array(UnsafeBufferPointer(start: pointer + r.lowerBound, count: r.count))
  }

  /// Overwrites `values.count` floats starting at `offset`.
  public func copy(from values: [Float], at offset: Int = 0) {
    precondition(offset >= 0 && offset + values.count <= count)
    values.withUnsafeBufferPointer { (pointer + offset).update(from: $0.baseAddress!, count: values.count) }
  }

  /// Copies all values from another buffer of the same size.
  public func copy(from other: FlatBuffer) {
    precondition(other.count == count)
    pointer.update(from: other.pointer, count: count)
  }

  /// Sets every value to `value`.
  public func fill(_ value: Float) { pointer.update(repeating: value, count: count) }

  /// The raw bytes, little-endian float32 (for checksums and files).
  public var bytes: UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: pointer, count: count * MemoryLayout<Float>.stride)
  }
}
