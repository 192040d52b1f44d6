// NPZTests.swift: `.npz` archives: round trips through ZIPFoundation's writer, the shared
// reference archives, a deflated archive written by NumPy, ZIP64 central directories, the entry
// size cap, and malformed archives that must throw (never crash).

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

/// `np.savez_compressed(weights=arange(12, f4).reshape(3, 4) / 4, labels=int64 [3 1 4 1 5],
/// flag=True)`: deflated entries with ZIP64 local headers, as NumPy writes them.
let numpyDeflatedNPZ = Data(
  base64Encoded: """
    UEsDBC0AAAAIAAAAIQD9+7fS//////////8LABQAd2VpZ2h0cy5ucHkBABAAsAAAAAAAAABnAAAAAAAAAJvsF+obEMnIUMZQrZ6S\
    WpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GsY6CiaaOgq1CmQDLgYwaLADEvYMDA5A3ADEC4D4ABA/\
    AGIGBwYGASBWAGIDBwBQSwMELQAAAAgAAAAhAO6wFnj//////////woAFABsYWJlbHMubnB5AQAQAKgAAAAAAAAAUAAAAAAAAACb\
    7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqmOpo6CrUKFAAuZgYIYITSLGh8\
    VigNAFBLAwQtAAAACAAAACEAgi340///////////CAAUAGZsYWcubnB5AQAQAIEAAAAAAAAAQwAAAAAAAACb7BfqGxDJyFDGUK2e\
    klqcXKRupaBek2SorqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqaOgq1ChQBLkYAUEsBAi0DLQAAAAgAAAAhAP37t9Jn\
    AAAAsAAAAAsAAAAAAAAAAAAAAIABAAAAAHdlaWdodHMubnB5UEsBAi0DLQAAAAgAAAAhAO6wFnhQAAAAqAAAAAoAAAAAAAAAAAAA\
    AIABpAAAAGxhYmVscy5ucHlQSwECLQMtAAAACAAAACEAgi3400MAAACBAAAACAAAAAAAAAAAAAAAgAEwAQAAZmxhZy5ucHlQSwUG\
    AAAAAAMAAwCnAAAArQEAAAAA
    """)!

final class NPZTests: XCTestCase {
  let arrays: [(name: String, array: NDArray)] = [
    ("MixerBlock_0/token_mixing/Dense_0/kernel", NDArray(shape: [2, 3], data: sampleFloats(6))),
    ("loss", NDArray(scalar: 2.5)),
    ("empty", NDArray(shape: [0, 4], data: [])),
  ]

  func testRoundTripKeepsOrderNamesAndBits() throws {
    let decoded = try NPZ.decode(NPZ.encode(arrays))
    XCTAssertEqual(decoded.map(\.name), arrays.map(\.name))
    for ((_, expected), (_, actual)) in zip(arrays, decoded) {
      XCTAssertEqual(actual.elementType, .float32)
      XCTAssertEqual(actual.ndarray, expected)
    }
    XCTAssertEqual(try NPZ.encode(arrays), try NPZ.encode(arrays), "output is reproducible")
  }

  func testFileRoundTripAndNumPyReadable() throws {
    let url = try makeTemporaryDirectory(self).appendingPathComponent("weights.npz")
    try NPZ.write(arrays, to: url)
    let floats = try NPZ.readFloats(contentsOf: url)
    XCTAssertEqual(floats.count, 3)
    XCTAssertEqual(floats["loss"], NDArray(scalar: 2.5))
    XCTAssertEqual(floats["MixerBlock_0/token_mixing/Dense_0/kernel"]?.shape, [2, 3])
    // Writing again replaces the file.
    try NPZ.write([("only", NDArray(scalar: 1))], to: url)
    XCTAssertEqual(try NPZ.read(contentsOf: url).map(\.name), ["only"])
  }

  func testWriterRejectsBadInput() {
    assertFormatError("empty or repeated") {
      _ = try NPZ.encode([("a", NDArray(scalar: 1)), ("a", NDArray(scalar: 2))])
    }
    var broken = NDArray(shape: [2], data: [1, 2])
    broken.data.append(3)
    assertFormatError("does not hold 3 elements") { _ = try NPZ.encode([("a", broken)]) }
  }

