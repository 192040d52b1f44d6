// The residual add of a Mixer branch with optional per-example stochastic depth (Huang et al.
// 2016, as big_vision's Mixer: a dropped example keeps x unchanged, a kept one adds the branch
// unscaled). Activations are token-major `[S, B, C]`; `keep[b]` is 0 or 1 for example b.
// forward accumulates into x; backward overwrites dbranch. The paper's block without stochastic
// depth adds its branches in place: the stream is copied (`copyStream`), an output Dense's bias
// added (`addRowBias`, `addColumnBias`) and the product then accumulates into it (beta = 1).
// These are plain elementwise passes, split over the kernel threads: the same bits on any count.
// The loops are CMixerVector's, at the CPU's instruction set (KernelISA).

import CMixerVector

/// x[s, b, :] += keep[b] · branch[s, b, :]   (keep == nil: every example kept)
public func residualForward(
  x: UnsafeMutablePointer<Float>, branch: UnsafePointer<Float>, keep: UnsafePointer<Float>?,
  tokens: Int, batch: Int, channels: Int
) {
  KernelProfile.measure("residual") {
    parallelRows(tokens * batch, elementsPerRow: channels) { _, chunk in
      for row in chunk {
        let k = keep?[row % batch] ?? 1
        if k != 0 { mx_add_scaled(x + row * channels, branch + row * channels, k, channels) }
      }
    }
  }
}

/// dbranch[s, b, :] = keep[b] · dx[s, b, :]
public func residualBackward(
  dbranch: UnsafeMutablePointer<Float>, dx: UnsafePointer<Float>, keep: UnsafePointer<Float>?,
  tokens: Int, batch: Int, channels: Int
) {
  let rowCount = tokens * batch
  for row in 0..<rowCount {
    let k = keep?[row % batch] ?? 1
    let d = dbranch + row * channels
    let g = dx + row * channels
    for i in 0..<channels { d[i] = k * g[i] }
  }
}

/// out[i] = inp[i] for i in 0..<count (the residual stream handed on to a branch that adds into it).
public func copyStream(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
  KernelProfile.measure("residual") {
    parallelElements(count) { range in
      (out + range.lowerBound).update(from: inp + range.lowerBound, count: range.count)
    }
  }
}

/// x[r, j] += bias[r] for x `[rows, cols]` (token mixing's output bias, one per token row).
public func addRowBias(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
  KernelProfile.measure("residual") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      mx_add_row_bias(x, bias, chunk.lowerBound, chunk.upperBound, cols)
    }
  }
}

/// out[r, j] = inp[r, j] + bias[j] for `[rows, cols]` (channel mixing's output bias on the stream).
public func addColumnBias(
  out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int
) {
  KernelProfile.measure("residual") {
    parallelRows(rows, elementsPerRow: cols) { _, chunk in
      mx_add_column_bias(out, inp, bias, chunk.lowerBound, chunk.upperBound, cols)
    }
  }
}
