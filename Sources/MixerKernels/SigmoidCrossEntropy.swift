// Sigmoid cross-entropy against per-class targets (one-hot, label-smoothed or mixed-up): each of
// the K classes is its own binary problem, and an example's loss is the sum over its classes, as
// big_vision's `sigmoid_xent` (the loss of its Mixer ImageNet recipe) computes it. The caller
// averages over the batch.
// forward overwrites losses and probs; backward overwrites dlogits.

import Foundation

/// losses[b] = Σ_k −(t·log σ(z) + (1 − t)·log σ(−z)) with z = logits[b, k], t = targets[b, k];
/// probs = σ(logits). Each term is computed stably as softplus(z) − t·z, with
/// softplus(z) = max(z, 0) + log(1 + e^−|z|), in Double.
public func sigmoidCrossEntropyForward(
  losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
  logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
) {
  for b in 0..<batch {
    let z = logits + b * classes  // [K]
    let p = probs + b * classes  // [K]
    let t = targets + b * classes  // [K]
    var loss = 0.0
    for k in 0..<classes {
      let x = Double(z[k])
      let e = Foundation.exp(-abs(x))  // in (0, 1]: never overflows
      loss += max(x, 0) + Foundation.log1p(e) - Double(t[k]) * x
      // σ(x) from the same e: 1/(1 + e) for x ≥ 0, e/(1 + e) below
      p[k] = Float(x >= 0 ? 1 / (1 + e) : e / (1 + e))
    }
    losses[b] = Float(loss)
  }
}

/// dlogits[b, k] = scale · (σ(logits[b, k]) − targets[b, k]) from the forward's probs; scale is
/// 1/(global batch) for a mean over the batch.
public func sigmoidCrossEntropyBackward(
  dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
  targets: UnsafePointer<Float>, batch: Int, classes: Int, scale: Float
) {
  for i in 0..<(batch * classes) { dlogits[i] = scale * (probs[i] - targets[i]) }
}