  func testReadsReferenceArchives() throws {
    let folder = fixturesDirectory.appendingPathComponent("reference/mixer-tiny-tanh")
    let params = try NPZ.read(contentsOf: folder.appendingPathComponent("params.npz"))
    XCTAssertEqual(params.count, 30)
    let shapes = Dictionary(uniqueKeysWithValues: params.map { ($0.name, $0.array.shape) })
    XCTAssertEqual(shapes["stem/kernel"], [8, 8, 3, 64])
    XCTAssertEqual(shapes["stem/bias"], [64])
    XCTAssertEqual(shapes["MixerBlock_0/token_mixing/Dense_0/kernel"], [16, 32])
    XCTAssertEqual(shapes["MixerBlock_1/channel_mixing/Dense_1/kernel"], [128, 64])
    XCTAssertEqual(shapes["head/kernel"], [64, 10])
    XCTAssertEqual(shapes["pre_head_layer_norm/scale"], [64])
    XCTAssertTrue(params.allSatisfy { $0.array.elementType == .float32 })
    let stem = try XCTUnwrap(params.first { $0.name == "stem/kernel" }).array.floats()
    XCTAssertEqual(Array(stem.prefix(3)), [0.083432734, 0.018588802, -0.03988206])

    let grads = try NPZ.read(contentsOf: folder.appendingPathComponent("grads.npz"))
    XCTAssertEqual(grads.map(\.name), params.map(\.name))
    XCTAssertEqual(grads.map(\.array.shape), params.map(\.array.shape))

    let batch = try NPZ.read(contentsOf: folder.appendingPathComponent("batch.npz"))
    let byName = Dictionary(uniqueKeysWithValues: batch.map { ($0.name, $0.array) })
    XCTAssertEqual(Set(byName.keys), ["images", "labels", "logits", "loss"])
    let images = try XCTUnwrap(byName["images"])
    XCTAssertEqual(images.shape, [4, 32, 32, 3])
    XCTAssertEqual(Array(images.floats().prefix(3)), [1.7640524, 0.4001572, 0.978738])
    let labels = try XCTUnwrap(byName["labels"])
    XCTAssertEqual(labels.elementType, .int32)
    XCTAssertEqual(labels.shape, [4])
    XCTAssertEqual(try labels.int32s(), [9, 7, 4, 1])
    XCTAssertEqual(byName["logits"]?.shape, [4, 10])
    let loss = try XCTUnwrap(byName["loss"])
    XCTAssertEqual(loss.shape, [], "loss is a 0-d array")
    XCTAssertEqual(loss.count, 1)
    XCTAssertEqual(loss.floats()[0], 2.3012452, accuracy: 1e-6)

    let activations = try NPZ.read(contentsOf: folder.appendingPathComponent("activations.npz"))
    let activationShapes = Dictionary(uniqueKeysWithValues: activations.map { ($0.name, $0.array.shape) })
    XCTAssertEqual(activationShapes["stem_out_tokens"], [4, 16, 64])
    XCTAssertEqual(activationShapes["pooled"], [4, 64])

    let erf = try NPZ.readFloats(
      contentsOf: fixturesDirectory.appendingPathComponent("reference/mixer-tiny-erf/params.npz"))
    XCTAssertEqual(erf.count, 30)
    XCTAssertEqual(erf["stem/kernel"]?.shape, [8, 8, 3, 64])
  }

  func testReadsDeflatedNumPyArchive() throws {
    let decoded = try NPZ.decode(numpyDeflatedNPZ)
    XCTAssertEqual(decoded.map(\.name), ["weights", "labels", "flag"])
    XCTAssertEqual(decoded[0].array.ndarray, NDArray(shape: [3, 4], data: (0..<12).map { Float($0) / 4 }))
    XCTAssertEqual(decoded[1].array.elementType, .int64)
    XCTAssertEqual(try decoded[1].array.int32s(), [3, 1, 4, 1, 5])
    XCTAssertEqual(decoded[2].array.elementType, .bool)
    XCTAssertEqual(decoded[2].array.shape, [])
    XCTAssertEqual(try decoded[2].array.ints(), [1])
  }

  func testReadsZip64CentralDirectory() throws {
    let files = try arrays.map { ($0.name + ".npy", try NPY.encode($0.array)) }
    for zip64 in [false, true] {
      let decoded = try NPZ.decode(buildStoredZip(files, zip64: zip64))
      XCTAssertEqual(decoded.map(\.array.ndarray), arrays.map(\.array), "zip64: \(zip64)")
    }
  }

