// Bias gradients (accumulating) and the bias broadcast, against plain sums; their use as the GELU
// bias gradient is checked against finite differences in GELUTests.

import MixerKernels
import MixerTestSupport
import XCTest

final class BiasTests: XCTestCase {
  func testBackwardSumsAndAccumulates() {
    var random = TestRandom(seed: 30)
    for (rows, cols) in [(3, 19), (5, 7), (4, 33)] {
      let dout = random.floats(rows * cols, in: -1...1)
      let rows0 = random.floats(rows, in: -1...1)
      let cols0 = random.floats(cols, in: -1...1)
      var dbiasRows = rows0
      var dbiasCols = cols0
      biasBackwardRows(dbias: &dbiasRows, dout: dout, rows: rows, cols: cols)
      biasBackwardColumns(dbias: &dbiasCols, dout: dout, rows: rows, cols: cols)
      let rowSums = (0..<rows).map { r in
        Double(rows0[r]) + (0..<cols).reduce(0.0) { $0 + Double(dout[r * cols + $1]) }
      }
      let colSums = (0..<cols).map { j in
        Double(cols0[j]) + (0..<rows).reduce(0.0) { $0 + Double(dout[$1 * cols + j]) }
      }
      assertClose(dbiasRows, rowSums, relative: 1e-5, absolute: 1e-6, "rows \(rows)×\(cols)")
      assertClose(dbiasCols, colSums, relative: 1e-5, absolute: 1e-6, "columns \(rows)×\(cols)")
    }
  }

  /// The sums of a bf16 gradient (the hidden layers' in bf16 training), per row and per column,
  /// on one thread and split over two (per-column partial rows), against Double sums.
  func testBackwardOfBF16GradientSumsAndAccumulates() {
    var random = TestRandom(seed: 31)
    let saved = KernelThreads.count
    defer { KernelThreads.count = saved }
    for threads in [1, 2] {
      KernelThreads.count = threads
      for (rows, cols) in [(3, 19), (5, 7), (300, 333)] {
        let dout = random.floats(rows * cols, in: -1...1).map(bf16Bits)
        let rows0 = random.floats(rows, in: -1...1), cols0 = random.floats(cols, in: -1...1)
        var dbiasRows = rows0, dbiasCols = cols0
        biasBackwardBF16(dbias: &dbiasRows, dout: dout, rows: rows, cols: cols, axis: .rows)
        biasBackwardBF16(dbias: &dbiasCols, dout: dout, rows: rows, cols: cols, axis: .columns)
        let rowSums = (0..<rows).map { r in
          Double(rows0[r]) + (0..<cols).reduce(0.0) { $0 + Double(floatFromBF16(dout[r * cols + $1])) }
        }
        let colSums = (0..<cols).map { j in
          Double(cols0[j]) + (0..<rows).reduce(0.0) { $0 + Double(floatFromBF16(dout[$1 * cols + j])) }
        }
        assertClose(dbiasRows, rowSums, relative: 1e-5, absolute: 1e-5, "rows \(rows)×\(cols), \(threads) threads")
        assertClose(dbiasCols, colSums, relative: 1e-5, absolute: 1e-5, "columns \(rows)×\(cols), \(threads) threads")
      }
    }
  }

  func testBroadcastColumnsCopiesBiasIntoEveryRow() {
    let rows = 3
    let cols = 5
    let bias: [Float] = [1, -2, 3.5, 0, 7]
    var out = [Float](repeating: .nan, count: rows * cols)
    broadcastColumns(out: &out, bias: bias, rows: rows, cols: cols)
    assertClose(out, bias + bias + bias, relative: 0, absolute: 0, "broadcast")
  }
}
