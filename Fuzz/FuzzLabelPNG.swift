// FuzzLabelPNG.swift: libFuzzer entry point for the label-mask PNG decoder (`decodeLabelPNG`:
// the chunk walk with its CRC and order checks, IHDR validation, zlib inflate, row unfiltering,
// unpacking of 1/2/4/8/16-bit samples). Every input must either throw an ImageDecodeError or
// decode to width, height ≥ 1 with width·height values, each `SegmentationMask.ignore` (-1) or a
// class in 0...65534. The decoder reads libFuzzer's own buffer (no copy), so AddressSanitizer
// sees a read past its end. Built by run.sh against MixerData (instrumented for coverage) and
// MixerKernels.
//
// A custom mutator gets the mutations past the two checksums, which would otherwise reject nearly
// every mutant before the decoder does any work: it rewrites each chunk's CRC after a mutation
// (except in 1 of 8, so the CRC check still sees bad ones), and in 3 of 8 it mutates the inflated
// image data instead of the bytes (LLVMFuzzerMutate on the rows, or a new shape/depth/colour type
// in IHDR with the rows resized and given random filter types) and compresses it again with zlib,
// which writes a correct Adler-32, split over 1-3 IDAT chunks. Seeds: make_seeds.py.

import CMixerZlib
import Foundation
import MixerData

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLabelPNG(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  do {
    let (width, height, values) = try decodeLabelPNG(UnsafeRawBufferPointer(start: start, count: count))
    precondition(width >= 1 && height >= 1, "decoded a \(width)x\(height) mask")
    let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
    precondition(!overflow && values.count == pixels, "\(values.count) values for a \(width)x\(height) mask")
    if let value = values.first(where: { $0 != SegmentationMask.ignore && !(0...65534).contains($0) }) {
      fatalError("decoded the class \(value), neither SegmentationMask.ignore nor in 0...65534")
    }
  } catch is ImageDecodeError {
  } catch {
    fatalError("unexpected error type \(type(of: error)): \(error)")
  }
  return 0
}

/// libFuzzer's own mutator (size_t LLVMFuzzerMutate(uint8_t *, size_t, size_t)); pointer and
/// integer arguments are passed the same way by the Swift and C conventions.
@_silgen_name("LLVMFuzzerMutate")
func libFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

@_cdecl("LLVMFuzzerCustomMutator")
public func fuzzLabelPNGMutate(
  _ data: UnsafeMutablePointer<UInt8>?, _ size: Int, _ maxSize: Int, _ seed: CUnsignedInt
) -> Int {
  guard let data, maxSize > 0 else { return 0 }
  var random = SplitMix64(seed: UInt64(seed))
  let choice = random.next() % 8
  var count = 0
  if choice < 3, let png = mutateImageData(Array(UnsafeBufferPointer(start: data, count: size)), &random),
    png.count <= maxSize
  {
    png.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: png.count) }
    count = png.count
  } else {
    count = libFuzzerMutate(data, size, maxSize)
  }
  if choice != 7 { fixChunkCRCs(UnsafeMutableBufferPointer(start: data, count: count)) }
  return count
}

/// Rewrites the CRC of every complete chunk after the 8-byte signature (whatever the signature).
private func fixChunkCRCs(_ png: UnsafeMutableBufferPointer<UInt8>) {
  var offset = 8
  while png.count - offset >= 12 {
    let length = Int(bigEndian32(png, at: offset))
    guard png.count - offset - 12 >= length else { return }
    let crc = crc32(0, png.baseAddress! + offset + 4, uInt(length + 4))
    for i in 0..<4 { png[offset + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * i)) }
    offset += 12 + length
  }
}

private func bigEndian32<C: Collection>(_ bytes: C, at offset: Int) -> UInt32
where C.Element == UInt8, C.Index == Int {
  (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) }
}

