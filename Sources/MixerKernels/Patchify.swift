// The stem's input: non-overlapping P×P patches of NHWC images, token-major. Token s is patch
// (s / gridW, s % gridW) in row-major order over the patch grid; a patch is flattened in
// (row in patch, column in patch, RGB) order, so it multiplies the HWIO `stem/kernel` reshaped
// to `[P·P·3, C]` (the official conv with stride P). The stem takes no input gradient, so there
// is no backward. Overwrites patches.

/// patches[s, b, :] (`[S, B, P·P·3]`) from images `[B, H, W, 3]`.
public func patchifyForward(
  patches: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>,
  batch: Int, height: Int, width: Int, patch: Int
) {
  let gridH = height / patch, gridW = width / patch
  let rowLength = patch * 3
  let patchLength = patch * rowLength
  for gy in 0..<gridH {
    for gx in 0..<gridW {
      let s = gy * gridW + gx
      for b in 0..<batch {
        let dst = patches + (s * batch + b) * patchLength
        for py in 0..<patch {
          let src = images + ((b * height + gy * patch + py) * width + gx * patch) * 3
          (dst + py * rowLength).update(from: src, count: rowLength)
        }
      }
    }
  }
}
