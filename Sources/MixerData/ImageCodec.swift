// Image files to 8-bit RGB and back: JPEG through TurboJPEG, PNG through libpng's simplified API.
// Every call into the two C libraries is in this file.
//
// Decoding detects the format from the first bytes, not the file name (ImageNet holds a PNG and
// several CMYK JPEGs named `.JPEG`). Grayscale becomes RGB by copying the one channel; an alpha
// channel is dropped (as PIL's `convert("RGB")` and `tf.io.decode_png(channels=3)` do); CMYK JPEGs
// are converted with the Adobe (inverted) convention, R = C·K/255. A JPEG is refused when
// TurboJPEG reports a fatal error or a premature end of data (a truncated file, which TurboJPEG
// would otherwise pad with grey); other TurboJPEG warnings, such as extraneous bytes before a
// marker, are accepted as PIL and TensorFlow accept them.
//
// JPEGs can be decoded at a reduced size (TurboJPEG's DCT scaling, factors M/8): the caller says
// how small the image may get, and the decoder picks the smallest factor that keeps at least that
// scale. It is much cheaper than decoding at full size and averages pixels rather than skipping them.
//
// Every PNG the project writes goes through `encodePNG` (dataset grids, predicted masks); the JPEG
// encoder exists for the tests and the loader benchmark, which write their own files.

import CPNG
import CTurboJPEG
import Foundation

/// An 8-bit RGB image, pixels `[height, width, 3]` row-major.
public struct RGBImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  /// `[height, width, 3]`, R, G, B.
  public var pixels: [UInt8]

  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height * 3, "RGBImage needs width·height·3 bytes")
    self.width = width
    self.height = height
    self.pixels = pixels
  }
}

/// Why an image file could not be decoded.
public struct ImageDecodeError: Error, Equatable, CustomStringConvertible {
  public let reason: String
  public init(_ reason: String) { self.reason = reason }
  public var description: String { reason }
}

/// The image formats the decoder reads.
public enum ImageFormat: String, Sendable {
  case jpeg, png

  /// The format of encoded bytes, from their signature; nil when neither.
  public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
    if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
    let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    if bytes.count >= 8 && zip(png, bytes.prefix(8)).allSatisfy({ $0 == $1 }) { return .png }
    return nil
  }
}

/// The largest side any decoded image may have (a guard against corrupt headers).
let maximumImageSide = 1 << 15

/// Checks an encoded image without decoding its pixels: a JPEG's header (through TurboJPEG) and its
/// end-of-image marker, a PNG's IHDR and its final IEND chunk, and the size either declares.
/// Catches files that are empty, of another format, truncated or of an absurd size; returns the
/// declared size.
public func checkImageHeader(_ bytes: UnsafeRawBufferPointer) throws -> (width: Int, height: Int) {
  func fits(_ width: Int, _ height: Int, _ format: String) throws -> (width: Int, height: Int) {
    guard width > 0 && height > 0 && width <= maximumImageSide && height <= maximumImageSide else {
      throw ImageDecodeError("\(format) of unsupported size \(width)x\(height)")
    }
    return (width, height)
  }
  switch ImageFormat.detect(bytes) {
  case .jpeg:
    guard let handle = tjInitDecompress() else { throw ImageDecodeError("TurboJPEG could not create a decompressor") }
    defer { tjDestroy(handle) }
    var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
    let source = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
    if tjDecompressHeader3(handle, source, UInt(bytes.count), &width, &height, &subsampling, &colorspace) != 0 {
      throw ImageDecodeError("corrupt JPEG header: \(jpegMessage(handle))")
    }
    // the end-of-image marker (some writers pad after it)
    guard bytes.suffix(64).indices.contains(where: { $0 + 1 < bytes.count && bytes[$0] == 0xFF && bytes[$0 + 1] == 0xD9 }) else {
      throw ImageDecodeError("truncated JPEG (no end-of-image marker)")
    }
    return try fits(Int(width), Int(height), "JPEG")
  case .png:
    func be32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 << 8 | Int(bytes[at + $1]) } }
    guard bytes.count >= 8 + 25 + 12, bytes[12] == 0x49, bytes[13] == 0x48, bytes[14] == 0x44, bytes[15] == 0x52 else {
      throw ImageDecodeError("truncated PNG (no IHDR)")
    }
    let end = bytes.count - 12
    guard bytes[end + 4] == 0x49, bytes[end + 5] == 0x45, bytes[end + 6] == 0x4E, bytes[end + 7] == 0x44 else {
      throw ImageDecodeError("truncated PNG (no IEND at the end)")
    }
    return try fits(be32(16), be32(20), "PNG")
  case nil:
    let head = bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
    throw ImageDecodeError(bytes.isEmpty ? "empty file" : "not a JPEG or PNG file (starts with \(head))")
  }
}

