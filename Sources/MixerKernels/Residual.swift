// The residual add of a Mixer branch with optional per-example stochastic depth (Huang et al.
// 2016, as big_vision's Mixer: a dropped example keeps x unchanged, a kept one adds the branch
// unscaled). Activations are token-major `[S, B, C]`; `keep[b]` is 0 or 1 for example b.
// forward accumulates into x; backward overwrites dbranch.

/// x[s, b, :] += keep[b] · branch[s, b, :]   (keep == nil: every example kept)
public func residualForward(
  x: UnsafeMutablePointer<Float>, branch: UnsafePointer<Float>, keep: UnsafePointer<Float>?,
  tokens: Int, batch: Int, channels: Int
) {
  KernelProfile.measure("residual") {
    let rowCount = tokens * batch
    for row in 0..<rowCount {
      let k = keep?[row % batch] ?? 1
      if k == 0 { continue }
      let xr = x + row * channels
      let br = branch + row * channels
      if k == 1 {
        for i in 0..<channels { xr[i] += br[i] }
      } else {
        for i in 0..<channels { xr[i] += k * br[i] }
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
