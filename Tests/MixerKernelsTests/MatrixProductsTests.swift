// The precision abstraction of the matrix products: FP32Products is `gemm` bit for bit; BF16Products
// equals gemmNaive on bf16-rounded operands (activations rounded into scratch, weights from the copy
// made by `prepare`, strided operands compacted); the vectorised bf16 rounding equals the scalar one
// on every kind of value; attention and both convolutions in bf16 stay within bf16 tolerance of fp32.

import MixerKernels
import MixerTestSupport
import XCTest

final class MatrixProductsTests: XCTestCase {
  func testVectorRoundingEqualsScalarRounding() {
    var random = TestRandom(seed: 8)
    var values = random.floats(1000, in: -1e3...1e3)
    values += [0, -0, .infinity, -.infinity, .nan, -.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_1234),
      1 + 0x1p-8, 1 + 3 * 0x1p-8, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude,
      Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000)]
    values += random.floats(13, in: -1...1)  // a tail that is not a multiple of 16
    var fast = [UInt16](repeating: 0, count: values.count)
    convertToBF16(values, &fast, count: values.count)
    for (i, x) in values.enumerated() {
      XCTAssertEqual(fast[i], bf16Bits(x), "value \(i) = \(x) (bits \(String(x.bitPattern, radix: 16)))")
    }
  }

  func testFP32ProductsAreGemmBitForBit() {
    var random = TestRandom(seed: 4)
    let (m, n, k) = (37, 29, 53)
    let a = random.floats(k * m, in: -1...1), b = random.floats(k * n, in: -1...1)
    var c1 = random.floats(m * n, in: -1...1)
    var c2 = c1
    gemm(.transpose, .none, m: m, n: n, k: k, alpha: 0.5, a: a, lda: m, b: b, ldb: n, beta: 1, c: &c1, ldc: n)
    FP32Products.shared.gemm(.transpose, .none, m: m, n: n, k: k, alpha: 0.5, a: a, lda: m, b: b, ldb: n, beta: 1, c: &c2, ldc: n)
    XCTAssertEqual(c1, c2)
  }

  /// Activations (outside the prepared weights, strided or not) and weights (inside them, at an
  /// offset, with their own leading dimension) against gemmNaive on the rounded values.
  func testBF16ProductsMatchNaiveOnRoundedOperands() throws {
    let products = try Precision.bf16.makeProducts()
    XCTAssertEqual(products.precision, .bf16)
    var random = TestRandom(seed: 5)
    let (m, n, k) = (45, 31, 70)
    // the "parameters": B lives at offset 17 of a larger buffer, stored n×(k+3) and used transposed
    let ldb = k + 3
    var weights = random.floats(17 + n * ldb + 9, in: -1...1)
    for transA in [Transpose.none, .transpose] {
      let (aRows, aCols) = transA == .none ? (m, k) : (k, m)
      for lda in [aCols, aCols + 6] {
        for (alpha, beta): (Float, Float) in [(1, 0), (0.25, 1)] {
          let a = random.floats(aRows * lda, in: -2...2)
          var c = random.floats(m * n, in: -1...1)
          var expected = beta == 0 ? [Float](repeating: 0, count: m * n) : c
          weights.withUnsafeMutableBufferPointer { w in
            products.prepare(weights: w.baseAddress!, count: w.count)
            products.gemm(
              transA, .transpose, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: w.baseAddress! + 17, ldb: ldb,
              beta: beta, c: &c, ldc: n)
          }
          let aRounded = a.map { floatFromBF16(bf16Bits($0)) }
          let bRounded = Array(weights[17...]).map { floatFromBF16(bf16Bits($0)) }
          gemmNaive(
            transA, .transpose, m: m, n: n, k: k, alpha: alpha, a: aRounded, lda: lda, b: bRounded, ldb: ldb,
            beta: beta, c: &expected, ldc: n)
          assertClose(c, expected, relative: 1e-5, absolute: 1e-5, "bf16 \(transA) lda \(lda) alpha \(alpha) beta \(beta)")
        }
      }
    }
    // weights changed after prepare are seen only after the next prepare (one rounding per forward)
    var a = random.floats(m * k, in: -1...1)
    var c = [Float](repeating: 0, count: m * n)
    let old = weights
    weights.withUnsafeMutableBufferPointer { w in
      products.prepare(weights: w.baseAddress!, count: w.count)
      for i in w.indices { w[i] = 0 }
      products.gemm(.none, .transpose, m: m, n: n, k: k, a: &a, lda: k, b: w.baseAddress! + 17, ldb: ldb, beta: 0, c: &c, ldc: n)
    }
    XCTAssertGreaterThan(c.map(abs).max()!, 0.1, "the prepared copy, not the zeroed buffer, was read")
    _ = old
  }

  /// Self-attention forward and backward with bf16 products against the fp32 kernel.
  func testAttentionInBF16StaysNearFP32() throws {
    let products = try Precision.bf16.makeProducts()
    let (s, b, c, h) = (6, 3, 16, 4)
    var random = TestRandom(seed: 9)
    let inp = random.floats(s * b * c, in: -1...1), dout = random.floats(s * b * c, in: -1...1)
    let wqkv = random.floats(c * 3 * c, in: -0.4...0.4), bqkv = random.floats(3 * c, in: -0.1...0.1)
    let wproj = random.floats(c * c, in: -0.4...0.4), bproj = random.floats(c, in: -0.1...0.1)
    func run(_ p: any MatrixProducts) -> [[Float]] {
      var out = [Float](repeating: 0, count: s * b * c), qkv = [Float](repeating: 0, count: 3 * s * b * c)
      var probabilities = [Float](repeating: 0, count: b * h * s * s), attention = out
      attentionForward(
        out: &out, qkv: &qkv, probabilities: &probabilities, attention: &attention, inp: inp, qkvWeight: wqkv,
        qkvBias: bqkv, projWeight: wproj, projBias: bproj, tokens: s, batch: b, channels: c, heads: h, products: p)
      var dinp = [Float](repeating: 0, count: s * b * c), dwqkv = [Float](repeating: 0, count: wqkv.count)
      var dbqkv = [Float](repeating: 0, count: 3 * c), dwproj = [Float](repeating: 0, count: c * c)
      var dbproj = [Float](repeating: 0, count: c)
      var dattention = dinp, dqkv = qkv, dscores = [Float](repeating: 0, count: s * s)
      attentionBackward(
        dinp: &dinp, dqkvWeight: &dwqkv, dqkvBias: &dbqkv, dprojWeight: &dwproj, dprojBias: &dbproj, dout: dout,
        qkv: qkv, probabilities: probabilities, attention: attention, inp: inp, qkvWeight: wqkv, projWeight: wproj,
        tokens: s, batch: b, channels: c, heads: h, dattention: &dattention, dqkv: &dqkv, dscores: &dscores,
        products: p)
      return [out, dinp, dwqkv, dbqkv, dwproj, dbproj]
    }
    let fp32 = run(FP32Products.shared), bf16 = run(products)
    for (i, name) in ["out", "dinp", "dqkvWeight", "dqkvBias", "dprojWeight", "dprojBias"].enumerated() {
      assertClose(bf16[i], fp32[i], tolerance: 2e-2)
      // dprojBias is Σ dout, no product: the same in both
      if name != "dprojBias" { XCTAssertNotEqual(bf16[i], fp32[i], "\(name): bf16 products were not used") }
    }
  }

  /// The token-grid and image convolutions (im2col + product) with bf16 products against fp32.
  func testConvolutionsInBF16StayNearFP32() throws {
    let products = try Precision.bf16.makeProducts()
    var random = TestRandom(seed: 10)
    let (gh, gw, b, ci, co, k) = (3, 4, 2, 5, 6, 3)
    let inp = random.floats(gh * gw * b * ci, in: -1...1), dout = random.floats(gh * gw * b * co, in: -1...1)
    let weight = random.floats(k * k * ci * co, in: -0.5...0.5), bias = random.floats(co, in: -0.1...0.1)
    func token(_ p: any MatrixProducts) -> [[Float]] {
      let n = tokenConvColumnsCount(gridHeight: gh, gridWidth: gw, batch: b, inChannels: ci, kernel: k)
      var out = [Float](repeating: 0, count: gh * gw * b * co), columns = [Float](repeating: 0, count: n)
      tokenConvForward(
        out: &out, columns: &columns, inp: inp, weight: weight, bias: bias, gridHeight: gh, gridWidth: gw, batch: b,
        inChannels: ci, outChannels: co, kernel: k, products: p)
      var dinp = [Float](repeating: 0, count: inp.count), dweight = [Float](repeating: 0, count: weight.count)
      var dbias = [Float](repeating: 0, count: co), scratch = columns
      tokenConvBackward(
        dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: dout, columns: columns, weight: weight, scratch: &scratch,
        gridHeight: gh, gridWidth: gw, batch: b, inChannels: ci, outChannels: co, kernel: k, products: p)
      return [out, dinp, dweight, dbias]
    }
    let (height, width) = (6, 8), stride = 2
    let image = random.floats(b * height * width * ci, in: -1...1)
    let imageDout = random.floats(b * (height / 2) * (width / 2) * co, in: -1...1)
    func imageConv(_ p: any MatrixProducts) -> [[Float]] {
      let rows = b * (height / 2) * (width / 2)
      var out = [Float](repeating: 0, count: rows * co), columns = [Float](repeating: 0, count: rows * k * k * ci)
      imageConvForward(
        out: &out, columns: &columns, inp: image, weight: weight, bias: bias, batch: b, height: height, width: width,
        inChannels: ci, outChannels: co, kernel: k, stride: stride, products: p)
      var dinp = [Float](repeating: 0, count: image.count), dweight = [Float](repeating: 0, count: weight.count)
      var dbias = [Float](repeating: 0, count: co), scratch = columns
      imageConvBackward(
        dinp: &dinp, dweight: &dweight, dbias: &dbias, dout: imageDout, columns: columns, weight: weight,
        scratch: &scratch, batch: b, height: height, width: width, inChannels: ci, outChannels: co, kernel: k,
        stride: stride, products: p)
      return [out, dinp, dweight, dbias]
    }
    for (fp32, bf16) in [(token(FP32Products.shared), token(products)), (imageConv(FP32Products.shared), imageConv(products))] {
      for i in 0..<3 {
        assertClose(bf16[i], fp32[i], tolerance: 2e-2)
        XCTAssertNotEqual(bf16[i], fp32[i], "tensor \(i): bf16 products were not used")
      }
      assertClose(bf16[3], fp32[3], tolerance: 1e-6)  // the bias gradient is a sum, not a product
    }
  }

  /// An MLP's hidden layer through `hiddenForward`/`hiddenBackward`, in both layouts the model
  /// uses (weights first with the bias per row, as token mixing; activations first with the bias
  /// per column, as channel mixing), both GELU kinds, with and without dropout: what the products
  /// after it read (act, and the gradient at the pre-activation) and the bias gradient in bf16
  /// stay within bf16 tolerance of fp32. Without dropout bf16 keeps the pre-activation in bf16
  /// (the fp32 buffer is never written); with dropout it takes the fp32 path.
  func testHiddenLayerInBF16StaysNearFP32() throws {
    let bf16 = try Precision.bf16.makeProducts()
    var random = TestRandom(seed: 14)
    let (m, n, k, k2, p) = (48, 80, 40, 24, 8)
    for weightsFirst in [true, false] {
      for kind in GELUKind.allCases {
        for dropout in [false, true] {
          let axis: BiasAxis = weightsFirst ? .rows : .columns
          let biasCount = axis == .rows ? m : n
          // the parameters: W1, the bias, W2; the activation X, the gradient from above G, and the
          // matrices V, U the products after the layer multiply act and its gradient by
          var parameters = random.floats(k * max(m, n) + biasCount + m * k2 + k2 * n, in: -1...1)
          let x = random.floats(k * max(m, n), in: -2...2), g = random.floats(k2 * n, in: -1...1)
          let v = random.floats(n * p, in: -1...1), u = random.floats(n * p, in: -1...1)
          let mask = (0..<(m * n)).map { _ in Float(Int.random(in: 0...4, using: &random) == 0 ? 0 : 1.25) }
          func run(_ products: any MatrixProducts) -> (act: [Float], dpre: [Float], dbias: [Float], preWritten: Bool) {
            let pre = UnsafeMutablePointer<Float>.allocate(capacity: m * n), act = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            let gradient = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            defer { pre.deallocate(); act.deallocate(); gradient.deallocate() }
            pre.initialize(repeating: .nan, count: m * n)
            var actTimesV = [Float](repeating: 0, count: m * p), dpreTimesU = [Float](repeating: 0, count: m * p)
            var dbias = [Float](repeating: 0, count: biasCount)
            parameters.withUnsafeMutableBufferPointer { w in
              let w1 = w.baseAddress!, bias = w1 + k * max(m, n), w2 = bias + biasCount
              products.prepare(weights: w1, count: w.count)
              x.withUnsafeBufferPointer { x in
                mask.withUnsafeBufferPointer { mask in
                  let dropMask = dropout ? mask.baseAddress! : nil
                  if weightsFirst {  // act = gelu(W1ᵀ·X + b), W1 [k, m], X [k, n]
                    products.hiddenForward(
                      .transpose, .none, m: m, n: n, k: k, a: w1, lda: m, b: x.baseAddress!, ldb: n,
                      bias: bias, axis: axis, kind: kind, pre: pre, act: act, dropMask: dropMask)
                  } else {  // act = gelu(X·W1 + b), X [m, k], W1 [k, n]
                    products.hiddenForward(
                      .none, .none, m: m, n: n, k: k, a: x.baseAddress!, lda: k, b: w1, ldb: n,
                      bias: bias, axis: axis, kind: kind, pre: pre, act: act, dropMask: dropMask)
                  }
                  products.gemm(.none, .none, m: m, n: p, k: n, a: act, lda: n, b: v, ldb: p, beta: 0, c: &actTimesV, ldc: p)
                  // the gradient at act: W2 [m, k2] · G [k2, n]
                  products.hiddenBackward(
                    .none, .none, m: m, n: n, k: k2, a: w2, lda: k2, b: g, ldb: n, gradient: gradient, pre: pre,
                    dbias: &dbias, axis: axis, kind: kind, dropMask: dropMask
                  ) {
                    products.gemm(.none, .none, m: m, n: p, k: n, a: gradient, lda: n, b: u, ldb: p, beta: 0, c: &dpreTimesU, ldc: p)
                  }
                }
              }
            }
            return (actTimesV, dpreTimesU, dbias, !(0..<(m * n)).allSatisfy { pre[$0].isNaN })
          }
          let label = "weights first \(weightsFirst), \(kind), dropout \(dropout)"
          let fp32 = run(FP32Products.shared), low = run(bf16)
          XCTAssertTrue(fp32.preWritten, label)
          XCTAssertEqual(low.preWritten, dropout, "\(label): bf16 wrote the fp32 pre-activation")
          for (name, a, b) in [("act", low.act, fp32.act), ("d(pre)", low.dpre, fp32.dpre), ("dbias", low.dbias, fp32.dbias)] {
            assertClose(a, b, tolerance: 2e-2)
            XCTAssertNotEqual(a, b, "\(label): \(name) did not go through bf16")
          }
        }
      }
    }
  }

  func testInt8DoesNotTrain() {
    XCTAssertThrowsError(try Precision.int8.makeProducts()) { error in
      XCTAssertTrue("\(error)".contains("inference only"), "\(error)")
    }
  }
}
