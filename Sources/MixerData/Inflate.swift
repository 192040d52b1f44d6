// Inflate.swift: zlib's `inflate` loop, once, for every compressed stream MixerData reads: the
// IDAT data of mask PNGs (a zlib stream that must hold exactly the rows its header declares) and
// gzipped MNIST IDX files (a gzip or zlib stream, several gzip members when files were
// concatenated). The output grows with what the stream actually produces, doubling from a guess,
// so a forged header cannot make it allocate gigabytes up front; `limit` caps it. Callers turn an
// `InflateError` into their own one-line message.

import CMixerZlib

/// The container around the deflate data.
enum InflateFormat {
  /// A zlib stream (RFC 1950); bytes after its end are ignored.
  case zlib
  /// A gzip (RFC 1952) or zlib stream, detected from the header; gzip members that follow one
  /// another (concatenated .gz files) are all inflated.
  case gzipOrZlib
}

/// Why a stream did not inflate.
enum InflateError: Error {
  /// More than 4 GiB of compressed input (zlib counts input in 32 bits).
  case inputTooLarge
  /// zlib could not allocate its state.
  case cannotStart
  /// zlib refused the data (`message` is zlib's); `inputUsedUp` when every input byte was read.
  case corrupt(message: String, inputUsedUp: Bool)
  /// The input ended before the stream did, after `produced` bytes; `message` is zlib's or its status.
  case truncated(produced: Int, message: String)
  /// The stream holds more than the `limit` bytes the caller allows.
  case exceedsLimit
}

/// Inflates `input` into at most `limit` bytes (more throws `.exceedsLimit`). Throws
/// `InflateError`.
func inflateStream(_ input: [UInt8], format: InflateFormat, limit: Int = Int.max) throws -> [UInt8] {
  guard input.count <= Int(UInt32.max) else { throw InflateError.inputTooLarge }
  var stream = z_stream()
  // inflateInit2 is a C macro; this is its expansion. windowBits 15 (32 KiB window); + 32 makes
  // zlib detect a zlib or gzip header.
  let windowBits: Int32 = format == .zlib ? 15 : 15 + 32
  guard inflateInit2_(&stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
    throw InflateError.cannotStart
  }
  defer { inflateEnd(&stream) }
  // one byte of room past the limit, to tell a stream that ends there from one that goes on
  let capacity = limit == Int.max ? limit : limit + 1
  var output = [UInt8](repeating: 0, count: min(capacity, max(1 << 16, 4 * input.count)))
  var produced = 0
  try input.withUnsafeBufferPointer { source in
    stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
    stream.avail_in = uInt(source.count)
    while true {
      let status = output.withUnsafeMutableBufferPointer { target -> Int32 in
        stream.next_out = target.baseAddress! + produced
        stream.avail_out = uInt(target.count - produced)
        let status = inflate(&stream, Z_NO_FLUSH)
        produced = target.count - Int(stream.avail_out)
        return status
      }
      guard produced <= limit else { throw InflateError.exceedsLimit }
      if status == Z_STREAM_END {
        // another gzip member follows (concatenated files): go on with it
        if format == .gzipOrZlib && stream.avail_in > 0 && inflateReset(&stream) == Z_OK { continue }
        return
      }
      let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
      guard status == Z_OK || status == Z_BUF_ERROR else {
        throw InflateError.corrupt(message: message, inputUsedUp: stream.avail_in == 0)
      }
      if produced == output.count {
        output.append(contentsOf: repeatElement(0, count: min(output.count, capacity - output.count)))
      } else if status == Z_BUF_ERROR || stream.avail_in == 0 {
        // room to write but nothing left to read: the stream stops before its end
        throw InflateError.truncated(produced: produced, message: message)
      }
    }
  }
  output.removeLast(output.count - produced)
  return output
}
