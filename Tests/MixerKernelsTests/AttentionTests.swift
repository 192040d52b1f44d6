// attentionForward against a naive Double reference; attentionBackward (which accumulates) against
// central differences of that reference for every gradient; permuting the tokens of the input
// permutes the output; large scores stay finite (the softmax subtracts the row maximum).

import MixerKernels
import MixerTestSupport
import XCTest

/// Multi-head self-attention on `[S, B, C]` in Double, loop by loop (the forward's contract):
/// returns out `[S, B, C]` and probabilities `[B, H, S, S]`.
private func attentionReference(
  _ x: [Double], qkvWeight: [Double], qkvBias: [Double], projWeight: [Double],
  projBias: [Double], tokens S: Int, batch B: Int, channels C: Int, heads H: Int
) -> (out: [Double], probabilities: [Double]) {
  let D = C / H
  // qkv[s, b, j] = Σ_c x[s, b, c]·Wqkv[c, j] + bqkv[j]
  var qkv = [Double](repeating: 0, count: S * B * 3 * C)
  for r in 0..<(S * B) {
    for j in 0..<(3 * C) {
      var sum = qkvBias[j]
      for c in 0..<C { sum += x[r * C + c] * qkvWeight[c * 3 * C + j] }
      qkv[r * 3 * C + j] = sum
    }
  }
  func q(_ s: Int, _ b: Int, _ h: Int, _ d: Int) -> Double { qkv[(s * B + b) * 3 * C + h * D + d] }
  func k(_ s: Int, _ b: Int, _ h: Int, _ d: Int) -> Double { q(s, b, h, d + C) }
  func v(_ s: Int, _ b: Int, _ h: Int, _ d: Int) -> Double { q(s, b, h, d + 2 * C) }
  var probabilities = [Double](repeating: 0, count: B * H * S * S)
  var attention = [Double](repeating: 0, count: S * B * C)
  for b in 0..<B {
    for h in 0..<H {
      for i in 0..<S {
        var scores = [Double](repeating: 0, count: S)
        for j in 0..<S {
          var dotQK = 0.0
          for d in 0..<D { dotQK += q(i, b, h, d) * k(j, b, h, d) }
          scores[j] = dotQK / Double(D).squareRoot()
        }
        let maximum = scores.max()!
        let exps = scores.map { Foundation.exp($0 - maximum) }
        let sum = exps.reduce(0, +)
        for j in 0..<S { probabilities[((b * H + h) * S + i) * S + j] = exps[j] / sum }
        for d in 0..<D {
          var value = 0.0
          for j in 0..<S { value += probabilities[((b * H + h) * S + i) * S + j] * v(j, b, h, d) }
          attention[(i * B + b) * C + h * D + d] = value
        }
      }
    }
  }
  var out = [Double](repeating: 0, count: S * B * C)
  for r in 0..<(S * B) {
    for j in 0..<C {
      var sum = projBias[j]
      for c in 0..<C { sum += attention[r * C + c] * projWeight[c * C + j] }
      out[r * C + j] = sum
    }
  }
  return (out, probabilities)
}

/// Random attention parameters and input at one shape.
private struct AttentionCase {
  let S: Int, B: Int, C: Int, H: Int
  var x: [Float]  // [S, B, C]
  var qkvWeight: [Float]  // [C, 3C]
  var qkvBias: [Float]  // [3C]
  var projWeight: [Float]  // [C, C]
  var projBias: [Float]  // [C]

  init(S: Int, B: Int, C: Int, H: Int, weightScale: Float = 0.5, random: inout TestRandom) {
    (self.S, self.B, self.C, self.H) = (S, B, C, H)
    x = random.floats(S * B * C, in: -1...1)
    qkvWeight = random.floats(C * 3 * C, in: -weightScale...weightScale)
    qkvBias = random.floats(3 * C, in: -0.2...0.2)
    projWeight = random.floats(C * C, in: -0.5...0.5)
    projBias = random.floats(C, in: -0.2...0.2)
  }

  var label: String { "S \(S) B \(B) C \(C) H \(H)" }

