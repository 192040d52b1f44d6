// Softmax cross-entropy against target distributions (one-hot, label-smoothed or mixed-up).
// forward overwrites losses and probs; backward overwrites dlogits.

import Foundation

/// losses[b] = −Σ_k targets[b, k] · log softmax(logits[b, :])_k; probs = softmax(logits).
public func softmaxCrossEntropyForward(
  losses: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
  logits: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int, classes: Int
) {
  for b in 0..<batch {
    let z = logits + b * classes
    let p = probs + b * classes
    let t = targets + b * classes
    let (maxLogit, logSum) = softmaxShift(z, classes: classes)
    var loss = 0.0
    for k in 0..<classes {
      let logProbability = Double(z[k] - maxLogit) - logSum
      p[k] = Float(Foundation.exp(logProbability))
      loss -= Double(t[k]) * logProbability
    }
    losses[b] = Float(loss)
  }
}

/// The stable log-softmax of one row of logits: log softmax(z)_k = (z_k − maxLogit) − logSum, with
/// maxLogit = max_k z_k and logSum = log Σ_k exp(z_k − maxLogit) in Double.
@inline(__always)
func softmaxShift(_ z: UnsafePointer<Float>, classes: Int) -> (maxLogit: Float, logSum: Double) {
  var maxLogit = -Float.infinity
  for k in 0..<classes { maxLogit = max(maxLogit, z[k]) }
  var sum = 0.0
  for k in 0..<classes { sum += Foundation.exp(Double(z[k] - maxLogit)) }
  return (maxLogit, Foundation.log(sum))
}

/// dlogits[b, k] = scale · (probs[b, k] − targets[b, k]); scale is 1/(global batch) for a mean loss.
public func softmaxCrossEntropyBackward(
  dlogits: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
  targets: UnsafePointer<Float>, batch: Int, classes: Int, scale: Float
) {
  for i in 0..<(batch * classes) { dlogits[i] = scale * (probs[i] - targets[i]) }
}

/// targets[b, :] = one-hot(labels[b]) · (1 − smoothing) + smoothing / K.
public func smoothedOneHot(
  targets: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
  smoothing: Float
) {
  let off = smoothing / Float(classes)
  targets.update(repeating: off, count: batch * classes)
  for b in 0..<batch { targets[b * classes + Int(labels[b])] += 1 - smoothing }
}
