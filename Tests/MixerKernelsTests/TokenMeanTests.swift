// tokenMeanForward against a Double reference and tokenMeanBackward against central differences;
// both overwrite their output.

import MixerKernels
import MixerTestSupport
import XCTest

/// out[b, c] = mean over s of inp[s, b, c], in Double.
private func tokenMeanReference(_ inp: [Double], tokens: Int, batch: Int, channels: Int) -> [Double]
{
  let n = batch * channels
  var out = [Double](repeating: 0, count: n)
  for s in 0..<tokens { for i in 0..<n { out[i] += inp[s * n + i] } }
  return out.map { $0 / Double(tokens) }
}

final class TokenMeanTests: XCTestCase {
  private let shapes = [(5, 3, 19), (3, 4, 7)]  // (S, B, C)

  func testForwardMatchesDoubleReference() {
    var random = TestRandom(seed: 50)
    for (tokens, batch, channels) in shapes {
      let inp = random.floats(tokens * batch * channels, in: -2...2)
      var out = [Float](repeating: .nan, count: batch * channels)
      tokenMeanForward(out: &out, inp: inp, tokens: tokens, batch: batch, channels: channels)
      let reference = tokenMeanReference(
        inp.doubles, tokens: tokens, batch: batch, channels: channels)
      assertClose(
        out, reference, relative: 1e-5, absolute: 1e-6, "S \(tokens) B \(batch) C \(channels)")
    }
  }

  func testBackwardMatchesFiniteDifferences() {
    var random = TestRandom(seed: 51)
    for (tokens, batch, channels) in shapes {
      let inp = random.floats(tokens * batch * channels, in: -2...2)
      let w = random.floats(batch * channels, in: -1...1)  // L = Σ w·out, so dout = w
      var dinp = [Float](repeating: .nan, count: inp.count)
      tokenMeanBackward(dinp: &dinp, dout: w, tokens: tokens, batch: batch, channels: channels)
      let wD = w.doubles
      let gradInp = centralDifferences(at: inp.doubles) {
        dot(wD, tokenMeanReference($0, tokens: tokens, batch: batch, channels: channels))
      }
      assertClose(
        dinp, gradInp, relative: 1e-3, absolute: 1e-6, "dinp S \(tokens) B \(batch) C \(channels)")
    }
  }
}
