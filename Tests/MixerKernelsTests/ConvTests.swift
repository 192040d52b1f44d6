// tokenConvForward and imageConvForward against a naive direct convolution in Double; their
// backwards (which accumulate) against central differences of that reference; the NHWC ↔
// token-major permutations round-trip, and a stride-1 image conv equals the token conv on the
// same grid.

import MixerKernels
import MixerTestSupport
import XCTest

/// The token-grid convolution of `[S, B, Cin]` with HWIO `[K, K, Cin, Cout]`, written directly.
private func tokenConvReference(
  _ inp: [Double], weight: [Double], bias: [Double], gridHeight: Int, gridWidth: Int, batch: Int,
  inChannels: Int, outChannels: Int, kernel: Int
) -> [Double] {
  let pad = (kernel - 1) / 2
  var out = [Double](repeating: 0, count: gridHeight * gridWidth * batch * outChannels)
  for gy in 0..<gridHeight {
    for gx in 0..<gridWidth {
      for b in 0..<batch {
        for co in 0..<outChannels {
          var sum = bias[co]
          for ky in 0..<kernel {
            for kx in 0..<kernel {
              let y = gy + ky - pad, x = gx + kx - pad
              guard y >= 0 && y < gridHeight && x >= 0 && x < gridWidth else { continue }
              for ci in 0..<inChannels {
                let input = inp[((y * gridWidth + x) * batch + b) * inChannels + ci]
                sum += input * weight[((ky * kernel + kx) * inChannels + ci) * outChannels + co]
              }
            }
          }
          out[((gy * gridWidth + gx) * batch + b) * outChannels + co] = sum
        }
      }
    }
  }
  return out
}

/// The strided NHWC convolution of `[B, H, W, Cin]` with HWIO `[K, K, Cin, Cout]`, pad (K − 1)/2.
private func imageConvReference(
  _ inp: [Double], weight: [Double], bias: [Double], batch: Int, height: Int, width: Int,
  inChannels: Int, outChannels: Int, kernel: Int, stride: Int
) -> [Double] {
  let pad = (kernel - 1) / 2
  let outHeight = height / stride, outWidth = width / stride
  var out = [Double](repeating: 0, count: batch * outHeight * outWidth * outChannels)
  for b in 0..<batch {
    for oy in 0..<outHeight {
      for ox in 0..<outWidth {
        for co in 0..<outChannels {
          var sum = bias[co]
          for ky in 0..<kernel {
            for kx in 0..<kernel {
              let y = oy * stride + ky - pad, x = ox * stride + kx - pad
              guard y >= 0 && y < height && x >= 0 && x < width else { continue }
              for ci in 0..<inChannels {
                let input = inp[((b * height + y) * width + x) * inChannels + ci]
                sum += input * weight[((ky * kernel + kx) * inChannels + ci) * outChannels + co]
              }
            }
          }
          out[((b * outHeight + oy) * outWidth + ox) * outChannels + co] = sum
        }
      }
    }
  }
  return out
}

final class ConvTests: XCTestCase {
  private let batch = 2, inChannels = 3, outChannels = 4

  /// Token grids (gridH, gridW, K): non-square grids, K = 1, and K = 5 wider than the 2-row grid.
  private let tokenShapes = [(3, 4, 3), (2, 5, 3), (3, 4, 1), (2, 5, 5)]

  /// Images (H, W, K, stride): stride 2 on 6×8, K = 1, stride 1, and stride 3 with K = 5.
  private let imageShapes = [(6, 8, 3, 2), (6, 8, 1, 2), (4, 6, 3, 1), (6, 9, 5, 3)]