  /// Runs `attentionForward`; returns out and every cache.
  func forward(_ x: [Float]? = nil)
    -> (out: [Float], qkv: [Float], probabilities: [Float], attention: [Float])
  {
    var out = [Float](repeating: .nan, count: S * B * C)
    var qkv = [Float](repeating: .nan, count: S * B * 3 * C)
    var probabilities = [Float](repeating: .nan, count: B * H * S * S)
    var attention = [Float](repeating: .nan, count: S * B * C)
    attentionForward(
      out: &out, qkv: &qkv, probabilities: &probabilities, attention: &attention,
      inp: x ?? self.x, qkvWeight: qkvWeight, qkvBias: qkvBias, projWeight: projWeight,
      projBias: projBias, tokens: S, batch: B, channels: C, heads: H)
    return (out, qkv, probabilities, attention)
  }

  func reference(
    _ x: [Double]? = nil, qkvWeight: [Double]? = nil, qkvBias: [Double]? = nil,
    projWeight: [Double]? = nil, projBias: [Double]? = nil
  ) -> (out: [Double], probabilities: [Double]) {
    attentionReference(
      x ?? self.x.doubles, qkvWeight: qkvWeight ?? self.qkvWeight.doubles,
      qkvBias: qkvBias ?? self.qkvBias.doubles, projWeight: projWeight ?? self.projWeight.doubles,
      projBias: projBias ?? self.projBias.doubles, tokens: S, batch: B, channels: C, heads: H)
  }
}

