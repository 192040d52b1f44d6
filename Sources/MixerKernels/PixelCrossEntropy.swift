// The segmentation head's two kernels: reassembling per-token patch logits into full-resolution
// logits (and its adjoint), and pixel-wise softmax cross-entropy against a class map.
//
// Token layout is the stem's (Patchify.swift): token s is patch (s / gridW, s % gridW), and a
// token's P·P·K values are in (row in patch, column in patch, class) order, so the head kernel
// `[C, P·P·K]` is the transpose of a stride-P convolution back to pixels.

import Foundation

/// pixels `[B, H, W, K]` from token-major patch values `[S, B, P·P·K]` (every value moves once).
public func tokensToPixelsForward(
  pixels: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Float>, batch: Int, height: Int,
  width: Int, patch: Int, channels: Int
) {
  let gridH = height / patch, gridW = width / patch
  let rowLength = patch * channels, tokenLength = patch * rowLength
  for gy in 0..<gridH {
    for gx in 0..<gridW {
      let s = gy * gridW + gx
      for b in 0..<batch {
        let src = tokens + (s * batch + b) * tokenLength
        for py in 0..<patch {
          let dst = pixels + ((b * height + gy * patch + py) * width + gx * patch) * channels
          dst.update(from: src + py * rowLength, count: rowLength)
        }
      }
    }
  }
}

/// The adjoint (and inverse) of `tokensToPixelsForward`: dtokens `[S, B, P·P·K]` from dpixels
/// `[B, H, W, K]`. Overwrites dtokens.
public func tokensToPixelsBackward(
  dtokens: UnsafeMutablePointer<Float>, dpixels: UnsafePointer<Float>, batch: Int, height: Int,
  width: Int, patch: Int, channels: Int
) {
  let gridH = height / patch, gridW = width / patch
  let rowLength = patch * channels, tokenLength = patch * rowLength
  for gy in 0..<gridH {
    for gx in 0..<gridW {
      let s = gy * gridW + gx
      for b in 0..<batch {
        let dst = dtokens + (s * batch + b) * tokenLength
        for py in 0..<patch {
          let src = dpixels + ((b * height + gy * patch + py) * width + gx * patch) * channels
          (dst + py * rowLength).update(from: src, count: rowLength)
        }
      }
    }
  }
}

/// Per-image pixel-wise cross-entropy. For image b with N pixels, the valid pixels V_b are those
/// whose label is not `ignore`; losses[b] = (1/|V_b|)·Σ_{p∈V_b} −Σ_k t_pk·log softmax(logits[p])_k
/// with t_p = one-hot(label_p)·(1 − smoothing) + smoothing/K (0 when V_b is empty). probs =
/// softmax(logits) at every pixel; validCounts[b] = |V_b|. Averaging within the image and then over
/// the batch keeps the loss a per-example sum, so it splits over ranks exactly as classification.
/// Images run in parallel (each one's sums in pixel order, so the result does not depend on it).
public func pixelCrossEntropyForward(
  losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
  validCounts: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
  labels: UnsafePointer<Int32>, batch: Int, pixels: Int, classes: Int, smoothing: Float,
  ignore: Int32
) {
  parallelRows(batch, elementsPerRow: pixels * classes) { _, images in
    for b in images {
      let rows = b * pixels..<(b + 1) * pixels
      let (total, valid) = pixelCrossEntropyRows(
        rows, probs: probs, logits: logits, labels: labels, classes: classes, smoothing: smoothing,
        ignore: ignore)
      validCounts[b] = Float(valid)
      losses[b] = valid > 0 ? Float(total / Double(valid)) : 0
    }
  }
}

/// The softmax of `rows` into probs, and the summed loss and count of their labelled pixels.
@inline(__always)
private func pixelCrossEntropyRows(
  _ rows: Range<Int>, probs: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
  labels: UnsafePointer<Int32>, classes: Int, smoothing: Float, ignore: Int32
) -> (total: Double, valid: Int) {
  let off = Double(smoothing) / Double(classes)
  var total = 0.0
  var valid = 0
  for row in rows {
    let z = logits + row * classes
    let p = probs + row * classes
    let (maxLogit, logSum) = softmaxShift(z, classes: classes)
    let label = labels[row]
    var loss = 0.0
    for k in 0..<classes {
      let logProbability = Double(z[k] - maxLogit) - logSum
      p[k] = Float(Foundation.exp(logProbability))
      if smoothing > 0 { loss -= off * logProbability }
      if k == Int(label) { loss -= (1 - Double(smoothing)) * logProbability }
    }
    if label != ignore {
      total += loss
      valid += 1
    }
  }
  return (total, valid)
}

/// dlogits[b, q, k] = scale/|V_b| · (probs[b, q, k] − t_qk) for valid pixels, 0 for ignored ones.
/// Element by element, so `dlogits` may be `probs` (in place). Images run in parallel.
public func pixelCrossEntropyBackward(
  dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
  validCounts: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, pixels: Int,
  classes: Int, smoothing: Float, scale: Float, ignore: Int32
) {
  let off = smoothing / Float(classes)
  parallelRows(batch, elementsPerRow: pixels * classes) { _, images in
    for b in images {
      let factor = validCounts[b] > 0 ? scale / validCounts[b] : 0
      for row in b * pixels..<(b + 1) * pixels {
        let d = dlogits + row * classes
        let p = probs + row * classes
        let label = labels[row]
        guard label != ignore else {
          d.update(repeating: 0, count: classes)
          continue
        }
        for k in 0..<classes { d[k] = factor * (p[k] - off) }
        d[Int(label)] -= factor * (1 - smoothing)
      }
    }
  }
}