  func testTokenConvForwardMatchesDirectConvolution() {
    var random = TestRandom(seed: 60)
    for (gridH, gridW, k) in tokenShapes {
      let s = gridH * gridW
      let inp = random.floats(s * batch * inChannels, in: -1...1)
      let weight = random.floats(k * k * inChannels * outChannels, in: -1...1)
      let bias = random.floats(outChannels, in: -1...1)
      var out = [Float](repeating: .nan, count: s * batch * outChannels)
      var columns = [Float](
        repeating: .nan,
        count: tokenConvColumnsCount(
          gridHeight: gridH, gridWidth: gridW, batch: batch, inChannels: inChannels, kernel: k))
      tokenConvForward(
        out: &out, columns: &columns, inp: inp, weight: weight, bias: bias, gridHeight: gridH,
        gridWidth: gridW, batch: batch, inChannels: inChannels, outChannels: outChannels,
        kernel: k)
      let reference = tokenConvReference(
        inp.doubles, weight: weight.doubles, bias: bias.doubles, gridHeight: gridH,
        gridWidth: gridW, batch: batch, inChannels: inChannels, outChannels: outChannels,
        kernel: k)
      assertClose(
        out, reference, relative: 1e-5, absolute: 1e-5, "token conv out \(gridH)×\(gridW) K \(k)")
    }
  }

  func testTokenConvBackwardMatchesFiniteDifferencesAndAccumulates() {
    var random = TestRandom(seed: 61)
    for (gridH, gridW, k) in tokenShapes {
      let s = gridH * gridW
      let inp = random.floats(s * batch * inChannels, in: -1...1)
      let weight = random.floats(k * k * inChannels * outChannels, in: -1...1)
      let bias = random.floats(outChannels, in: -1...1)
      let w = random.floats(s * batch * outChannels, in: -1...1)  // L = Σ w·out, so dout = w
      let columnsCount = tokenConvColumnsCount(
        gridHeight: gridH, gridWidth: gridW, batch: batch, inChannels: inChannels, kernel: k)
      var out = [Float](repeating: 0, count: s * batch * outChannels)
      var columns = [Float](repeating: 0, count: columnsCount)
      tokenConvForward(
        out: &out, columns: &columns, inp: inp, weight: weight, bias: bias, gridHeight: gridH,
        gridWidth: gridW, batch: batch, inChannels: inChannels, outChannels: outChannels,
        kernel: k)

      // Pre-filled gradients: backward must add to them.
      let dinp0 = random.floats(inp.count, in: -1...1)
      let dweight0 = random.floats(weight.count, in: -1...1)
      let dbias0 = random.floats(bias.count, in: -1...1)
      var dinp = dinp0
      var dweight = dweight0
      var dbias = dbias0
      var scratch = [Float](repeating: .nan, count: columnsCount)
      tokenConvBackward(
        dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: w, columns: columns, weight: weight,
        scratch: &scratch, gridHeight: gridH, gridWidth: gridW, batch: batch,
        inChannels: inChannels, outChannels: outChannels, kernel: k)

      let (inpD, weightD, biasD, wD) = (inp.doubles, weight.doubles, bias.doubles, w.doubles)
      func loss(_ inp: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
        dot(
          wD,
          tokenConvReference(
            inp, weight: weight, bias: bias, gridHeight: gridH, gridWidth: gridW, batch: batch,
            inChannels: inChannels, outChannels: outChannels, kernel: k))
      }
      let gradInp = centralDifferences(at: inpD) { loss($0, weightD, biasD) }
      let gradWeight = centralDifferences(at: weightD) { loss(inpD, $0, biasD) }
      let gradBias = centralDifferences(at: biasD) { loss(inpD, weightD, $0) }
      let shape = "\(gridH)×\(gridW) K \(k)"
      assertClose(dinp, add(dinp0, gradInp), relative: 1e-4, absolute: 1e-5, "dinp \(shape)")
      assertClose(
        dweight, add(dweight0, gradWeight), relative: 1e-4, absolute: 1e-5, "dweight \(shape)")
      assertClose(dbias, add(dbias0, gradBias), relative: 1e-4, absolute: 1e-5, "dbias \(shape)")

      // The header allows scratch to be the columns buffer itself: same gradients, bit for bit.
      var dinpAliased = dinp0
      var dweightAliased = dweight0
      var dbiasAliased = dbias0
      var shared = columns
      shared.withUnsafeMutableBufferPointer { buffer in
        tokenConvBackward(
          dinp: &dinpAliased, dweight: &dweightAliased, dbias: &dbiasAliased, dout: w,
          columns: buffer.baseAddress!, weight: weight, scratch: buffer.baseAddress!,
          gridHeight: gridH, gridWidth: gridW, batch: batch, inChannels: inChannels,
          outChannels: outChannels, kernel: k)
      }
      XCTAssertEqual(dinpAliased, dinp, "dinp with scratch = columns, \(shape)")
      XCTAssertEqual(dweightAliased, dweight, "dweight with scratch = columns, \(shape)")
      XCTAssertEqual(dbiasAliased, dbias, "dbias with scratch = columns, \(shape)")
    }
  }

