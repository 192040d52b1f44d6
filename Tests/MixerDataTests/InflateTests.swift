// InflateTests.swift: the one zlib inflate loop: zlib and gzip streams, concatenated gzip members,
// output growth past the first guess, the limit, and truncated or corrupt input.

import MixerTestSupport
import XCTest

@testable import MixerData

final class InflateTests: XCTestCase {
  /// 300 KB that compress well, so the output outgrows the first guess (4 × input) many times.
  let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 7) }

  func testZlibAndGzipStreams() throws {
    let zlib = zlibCompress(data)
    XCTAssertEqual(try inflateStream(zlib, format: .zlib), data)
    XCTAssertEqual(try inflateStream(zlib, format: .gzipOrZlib), data)
    // bytes after a zlib stream are ignored; gzip members that follow one another are all read
    XCTAssertEqual(try inflateStream(zlib + [1, 2, 3], format: .zlib), data)
    let a = Array(data.prefix(1000)), b = Array(data.suffix(500))
    XCTAssertEqual(try inflateStream(gzipStored(a) + gzipStored(b), format: .gzipOrZlib), a + b)
    XCTAssertEqual(try inflateStream(zlibCompress([]), format: .zlib), [])
  }

  func testLimitTruncationAndCorruption() {
    let zlib = zlibCompress(data)
    XCTAssertEqual(try inflateStream(zlib, format: .zlib, limit: data.count), data)
    assertInflateError(zlib, limit: data.count - 1) {
      guard case .exceedsLimit = $0 else { return false }
      return true
    }
    assertInflateError(Array(zlib.prefix(zlib.count / 2))) {
      guard case .truncated(let produced, _) = $0 else { return false }
      return produced > 0 && produced < self.data.count
    }
    var corrupt = zlib
    corrupt[0] ^= 0xFF  // the header's check bits no longer hold
    assertInflateError(corrupt) {
      guard case .corrupt(let message, _) = $0 else { return false }
      return message.contains("header")
    }
  }

  func assertInflateError(
    _ input: [UInt8], limit: Int = .max, file: StaticString = #filePath, line: UInt = #line,
    _ matches: (InflateError) -> Bool
  ) {
    do {
      _ = try inflateStream(input, format: .zlib, limit: limit)
      XCTFail("no error", file: file, line: line)
    } catch let error as InflateError {
      XCTAssertTrue(matches(error), "\(error)", file: file, line: line)
    } catch {
      XCTFail("\(error)", file: file, line: line)
    }
  }
}