/// Decodes a JPEG or PNG into RGB. `minimumScale`, given the full width and height, returns how
/// far a JPEG may be scaled down (1: full size; 0.3: any factor ≥ 0.3); PNGs are always decoded
/// at full size. Returns the image and its full-size dimensions.
public func decodeImage(
  _ bytes: UnsafeRawBufferPointer, minimumScale: ((_ width: Int, _ height: Int) -> Double)? = nil
) throws -> (image: RGBImage, fullWidth: Int, fullHeight: Int) {
  switch ImageFormat.detect(bytes) {
  case .jpeg:
    return try decodeJPEG(bytes, minimumScale: minimumScale)
  case .png:
    let image = try decodePNG(bytes)
    return (image, image.width, image.height)
  case nil:
    let head = bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
    throw ImageDecodeError(
      bytes.isEmpty ? "empty file" : "not a JPEG or PNG file (starts with \(head))")
  }
}

/// Decodes a JPEG through TurboJPEG, optionally DCT-scaled (see `decodeImage`).
func decodeJPEG(
  _ bytes: UnsafeRawBufferPointer, minimumScale: ((Int, Int) -> Double)? = nil
) throws -> (image: RGBImage, fullWidth: Int, fullHeight: Int) {
  guard let handle = tjInitDecompress() else {
    throw ImageDecodeError("TurboJPEG could not create a decompressor")
  }
  defer { tjDestroy(handle) }
  let source = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
  var width: Int32 = 0
  var height: Int32 = 0
  var subsampling: Int32 = 0
  var colorspace: Int32 = 0
  if tjDecompressHeader3(
    handle, source, UInt(bytes.count), &width, &height, &subsampling, &colorspace) != 0
  {
    throw ImageDecodeError("corrupt JPEG header: \(jpegMessage(handle))")
  }
  guard width > 0 && height > 0 && width <= maximumImageSide && height <= maximumImageSide else {
    throw ImageDecodeError("JPEG of unsupported size \(width)x\(height)")
  }
  let factor = jpegScalingFactor(
    minimumScale: minimumScale?(Int(width), Int(height)) ?? 1)
  let outWidth = scaled(Int(width), factor)
  let outHeight = scaled(Int(height), factor)
  let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
  let channels = cmyk ? 4 : 3
  let format = cmyk ? TJPF_CMYK : TJPF_RGB
  var decoded = [UInt8](repeating: 0, count: outWidth * outHeight * channels)
  let status = decoded.withUnsafeMutableBufferPointer {
    tjDecompress2(
      handle, source, UInt(bytes.count), $0.baseAddress, Int32(outWidth), 0, Int32(outHeight),
      Int32(format.rawValue), 0)
  }
  if status != 0 {
    let message = jpegMessage(handle)
    let fatal = tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue)
    if fatal || message.contains("Premature end") {
      throw ImageDecodeError(
        message.contains("Premature end")
          ? "truncated JPEG (\(message))" : "corrupt JPEG: \(message)")
    }
  }
  if cmyk {
    var rgb = [UInt8](repeating: 0, count: outWidth * outHeight * 3)
    for p in 0..<outWidth * outHeight {
      let k = UInt16(decoded[4 * p + 3])
      for c in 0..<3 { rgb[3 * p + c] = UInt8((UInt16(decoded[4 * p + c]) * k + 127) / 255) }
    }
    decoded = rgb
  }
  return (RGBImage(width: outWidth, height: outHeight, pixels: decoded), Int(width), Int(height))
}

/// The scaling factors used: 1/2, 1/4 and 1/8 have SIMD inverse DCTs in libjpeg-turbo; the other
/// M/8 factors are slower than decoding at full size (measured: 655 vs 722 images/s).
private let jpegShrinkFactors: [(num: Int, den: Int)] = [(1, 1), (1, 2), (1, 4), (1, 8)]

/// The smallest TurboJPEG factor that is at least `minimumScale` (1/1 when none shrinks).
func jpegScalingFactor(minimumScale: Double) -> (num: Int, den: Int) {
  var chosen = (num: 1, den: 1)
  for factor in jpegShrinkFactors where Double(factor.num) / Double(factor.den) >= minimumScale {
    chosen = factor
  }
  return chosen
}

/// TJSCALED: a dimension scaled by a factor, rounded up.
private func scaled(_ dimension: Int, _ factor: (num: Int, den: Int)) -> Int {
  (dimension * factor.num + factor.den - 1) / factor.den
}

private func jpegMessage(_ handle: tjhandle) -> String {
  tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown TurboJPEG error"
}

/// Decodes a PNG through libpng's simplified API: gray, palette and 16-bit images come out as
/// 8-bit RGB; an alpha channel is dropped.
func decodePNG(_ bytes: UnsafeRawBufferPointer) throws -> RGBImage {
  var image = png_image()
  image.version = png_uint_32(PNG_IMAGE_VERSION)
  defer { png_image_free(&image) }
  guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
    throw ImageDecodeError("corrupt PNG: \(pngMessage(&image))")
  }
  let width = Int(image.width)
  let height = Int(image.height)
  guard width > 0 && height > 0 && width <= maximumImageSide && height <= maximumImageSide else {
    throw ImageDecodeError("PNG of unsupported size \(width)x\(height)")
  }
  let hasAlpha = image.format & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0
  let channels = hasAlpha ? 4 : 3
  image.format = png_uint_32(hasAlpha ? pngFormatRGBA : PNG_FORMAT_RGB)
  var decoded = [UInt8](repeating: 0, count: width * height * channels)
  let status = decoded.withUnsafeMutableBytes {
    png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * channels), nil)
  }
  guard status != 0 else {
    throw ImageDecodeError("corrupt or truncated PNG: \(pngMessage(&image))")
  }
  if hasAlpha {
    var rgb = [UInt8](repeating: 0, count: width * height * 3)
    for p in 0..<width * height {
      rgb[3 * p] = decoded[4 * p]
      rgb[3 * p + 1] = decoded[4 * p + 1]
      rgb[3 * p + 2] = decoded[4 * p + 2]
    }
    decoded = rgb
  }
  return RGBImage(width: width, height: height, pixels: decoded)
}