  func testImageConvForwardMatchesDirectConvolution() {
    var random = TestRandom(seed: 62)
    for (h, wd, k, stride) in imageShapes {
      let inp = random.floats(batch * h * wd * inChannels, in: -1...1)
      let weight = random.floats(k * k * inChannels * outChannels, in: -1...1)
      let bias = random.floats(outChannels, in: -1...1)
      var out = [Float](repeating: .nan, count: batch * (h / stride) * (wd / stride) * outChannels)
      var columns = [Float](
        repeating: .nan,
        count: imageConvColumnsCount(
          batch: batch, height: h, width: wd, inChannels: inChannels, kernel: k, stride: stride))
      imageConvForward(
        out: &out, columns: &columns, inp: inp, weight: weight, bias: bias, batch: batch,
        height: h, width: wd, inChannels: inChannels, outChannels: outChannels, kernel: k,
        stride: stride)
      let reference = imageConvReference(
        inp.doubles, weight: weight.doubles, bias: bias.doubles, batch: batch, height: h,
        width: wd, inChannels: inChannels, outChannels: outChannels, kernel: k, stride: stride)
      assertClose(
        out, reference, relative: 1e-5, absolute: 1e-5,
        "image conv out \(h)×\(wd) K \(k) stride \(stride)")
    }
  }

  func testImageConvBackwardMatchesFiniteDifferencesAndAccumulates() {
    var random = TestRandom(seed: 63)
    for (h, wd, k, stride) in imageShapes {
      let inp = random.floats(batch * h * wd * inChannels, in: -1...1)
      let weight = random.floats(k * k * inChannels * outChannels, in: -1...1)
      let bias = random.floats(outChannels, in: -1...1)
      let outCount = batch * (h / stride) * (wd / stride) * outChannels
      let w = random.floats(outCount, in: -1...1)  // L = Σ w·out, so dout = w
      let columnsCount = imageConvColumnsCount(
        batch: batch, height: h, width: wd, inChannels: inChannels, kernel: k, stride: stride)
      var out = [Float](repeating: 0, count: outCount)
      var columns = [Float](repeating: 0, count: columnsCount)
      imageConvForward(
        out: &out, columns: &columns, inp: inp, weight: weight, bias: bias, batch: batch,
        height: h, width: wd, inChannels: inChannels, outChannels: outChannels, kernel: k,
        stride: stride)

      // Pre-filled gradients: backward must add to them.
      let dinp0 = random.floats(inp.count, in: -1...1)
      let dweight0 = random.floats(weight.count, in: -1...1)
      let dbias0 = random.floats(bias.count, in: -1...1)
      var dinp = dinp0
      var dweight = dweight0
      var dbias = dbias0
      var scratch = [Float](repeating: .nan, count: columnsCount)
      imageConvBackward(
        dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: w, columns: columns, weight: weight,
        scratch: &scratch, batch: batch, height: h, width: wd, inChannels: inChannels,
        outChannels: outChannels, kernel: k, stride: stride)

      let (inpD, weightD, biasD, wD) = (inp.doubles, weight.doubles, bias.doubles, w.doubles)
      func loss(_ inp: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
        dot(
          wD,
          imageConvReference(
            inp, weight: weight, bias: bias, batch: batch, height: h, width: wd,
            inChannels: inChannels, outChannels: outChannels, kernel: k, stride: stride))
      }
      let gradInp = centralDifferences(at: inpD) { loss($0, weightD, biasD) }
      let gradWeight = centralDifferences(at: weightD) { loss(inpD, $0, biasD) }
      let gradBias = centralDifferences(at: biasD) { loss(inpD, weightD, $0) }
      let shape = "\(h)×\(wd) K \(k) stride \(stride)"
      assertClose(dinp, add(dinp0, gradInp), relative: 1e-4, absolute: 1e-5, "dinp \(shape)")
      assertClose(
        dweight, add(dweight0, gradWeight), relative: 1e-4, absolute: 1e-5, "dweight \(shape)")
      assertClose(dbias, add(dbias0, gradBias), relative: 1e-4, absolute: 1e-5, "dbias \(shape)")
    }
  }