final class AttentionTests: XCTestCase {
  /// Shapes (S, B, C, H): two heads of 4, three heads of 2, one head (D = C).
  private let shapes = [(5, 2, 8, 2), (3, 3, 6, 3), (4, 2, 4, 1)]

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 40)
    for (S, B, C, H) in shapes {
      let test = AttentionCase(S: S, B: B, C: C, H: H, random: &random)
      let result = test.forward()
      let reference = test.reference()
      assertClose(result.out, reference.out, relative: 1e-5, absolute: 1e-6, "out \(test.label)")
      assertClose(
        result.probabilities, reference.probabilities, relative: 1e-5, absolute: 1e-7,
        "probabilities \(test.label)")
    }
  }

  func testBackwardMatchesFiniteDifferencesAndAccumulates() {
    var random = TestRandom(seed: 41)
    for (S, B, C, H) in shapes {
      let test = AttentionCase(S: S, B: B, C: C, H: H, weightScale: 1, random: &random)
      let w = random.floats(S * B * C, in: -1...1)  // L = Σ w·out, so dout = w
      let forward = test.forward()

      // Pre-filled gradients: backward must add to them. Scratch starts as garbage.
      let dinp0 = random.floats(S * B * C, in: -1...1)
      let dqkvWeight0 = random.floats(C * 3 * C, in: -1...1)
      let dqkvBias0 = random.floats(3 * C, in: -1...1)
      let dprojWeight0 = random.floats(C * C, in: -1...1)
      let dprojBias0 = random.floats(C, in: -1...1)
      var dinp = dinp0
      var dqkvWeight = dqkvWeight0
      var dqkvBias = dqkvBias0
      var dprojWeight = dprojWeight0
      var dprojBias = dprojBias0
      var dattention = [Float](repeating: .nan, count: S * B * C)
      var dqkv = [Float](repeating: .nan, count: S * B * 3 * C)
      var dscores = [Float](repeating: .nan, count: S * S)
      attentionBackward(
        dinp: &dinp, dqkvWeight: &dqkvWeight, dqkvBias: &dqkvBias, dprojWeight: &dprojWeight,
        dprojBias: &dprojBias, dout: w, qkv: forward.qkv, probabilities: forward.probabilities,
        attention: forward.attention, inp: test.x, qkvWeight: test.qkvWeight,
        projWeight: test.projWeight, tokens: S, batch: B, channels: C, heads: H,
        dattention: &dattention, dqkv: &dqkv, dscores: &dscores)

      let wD = w.doubles
      let gradX = centralDifferences(at: test.x.doubles) { dot(wD, test.reference($0).out) }
      let gradQKVWeight = centralDifferences(at: test.qkvWeight.doubles) {
        dot(wD, test.reference(qkvWeight: $0).out)
      }
      let gradQKVBias = centralDifferences(at: test.qkvBias.doubles) {
        dot(wD, test.reference(qkvBias: $0).out)
      }
      let gradProjWeight = centralDifferences(at: test.projWeight.doubles) {
        dot(wD, test.reference(projWeight: $0).out)
      }
      let gradProjBias = centralDifferences(at: test.projBias.doubles) {
        dot(wD, test.reference(projBias: $0).out)
      }
      let shape = test.label
      assertClose(dinp, add(dinp0, gradX), relative: 1e-3, absolute: 1e-5, "dinp \(shape)")
      assertClose(
        dqkvWeight, add(dqkvWeight0, gradQKVWeight), relative: 1e-3, absolute: 1e-5,
        "dqkvWeight \(shape)")
      assertClose(
        dqkvBias, add(dqkvBias0, gradQKVBias), relative: 1e-3, absolute: 1e-5,
        "dqkvBias \(shape)")
      assertClose(
        dprojWeight, add(dprojWeight0, gradProjWeight), relative: 1e-3, absolute: 1e-5,
        "dprojWeight \(shape)")
      assertClose(
        dprojBias, add(dprojBias0, gradProjBias), relative: 1e-3, absolute: 1e-5,
        "dprojBias \(shape)")
    }
  }

  /// Self-attention has no positional term: out(x[π]) = out(x)[π] for a permutation π of tokens.
  func testPermutingTokensPermutesOutput() {
    var random = TestRandom(seed: 42)
    for (S, B, C, H) in shapes {
      let test = AttentionCase(S: S, B: B, C: C, H: H, random: &random)
      let permutation = Array((0..<S).shuffled(using: &random))
      var permuted = [Float](repeating: 0, count: S * B * C)
      for s in 0..<S {
        let from = permutation[s] * B * C
        for i in 0..<(B * C) { permuted[s * B * C + i] = test.x[from + i] }
      }
      let out = test.forward().out
      let permutedOut = test.forward(permuted).out
      var expected = [Float](repeating: 0, count: S * B * C)
      for s in 0..<S {
        let from = permutation[s] * B * C
        for i in 0..<(B * C) { expected[s * B * C + i] = out[from + i] }
      }
      assertClose(
        permutedOut, expected, relative: 1e-5, absolute: 1e-6,
        "out of permuted tokens \(test.label) π \(permutation)")
    }
  }

  /// Scores of order 1e4 overflow exp without the max subtraction; with it, the probabilities are
  /// one-hot-like rows summing to 1, out matches the reference and backward stays finite.
  func testLargeScoresStayFinite() {
    var random = TestRandom(seed: 43)
    let (S, B, C, H) = (5, 2, 8, 2)
    var test = AttentionCase(S: S, B: B, C: C, H: H, random: &random)
    test.x = test.x.map { $0 * 100 }
    test.qkvWeight = test.qkvWeight.map { $0 * 4 }
    let forward = test.forward()
    let reference = test.reference()
    assertFinite(forward.out, "out")
    assertFinite(forward.probabilities, "probabilities")
    for row in 0..<(B * H * S) {
      let sum = forward.probabilities[(row * S)..<((row + 1) * S)].reduce(0, +)
      XCTAssertEqual(sum, 1, accuracy: 1e-5, "probability row \(row) sums to \(sum)")
    }
    assertClose(
      forward.probabilities, reference.probabilities, relative: 1e-3, absolute: 1e-3,
      "probabilities at large scores")
    assertClose(forward.out, reference.out, relative: 1e-3, absolute: 1e-2, "out at large scores")

    var dinp = [Float](repeating: 0, count: S * B * C)
    var dqkvWeight = [Float](repeating: 0, count: C * 3 * C)
    var dqkvBias = [Float](repeating: 0, count: 3 * C)
    var dprojWeight = [Float](repeating: 0, count: C * C)
    var dprojBias = [Float](repeating: 0, count: C)
    var dattention = [Float](repeating: 0, count: S * B * C)
    var dqkv = [Float](repeating: 0, count: S * B * 3 * C)
    var dscores = [Float](repeating: 0, count: S * S)
    let dout = [Float](repeating: 1, count: S * B * C)
    attentionBackward(
      dinp: &dinp, dqkvWeight: &dqkvWeight, dqkvBias: &dqkvBias, dprojWeight: &dprojWeight,
      dprojBias: &dprojBias, dout: dout, qkv: forward.qkv, probabilities: forward.probabilities,
      attention: forward.attention, inp: test.x, qkvWeight: test.qkvWeight,
      projWeight: test.projWeight, tokens: S, batch: B, channels: C, heads: H,
      dattention: &dattention, dqkv: &dqkv, dscores: &dscores)
    assertFinite(dinp, "dinp")
    assertFinite(dqkvWeight, "dqkvWeight")
    assertFinite(dqkvBias, "dqkvBias")
    assertFinite(dprojWeight, "dprojWeight")
    assertFinite(dprojBias, "dprojBias")
  }
}
