// ONNX export: onnx.checker accepts the file and ONNX Runtime gives our logits to 1e-4 on a
// batch (tools/onnx_compare.py), for both GELU forms; the int8 model in QDQ form gives our int8
// plan's logits (relative RMS, top-1 on every image). Every other block kind, stem and head:
// LayerKindTests. About 3 s (python start-up).

import Foundation
import MixerCheckpoint
@testable import MixerInference
import MixerKernels
import MixerModel
import MixerTestSupport
import XCTest

/// The repository's root (this file is Tests/MixerInferenceTests/ONNXExportTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()

final class ONNXExportTests: XCTestCase {
  func testONNXRuntimeGivesOurLogits() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    for gelu in GELUKind.allCases {
      let (model, images) = try smallModel(seed: 4, gelu: gelu)
      let batch = 6
      let logits = trainingLogits(model, images, batch: batch)
      let onnx = folder.appendingPathComponent("model-\(gelu).onnx")
      try onnxModel(model).write(to: onnx)
      let inputs = folder.appendingPathComponent("inputs.npy"), expected = folder.appendingPathComponent("logits.npy")
      try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
      try NPY.write(NDArray(shape: [batch, model.config.classes], data: logits.map(Float.init)), to: expected)
      let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
      let run = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--tolerance", "1e-4"])
      XCTAssertEqual(run.status, 0, "\(gelu) GELU: \(run.output) \(run.errors)")
      XCTAssertTrue(run.output.contains("\"ok\": true"), run.output)
    }
  }

  /// The QDQ graph quantizes with our grids (same scales, zero points, int8 weights, rounding half
  /// to even), so it differs from our int8 plan only where a value lands on the other side of a
  /// rounding boundary (fp32 order of operations, oneDNN's GELU inside the product against Tanh
  /// nodes), one quantization step each. Its logits must therefore be much closer to our int8
  /// logits than those are to fp32: relative RMS at most a quarter of our int8 error against fp32
  /// (and at most 1e-2). A graph without the QDQ nodes, or with a scale on the wrong axis, would
  /// be at least our int8 error away.
  func testQuantizedExportGivesOurInt8Logits() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let (model, images) = try smallModel(seed: 4)
    let batch = 6
    let ranges = try calibrate(model: model, images: images, count: batch, method: .minMax)
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
    let ours = planLogits(try InferencePlan(model: model, settings: settings), images, batch: batch)
    let int8Error = relativeError(ours, trainingLogits(model, images, batch: batch))
    XCTAssertGreaterThan(int8Error, 0)
    let tolerance = min(1e-2, 0.25 * int8Error)

    let onnx = folder.appendingPathComponent("model-int8.onnx")
    try onnxModel(model, settings: settings).write(to: onnx)
    let inputs = folder.appendingPathComponent("inputs.npy"), expected = folder.appendingPathComponent("logits.npy")
    try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: ours), to: expected)
    let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
    // --unoptimized: ONNX Runtime's graph optimizations fuse QDQ pairs into its own integer
    // kernels, which on AVX2 hosts saturate 16-bit pair sums; the graph as written is what we compare
    let run = try runPython([
      script, "check", onnx.path, inputs.path, expected.path, "--rms-tolerance", "\(tolerance)", "--unoptimized",
    ])
    XCTAssertEqual(run.status, 0, "int8 QDQ (tolerance \(tolerance), our int8 error \(int8Error)): \(run.output) \(run.errors)")
    XCTAssertTrue(run.output.contains("\"ok\": true"), run.output)
    print("int8 QDQ in ONNX Runtime against our int8 plan: \(run.output) (our int8 against fp32: \(int8Error))")
    let nodes = try runPython([
      "-c", "import onnx, sys; g = onnx.load(sys.argv[1]).graph; print(sum(n.op_type == 'QuantizeLinear' for n in g.node))",
      onnx.path,
    ])
    XCTAssertEqual(nodes.output.trimmingCharacters(in: .whitespacesAndNewlines), "\(model.config.productLayers.count)", nodes.errors)
  }

  /// Our u8 quantization (`quantizeU8`, and LayerNorm fused with it) gives the bytes ONNX
  /// Runtime's QuantizeLinear gives for the same fp32 values, exact halves and saturation included:
  /// the int8 plan and the QDQ export quantize alike.
  func testQuantizeU8IsQuantizeLinear() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let p = ActivationQuantization(low: -1.7, high: 2.9)
    var rng = CounterRNG(seed: 31)
    var x = (0..<20_000).map { _ in rng.uniform() * 8 - 4 }
    // values whose quotient by the scale lies on a half (ties), and far outside the range
    for j in 0..<2_000 { x.append((Float(j % 255) - 100.5) * p.scale) }
    x += [1e9, -1e9, 0]
    var ours = [UInt8](repeating: 0, count: x.count)
    ours.withUnsafeMutableBufferPointer { quantizeU8($0.baseAddress!, x, count: x.count, p) }
    let inputs = folder.appendingPathComponent("x.npy"), output = folder.appendingPathComponent("q.npy")
    try NPY.write(NDArray(shape: [x.count], data: x), to: inputs)
    let script = """
      import sys, numpy as np, onnx, onnxruntime as ort
      from onnx import helper, TensorProto
      scale, zero = float(sys.argv[3]), int(sys.argv[4])
      node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
      graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
          [helper.make_tensor_value_info("q", TensorProto.UINT8, [None])],
          [helper.make_tensor("s", TensorProto.FLOAT, [], [scale]), helper.make_tensor("z", TensorProto.UINT8, [], [zero])])
      model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
      session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
      q = session.run(["q"], {"x": np.load(sys.argv[1]).astype(np.float32)})[0]
      np.save(sys.argv[2], q.astype(np.float32))
      """
    let run = try runPython(["-c", script, inputs.path, output.path, "\(p.scale)", "\(p.zeroPoint)"])
    XCTAssertEqual(run.status, 0, run.errors)
    let theirs = try NPY.read(contentsOf: output).floats()
    XCTAssertEqual(theirs.count, x.count)
    let differing = (0..<x.count).filter { Float(ours[$0]) != theirs[$0] }
    XCTAssertEqual(differing.count, 0, "first at \(differing.first.map { "x = \(x[$0]): ours \(ours[$0]), ONNX Runtime \(theirs[$0])" } ?? "")")
  }

  /// A bf16 product is exported as an fp32 MatMul on its input rounded to bf16 (two Casts) and
  /// its kernel's bf16 values: ONNX Runtime then runs what our bf16 kernel does (compared where
  /// this CPU runs our bf16 plan); everywhere it stays near fp32.
  func testBF16ProductsExportRounded() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let (model, images) = try smallModel(seed: 4)
    let batch = 6
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers { settings[layer.name] = LayerSetting(precision: .bf16) }
    let onnx = folder.appendingPathComponent("model-bf16.onnx")
    try onnxModel(model, settings: settings).write(to: onnx)
    let casts = try runPython([
      "-c", "import onnx, sys; g = onnx.load(sys.argv[1]).graph; print(sum(n.op_type == 'Cast' for n in g.node))", onnx.path,
    ])
    XCTAssertEqual(casts.output.trimmingCharacters(in: .whitespacesAndNewlines), "\(2 * model.config.productLayers.count)", casts.errors)
    let inputs = folder.appendingPathComponent("inputs.npy"), expected = folder.appendingPathComponent("logits.npy")
    try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
    let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
    let fp32 = trainingLogits(model, images, batch: batch).map(Float.init)
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: fp32), to: expected)
    let near = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--rms-tolerance", "2e-2"])
    XCTAssertEqual(near.status, 0, "bf16 export against fp32: \(near.output) \(near.errors)")
    XCTAssertFalse(near.output.contains("\"relative_rms\": 0.0,"), "the export should round: \(near.output)")
    guard DNNL.supports(.bf16) else { return }
    let ours = planLogits(try InferencePlan(model: model, settings: settings), images, batch: batch)
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: ours), to: expected)
    let same = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--tolerance", "1e-4"])
    XCTAssertEqual(same.status, 0, "bf16 export against our bf16 plan: \(same.output) \(same.errors)")
  }
}