  func testEntrySizeLimit() throws {
    let big = try NPZ.encode([("big", NDArray(shape: [1000], data: sampleFloats(1000)))])
    XCTAssertNoThrow(try NPZ.decode(big, maxEntryBytes: 4128))
    assertFormatError("exceeds the limit of 4000") { _ = try NPZ.decode(big, maxEntryBytes: 4000) }
    assertFormatError("exceeds the limit") { _ = try NPZ.decode(numpyDeflatedNPZ, maxEntryBytes: 100) }
  }

  func testDeclaredSizesAreEnforcedWhileInflating() throws {
    // A deflated entry that inflates to more than it declares (the zip-bomb pattern) stops at
    // the declared size; one that inflates to less is also an error.
    let central = numpyDeflatedNPZ.offsets(ofSignature: 0x0201_4b50)
    XCTAssertEqual(central.count, 3)
    var smaller = numpyDeflatedNPZ
    smaller.patchLE(central[0] + 24, UInt32(100))
    assertFormatError("inflates to more than its declared 100 bytes") { _ = try NPZ.decode(smaller) }
    var larger = numpyDeflatedNPZ
    larger.patchLE(central[0] + 24, UInt32(1_000))
    assertFormatError("holds 176 bytes, declared 1000") { _ = try NPZ.decode(larger) }
    var badCRC = numpyDeflatedNPZ
    badCRC.patchLE(central[1] + 16, UInt32(0))
    assertFormatError("labels.npy: CRC-32 mismatch") { _ = try NPZ.decode(badCRC) }
    var shortStream = numpyDeflatedNPZ
    shortStream.patchLE(central[0] + 20, UInt32(20))
    XCTAssertThrowsError(try NPZ.decode(shortStream))
  }

