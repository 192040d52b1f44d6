// A strided K×K convolution on NHWC images (a CNN stem layer), by im2col and one sgemm, plus the
// two permutations between an NHWC feature map and token-major activations, so a stem of such
// convolutions can end on the token grid. The weight is HWIO `[K, K, Cin, Cout]` (Flax
// `nn.Conv`); a column row is laid out (ky, kx, Cin), so the weight read as `[K·K·Cin, Cout]` is
// the GEMM's right-hand side.
//
//   out[b, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} inp[b, oy·s + ky − pad, ox·s + kx − pad, ci]
//                                                   · weight[ky, kx, ci, co],
//   pad = (K − 1) / 2 on every side, reads outside the image are 0; out is `[B, H/s, W/s, Cout]`.
//
// Deviation: for an even stride with an odd K this pads (K − 1)/2 before and after (PyTorch
// `padding=(K-1)//2`), whereas TF/Flax "SAME" at stride 2 on even sizes pads 0 before and 1
// after; a weight imported from Flax sees its window shifted by one pixel. At stride 1 they agree.
//
// Forward overwrites out and columns (the im2col matrix, kept as the backward's cache).
// Backward accumulates into dinp, dweight and dbias and overwrites scratch. It reads columns only
// before it writes scratch, so a caller holding raw pointers may pass the same memory for both.

/// Number of floats in the im2col buffer (`columns`, `scratch`): `[B·(H/s)·(W/s), K·K·Cin]`.
public func imageConvColumnsCount(
  batch: Int, height: Int, width: Int, inChannels: Int, kernel: Int, stride: Int
) -> Int {
  batch * (height / stride) * (width / stride) * kernel * kernel * inChannels
}

/// out (`[B, H/s, W/s, Cout]`) = conv(inp `[B, H, W, Cin]`, weight `[K, K, Cin, Cout]`, stride s)
/// + bias `[Cout]`; columns (`[B·(H/s)·(W/s), K·K·Cin]`) receives the im2col matrix.
/// K must be odd and H, W divisible by s.
public func imageConvForward(
  out: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>,
  inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int, kernel: Int,
  stride: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  checkImageConvSizes(height: height, width: width, kernel: kernel, stride: stride)
  let rows = batch * (height / stride) * (width / stride)
  let patchLength = kernel * kernel * inChannels
  KernelProfile.measure("image conv im2col") {
    imageIm2col(
      columns: columns, inp: inp, batch: batch, height: height, width: width,
      inChannels: inChannels, kernel: kernel, stride: stride)
  }
  columnsProductForward(
    out: out, columns: columns, weight: weight, bias: bias, rows: rows, patchLength: patchLength,
    outChannels: outChannels, products: products)
}

/// dweight (`[K, K, Cin, Cout]`) += columnsᵀ·dout, dbias (`[Cout]`) += Σ_rows dout,
/// dinp (`[B, H, W, Cin]`) += col2im(dout·weightᵀ). scratch (`[B·(H/s)·(W/s), K·K·Cin]`) is
/// overwritten.
public func imageConvBackward(
  dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
  dbias: UnsafeMutablePointer<Float>,
  dout: UnsafePointer<Float>, columns: UnsafePointer<Float>, weight: UnsafePointer<Float>,
  scratch: UnsafeMutablePointer<Float>,
  batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int, kernel: Int,
  stride: Int,
  products: any MatrixProducts = FP32Products.shared
) {
  checkImageConvSizes(height: height, width: width, kernel: kernel, stride: stride)
  let rows = batch * (height / stride) * (width / stride)
  let patchLength = kernel * kernel * inChannels
  // columns is not read after this: scratch may be the same buffer
  columnsProductBackward(
    dweight: dweight, dbias: dbias, scratch: scratch, dout: dout, columns: columns, weight: weight,
    rows: rows, patchLength: patchLength, outChannels: outChannels, products: products)
  KernelProfile.measure("image conv col2im") {
    imageCol2im(
      dinp: dinp, columns: scratch, batch: batch, height: height, width: width,
      inChannels: inChannels, kernel: kernel, stride: stride)
  }
}