  /// imageToTokens then tokensToImage is the identity (exactly: both are permutations), and
  /// token (y·gridW + x, b) holds pixel (b, y, x).
  func testLayoutRoundTrips() {
    var random = TestRandom(seed: 64)
    let (gridH, gridW, channels) = (3, 4, 5)
    let map = random.floats(batch * gridH * gridW * channels, in: -1...1)
    var tokens = [Float](repeating: .nan, count: map.count)
    imageToTokens(
      tokens: &tokens, map: map, batch: batch, gridHeight: gridH, gridWidth: gridW,
      channels: channels)
    let (b, y, x, c) = (1, 2, 3, 4)
    XCTAssertEqual(
      tokens[((y * gridW + x) * batch + b) * channels + c],
      map[((b * gridH + y) * gridW + x) * channels + c], "token (y·gridW + x, b) is pixel (b, y, x)")
    var back = [Float](repeating: .nan, count: map.count)
    tokensToImage(
      map: &back, tokens: tokens, batch: batch, gridHeight: gridH, gridWidth: gridW,
      channels: channels)
    XCTAssertEqual(back, map, "NHWC → tokens → NHWC")
    var tokensAgain = [Float](repeating: .nan, count: map.count)
    imageToTokens(
      tokens: &tokensAgain, map: back, batch: batch, gridHeight: gridH, gridWidth: gridW,
      channels: channels)
    XCTAssertEqual(tokensAgain, tokens, "tokens → NHWC → tokens")
  }

  /// A stride-1 image conv followed by imageToTokens equals the token conv of the converted input.
  func testStrideOneImageConvEqualsTokenConv() {
    var random = TestRandom(seed: 65)
    let (gridH, gridW, k) = (3, 4, 3)
    let s = gridH * gridW
    let image = random.floats(batch * s * inChannels, in: -1...1)
    let weight = random.floats(k * k * inChannels * outChannels, in: -1...1)
    let bias = random.floats(outChannels, in: -1...1)
    var imageOut = [Float](repeating: .nan, count: batch * s * outChannels)
    var imageColumns = [Float](
      repeating: .nan,
      count: imageConvColumnsCount(
        batch: batch, height: gridH, width: gridW, inChannels: inChannels, kernel: k, stride: 1))
    imageConvForward(
      out: &imageOut, columns: &imageColumns, inp: image, weight: weight, bias: bias,
      batch: batch, height: gridH, width: gridW, inChannels: inChannels, outChannels: outChannels,
      kernel: k, stride: 1)
    var imageOutTokens = [Float](repeating: .nan, count: imageOut.count)
    imageToTokens(
      tokens: &imageOutTokens, map: imageOut, batch: batch, gridHeight: gridH, gridWidth: gridW,
      channels: outChannels)

    var tokens = [Float](repeating: .nan, count: image.count)
    imageToTokens(
      tokens: &tokens, map: image, batch: batch, gridHeight: gridH, gridWidth: gridW,
      channels: inChannels)
    var tokenOut = [Float](repeating: .nan, count: imageOut.count)
    var tokenColumns = [Float](repeating: .nan, count: imageColumns.count)
    tokenConvForward(
      out: &tokenOut, columns: &tokenColumns, inp: tokens, weight: weight, bias: bias,
      gridHeight: gridH, gridWidth: gridW, batch: batch, inChannels: inChannels,
      outChannels: outChannels, kernel: k)
    assertClose(tokenOut, imageOutTokens, relative: 1e-6, absolute: 1e-6, "token vs image conv")
  }
}