/// PNG_FORMAT_RGBA, a macro over other macros that does not import into Swift.
private let pngFormatRGBA = PNG_FORMAT_RGB | PNG_FORMAT_FLAG_ALPHA

private func pngMessage(_ image: inout png_image) -> String {
  withUnsafeBytes(of: &image.message) { raw in
    let text = raw.prefix(while: { $0 != 0 })
    return text.isEmpty ? "unknown libpng error" : String(decoding: text, as: UTF8.self)
  }
}

// MARK: - Encoders (PNG for every file the project writes; both for test and benchmark images)

/// Encodes 8-bit pixels (`channels` 1 = gray, 3 = RGB, 4 = CMYK, row-major) as a baseline JPEG
/// (CMYK is stored as YCCK, as Adobe applications write it).
public func encodeJPEG(
  pixels: [UInt8], width: Int, height: Int, channels: Int = 3, quality: Int = 90
) throws -> [UInt8] {
  precondition([1, 3, 4].contains(channels), "JPEG encoding takes gray, RGB or CMYK")
  precondition(pixels.count == width * height * channels)
  guard let handle = tjInitCompress() else {
    throw ImageDecodeError("TurboJPEG could not create a compressor")
  }
  defer { tjDestroy(handle) }
  var output: UnsafeMutablePointer<UInt8>?
  var size: UInt = 0
  let format = [1: TJPF_GRAY, 3: TJPF_RGB, 4: TJPF_CMYK][channels]!
  let subsampling = channels == 1 ? TJSAMP_GRAY : channels == 4 ? TJSAMP_444 : TJSAMP_420
  let status = pixels.withUnsafeBufferPointer {
    tjCompress2(
      handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(format.rawValue), &output,
      &size, Int32(subsampling.rawValue), Int32(quality), 0)
  }
  defer { if let output { tjFree(output) } }
  guard status == 0, let output else {
    throw ImageDecodeError("JPEG encoding failed: \(jpegMessage(handle))")
  }
  return Array(UnsafeBufferPointer(start: output, count: Int(size)))
}

/// Encodes 8-bit pixels as a PNG; `channels` 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
public func encodePNG(pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> [UInt8] {
  precondition((1...4).contains(channels) && pixels.count == width * height * channels)
  var image = png_image()
  image.version = png_uint_32(PNG_IMAGE_VERSION)
  image.width = png_uint_32(width)
  image.height = png_uint_32(height)
  let formats: [png_uint_32] = [
    png_uint_32(PNG_FORMAT_GRAY), png_uint_32(PNG_FORMAT_GA), png_uint_32(PNG_FORMAT_RGB),
    png_uint_32(pngFormatRGBA),
  ]
  image.format = formats[channels - 1]
  defer { png_image_free(&image) }
  var size = 0
  let stride = Int32(width * channels)
  let probe = pixels.withUnsafeBytes {
    png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil)
  }
  guard probe != 0 else { throw ImageDecodeError("PNG encoding failed: \(pngMessage(&image))") }
  var output = [UInt8](repeating: 0, count: size)
  let status = output.withUnsafeMutableBytes { out in
    pixels.withUnsafeBytes {
      png_image_write_to_memory(&image, out.baseAddress, &size, 0, $0.baseAddress, stride, nil)
    }
  }
  guard status != 0 else { throw ImageDecodeError("PNG encoding failed: \(pngMessage(&image))") }
  return Array(output.prefix(size))
}

// MARK: - Files

/// The bytes of a file (POSIX reads: safe from any thread).
func readFileBytes(_ path: String) throws -> [UInt8] {
  let descriptor = open(path, O_RDONLY)
  guard descriptor >= 0 else {
    throw ImageDecodeError("cannot open: \(String(cString: strerror(errno)))")
  }
  defer { close(descriptor) }
  var info = stat()
  guard fstat(descriptor, &info) == 0 else {
    throw ImageDecodeError("cannot stat: \(String(cString: strerror(errno)))")
  }
  let size = Int(info.st_size)
  var bytes = [UInt8](repeating: 0, count: size)
  var done = 0
  while done < size {
    let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + done, size - done) }
    if got < 0 && errno == EINTR { continue }
    guard got > 0 else {
      throw ImageDecodeError("read failed after \(done) of \(size) bytes")
    }
    done += got
  }
  return bytes
}