/// tokens[s, b, :] (`[S, B, C]`, s = y·gridW + x) = map[b, y, x, :] (`[B, gridH, gridW, C]`).
/// Overwrites tokens. Its adjoint (the backward) is `tokensToImage`.
public func imageToTokens(
  tokens: UnsafeMutablePointer<Float>, map: UnsafePointer<Float>,
  batch: Int, gridHeight: Int, gridWidth: Int, channels: Int
) {
  let tokenCount = gridHeight * gridWidth
  for b in 0..<batch {
    for s in 0..<tokenCount {
      (tokens + (s * batch + b) * channels).update(
        from: map + (b * tokenCount + s) * channels, count: channels)
    }
  }
}

/// map[b, y, x, :] (`[B, gridH, gridW, C]`) = tokens[y·gridW + x, b, :] (`[S, B, C]`).
/// Overwrites map. Its adjoint (the backward) is `imageToTokens`.
public func tokensToImage(
  map: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Float>,
  batch: Int, gridHeight: Int, gridWidth: Int, channels: Int
) {
  let tokenCount = gridHeight * gridWidth
  for b in 0..<batch {
    for s in 0..<tokenCount {
      (map + (b * tokenCount + s) * channels).update(
        from: tokens + (s * batch + b) * channels, count: channels)
    }
  }
}

private func checkImageConvSizes(height: Int, width: Int, kernel: Int, stride: Int) {
  precondition(kernel > 0 && kernel % 2 == 1, "image conv: kernel \(kernel) must be odd")
  precondition(
    stride > 0 && height % stride == 0 && width % stride == 0,
    "image conv: \(height)×\(width) is not divisible by stride \(stride)")
}

/// columns[(b, oy, ox), (ky, kx, :)] = inp[b, oy·s + ky − pad, ox·s + kx − pad, :], 0 outside.
public func imageIm2col(
  columns: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
  batch: Int, height: Int, width: Int, inChannels: Int, kernel: Int, stride: Int
) {
  let pad = (kernel - 1) / 2
  let outHeight = height / stride, outWidth = width / stride
  let patchLength = kernel * kernel * inChannels
  for b in 0..<batch {
    for oy in 0..<outHeight {
      for ox in 0..<outWidth {
        let row = columns + ((b * outHeight + oy) * outWidth + ox) * patchLength
        for ky in 0..<kernel {
          let y = oy * stride + ky - pad
          for kx in 0..<kernel {
            let x = ox * stride + kx - pad
            let dst = row + (ky * kernel + kx) * inChannels
            if y >= 0 && y < height && x >= 0 && x < width {
              dst.update(from: inp + ((b * height + y) * width + x) * inChannels, count: inChannels)
            } else {
              dst.update(repeating: 0, count: inChannels)
            }
          }
        }
      }
    }
  }
}

/// The adjoint of `imageIm2col`: dinp[b, oy·s + ky − pad, ox·s + kx − pad, :] += columns[…].
private func imageCol2im(
  dinp: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>,
  batch: Int, height: Int, width: Int, inChannels: Int, kernel: Int, stride: Int
) {
  let pad = (kernel - 1) / 2
  let outHeight = height / stride, outWidth = width / stride
  let patchLength = kernel * kernel * inChannels
  for b in 0..<batch {
    for oy in 0..<outHeight {
      for ox in 0..<outWidth {
        let row = columns + ((b * outHeight + oy) * outWidth + ox) * patchLength
        for ky in 0..<kernel {
          let y = oy * stride + ky - pad
          guard y >= 0 && y < height else { continue }
          for kx in 0..<kernel {
            let x = ox * stride + kx - pad
            guard x >= 0 && x < width else { continue }
            let src = row + (ky * kernel + kx) * inChannels
            let dst = dinp + ((b * height + y) * width + x) * inChannels
            for c in 0..<inChannels { dst[c] += src[c] }
          }
        }
      }
    }
  }
}