/// Inflates the IDAT data of `png`, mutates it (and maybe IHDR), and compresses it into new IDAT
/// chunks (CRCs left to the caller). Nil when `png` has no complete IHDR + IDAT to work on.
private func mutateImageData(_ png: [UInt8], _ random: inout SplitMix64) -> [UInt8]? {
  // The chunks' bounds, without any checks beyond fitting in the bytes.
  var chunks: [(type: String, start: Int, end: Int)] = []
  var offset = 8
  while png.count - offset >= 12 {
    let length = Int(bigEndian32(png, at: offset))
    guard png.count - offset - 12 >= length else { break }
    chunks.append((String(decoding: png[offset + 4..<offset + 8], as: UTF8.self), offset, offset + 12 + length))
    offset += 12 + length
  }
  guard let ihdr = chunks.first, ihdr.type == "IHDR", ihdr.end - ihdr.start == 25,
    let first = chunks.firstIndex(where: { $0.type == "IDAT" }),
    let last = chunks.lastIndex(where: { $0.type == "IDAT" })
  else { return nil }
  var header = Array(png[ihdr.start + 8..<ihdr.start + 21])
  var rows = inflatePrefix(chunks[first...last].filter { $0.type == "IDAT" }
    .flatMap { png[$0.start + 8..<$0.end - 4] }, limit: 1 << 20)

  if random.next() % 2 == 0 {
    // LLVMFuzzerMutate on the rows, with room to grow.
    let capacity = min(1 << 20, max(64, 2 * rows.count))
    let used = rows.count
    rows += [UInt8](repeating: 0, count: capacity - used)
    let size = rows.withUnsafeMutableBufferPointer { libFuzzerMutate($0.baseAddress!, used, capacity) }
    rows.removeLast(capacity - size)
  } else {
    // A new shape, bit depth and colour type (mostly small, sometimes up to the largest side),
    // and rows of that size with random filter types and some random bytes.
    let formats: [(colour: UInt8, depth: UInt8)] =
      [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (3, 1), (3, 2), (3, 4), (3, 8)]
    let format = formats[Int(random.next() % UInt64(formats.count))]
    let side = { (random: inout SplitMix64) -> Int in
      random.next() % 16 == 0 ? Int(random.next() % (1 << 15)) + 1 : Int(random.next() % 40) + 1
    }
    var (width, height) = (side(&random), side(&random))
    if width * height > 1 << 18 { height = 1 }  // keep the inflated rows at most ~1 MiB
    if random.next() % 4 == 0 {
      (width, height) = (Int(bigEndian32(header, at: 0)), Int(bigEndian32(header, at: 4)))
    } else {
      for i in 0..<4 {
        header[i] = UInt8(truncatingIfNeeded: width >> (24 - 8 * i))
        header[4 + i] = UInt8(truncatingIfNeeded: height >> (24 - 8 * i))
      }
      (header[8], header[9]) = (format.depth, format.colour)
    }
    let rowBytes = (min(width, 1 << 15) * Int(header[8]) + 7) / 8
    let count = min(1 << 20, min(height, 1 << 15) * (rowBytes + 1))
    rows += [UInt8](repeating: 0, count: max(0, count - rows.count))
    rows.removeLast(rows.count - count)
    for _ in 0..<Int(random.next() % 8) where count > 0 {
      rows[Int(random.next() % UInt64(count))] = UInt8(truncatingIfNeeded: random.next())
    }
    for row in stride(from: 0, to: count, by: rowBytes + 1) {
      rows[row] = UInt8(random.next() % (random.next() % 32 == 0 ? 256 : 5))
    }
  }

  var compressed = [UInt8](repeating: 0, count: Int(compressBound(uLong(rows.count))))
  var compressedCount = uLongf(compressed.count)
  guard compress2(&compressed, &compressedCount, rows, uLong(rows.count), Int32(random.next() % 10)) == Z_OK
  else { return nil }
  compressed.removeLast(compressed.count - Int(compressedCount))

  var result = Array(png[..<8]) + chunk("IHDR", header)
  result += png[ihdr.end..<chunks[first].start]
  let parts = Int(random.next() % 3) + 1
  for k in 0..<parts {
    result += chunk("IDAT", Array(compressed[compressed.count * k / parts..<compressed.count * (k + 1) / parts]))
  }
  return result + png[chunks[last].end...]
}

/// A chunk with a zero CRC (fixChunkCRCs writes it).
private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
  (0..<4).map { UInt8(truncatingIfNeeded: data.count >> (24 - 8 * $0)) } + Array(type.utf8) + data + [0, 0, 0, 0]
}

/// What a (possibly corrupt) zlib stream inflates to before its first error, at most `limit` bytes.
/// The output grows as it fills (allocating `limit` bytes up front made each mutation slow).
private func inflatePrefix(_ compressed: [UInt8], limit: Int) -> [UInt8] {
  var stream = z_stream()
  guard inflateInit2_(&stream, 15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return [] }
  defer { inflateEnd(&stream) }
  var output = [UInt8](repeating: 0, count: min(limit, max(4096, 8 * compressed.count)))
  var input = compressed
  var produced = 0
  input.withUnsafeMutableBufferPointer { source in
    stream.next_in = source.baseAddress
    stream.avail_in = uInt(source.count)
    while true {
      let status = output.withUnsafeMutableBufferPointer { target -> Int32 in
        stream.next_out = target.baseAddress! + produced
        stream.avail_out = uInt(target.count - produced)
        let status = inflate(&stream, Z_NO_FLUSH)
        produced = target.count - Int(stream.avail_out)
        return status
      }
      guard status == Z_OK, produced == output.count, output.count < limit else { return }
      output += repeatElement(0, count: min(output.count, limit - output.count))
    }
  }
  output.removeLast(output.count - produced)
  return output
}

/// SplitMix64, seeded by libFuzzer for each mutation so runs repeat.
struct SplitMix64 {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
