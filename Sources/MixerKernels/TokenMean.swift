// Global average pooling over tokens before the head (the official Mixer's `jnp.mean(x, axis=1)`).
// forward overwrites out; backward overwrites dinp.

/// out[b, c] = (1/S) Σ_s inp[s, b, c]   (inp `[S, B, C]`, out `[B, C]`)
public func tokenMeanForward(
  out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, tokens: Int, batch: Int,
  channels: Int
) {
  let n = batch * channels
  out.update(repeating: 0, count: n)
  for s in 0..<tokens {
    let x = inp + s * n
    for i in 0..<n { out[i] += x[i] }
  }
  let scale = 1 / Float(tokens)
  for i in 0..<n { out[i] *= scale }
}

/// dinp[s, b, c] = dout[b, c] / S
public func tokenMeanBackward(
  dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, tokens: Int, batch: Int,
  channels: Int
) {
  let n = batch * channels
  let scale = 1 / Float(tokens)
  for s in 0..<tokens {
    let d = dinp + s * n
    for i in 0..<n { d[i] = dout[i] * scale }
  }
}