  func testMalformedArchivesThrow() throws {
    let npy = try NPY.encode(NDArray(shape: [2], data: [1, 2]))
    assertFormatError("too short") { _ = try NPZ.decode(Data("hello".utf8)) }
    assertFormatError("no end of central directory") { _ = try NPZ.decode(Data(count: 100)) }
    assertFormatError("x.txt: entry is not a .npy array") {
      _ = try NPZ.decode(buildStoredZip([("x.txt", npy)]))
    }
    assertFormatError(".npy: entry is not a .npy array") {
      _ = try NPZ.decode(buildStoredZip([(".npy", npy)]))
    }
    assertFormatError("appears twice") {
      _ = try NPZ.decode(buildStoredZip([("a.npy", npy), ("a.npy", npy)]))
    }
    assertFormatError("b.npy: payload is") {
      _ = try NPZ.decode(buildStoredZip([("a.npy", npy), ("b.npy", npy.dropLast(4))]))
    }
    let good = buildStoredZip([("a.npy", npy), ("b.npy", npy)])
    let central = good.offsets(ofSignature: 0x0201_4b50)
    let end = try XCTUnwrap(good.offsets(ofSignature: 0x0605_4b50).last)

    var overlapping = good
    overlapping.patchLE(central[1] + 42, UInt32(0))
    assertFormatError("local header name differs") { _ = try NPZ.decode(overlapping) }
    var sameName = buildStoredZip([("a.npy", npy), ("a.npy", npy)])
    sameName.patchLE(sameName.offsets(ofSignature: 0x0201_4b50)[1] + 42, UInt32(0))
    assertFormatError("entries overlap") { _ = try NPZ.decode(sameName) }
    var encrypted = good
    encrypted.patchLE(central[0] + 8, UInt16(1))
    assertFormatError("encrypted") { _ = try NPZ.decode(encrypted) }
    var bzip2 = good
    bzip2.patchLE(central[0] + 10, UInt16(12))
    assertFormatError("compression method 12") { _ = try NPZ.decode(bzip2) }
    var storedMismatch = good
    storedMismatch.patchLE(central[0] + 20, UInt32(3))
    assertFormatError("stored entry has compressed size 3") { _ = try NPZ.decode(storedMismatch) }
    var pastEnd = good
    pastEnd.patchLE(central[0] + 20, UInt32.max - 1)
    pastEnd.patchLE(central[0] + 24, UInt32.max - 1)
    assertFormatError("data runs past the end") { _ = try NPZ.decode(pastEnd, maxEntryBytes: Int.max) }
    var localMissing = good
    localMissing.patchLE(central[1] + 42, UInt32(good.count - 10))
    assertFormatError("local header at") { _ = try NPZ.decode(localMissing) }
    var directoryOutside = good
    directoryOutside.patchLE(end + 16, UInt32(0x7fff_0000))
    assertFormatError("outside the file") { _ = try NPZ.decode(directoryOutside) }
    var tooManyEntries = good
    tooManyEntries.patchLE(end + 8, UInt16(60_000))
    tooManyEntries.patchLE(end + 10, UInt16(60_000))
    assertFormatError("cannot fit") { _ = try NPZ.decode(tooManyEntries) }
    var longName = good
    longName.patchLE(central[1] + 28, UInt16(60_000))
    assertFormatError("runs past the directory") { _ = try NPZ.decode(longName) }
    var zip64WithoutLocator = good
    zip64WithoutLocator.patchLE(end + 16, UInt32.max)
    assertFormatError("locator is missing") { _ = try NPZ.decode(zip64WithoutLocator) }

    let zip64 = buildStoredZip([("a.npy", npy)], zip64: true)
    let zip64Central = zip64.offsets(ofSignature: 0x0201_4b50)[0]
    var hugeOffset = zip64
    hugeOffset.patchLE(zip64Central + 46 + 5 + 4 + 16, UInt64.max)
    assertFormatError("local header offset 18446744073709551615 is out of range") {
      _ = try NPZ.decode(hugeOffset)
    }
    var hugeSize = zip64
    hugeSize.patchLE(zip64Central + 46 + 5 + 4, UInt64(1) << 62)
    assertFormatError("exceeds the limit") { _ = try NPZ.decode(hugeSize) }
    var noExtra = zip64
    noExtra.patchLE(zip64Central + 46 + 5, UInt16(7))
    assertFormatError("extra field is missing") { _ = try NPZ.decode(noExtra) }
    var shortExtra = zip64
    shortExtra.patchLE(zip64Central + 46 + 5 + 2, UInt16(8))
    assertFormatError("lacks the compressed size") { _ = try NPZ.decode(shortExtra) }
    let record = try XCTUnwrap(zip64.offsets(ofSignature: 0x0606_4b50).first)
    var recordCount = zip64
    recordCount.patchLE(record + 32, UInt64.max)
    assertFormatError("multi-disk") { _ = try NPZ.decode(recordCount) }
    recordCount.patchLE(record + 24, UInt64.max)
    assertFormatError("entry count 18446744073709551615 is out of range") { _ = try NPZ.decode(recordCount) }
  }

  func testEveryTruncationThrows() throws {
    for archive in [try NPZ.encode([("a", NDArray(shape: [3], data: [1, 2, 3]))]), numpyDeflatedNPZ] {
      for length in 0..<archive.count {
        XCTAssertThrowsError(try NPZ.decode(archive.prefix(length)), "prefix of \(length) bytes")
      }
    }
  }

  func testBitFlipsNeverCrashOrChangeWhatIsRead() throws {
    // CRC-32 catches every single-bit change of an entry's contents, so a flipped archive either
    // throws or (flips in ignored fields, or in the unused bits of a deflate stream) reads back
    // exactly the original arrays.
    for archive in [try NPZ.encode([("a", NDArray(shape: [3], data: [1, 2, 3]))]), numpyDeflatedNPZ] {
      let original = try NPZ.decode(archive)
      var failures = 0
      for bit in 0..<(archive.count * 8) {
        do {
          let decoded = try NPZ.decode(flipping(archive, bit: bit))
          XCTAssertEqual(decoded.map(\.name), original.map(\.name), "flip of bit \(bit)")
          XCTAssertEqual(
            decoded.map(\.array.elementType), original.map(\.array.elementType), "flip of bit \(bit)")
          XCTAssertEqual(decoded.map(\.array.ndarray), original.map(\.array.ndarray), "flip of bit \(bit)")
        } catch {
          failures += 1
        }
      }
      XCTAssertGreaterThan(failures, archive.count * 8 / 2)
    }
  }
}
