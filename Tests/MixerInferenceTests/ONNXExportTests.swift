// ONNX export: onnx.checker accepts the file and ONNX Runtime gives our logits to 1e-4 on a
// batch (tools/onnx_compare.py), for both GELU forms; the int8 model in QDQ form gives our int8
// plan's logits (relative RMS, top-1 on every image), on random inputs and on real digits fed the
// way a user's numpy normalises them. Every other block kind, stem and head: LayerKindTests.
// About 40 s (python start-up, the digits through the int8 plan).

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

  /// One answer per model on real images (issue 24): scikit-learn's digits as 8-bit RGB images
  /// (8×8 upscaled to 16×16, 17 grey levels, mostly black and white), calibrated by percentile as
  /// `quantize` does. Our int8 plan runs our pixels, (p − 127.5) / 127.5; ONNX Runtime (graph as
  /// written) runs the pixels a user's numpy makes, `(p / 255 - 0.5) / 0.5` and `p / 127.5 - 1`,
  /// which differ from ours by an ulp on a fifth of the values, and with its default optimization
  /// and `session.x64quantprecision` (docs/inference.md: without it a CPU lacking VNNI saturates).
  /// Top-1 must agree on every image and the logits to a relative RMS of 2e-3 (an eighth of our
  /// int8 error against fp32).
  /// A grid with scale 2/255 puts every such pixel on a rounding half, so the last bit of the pixel
  /// decides its code: before calibration avoided such grids the RMS was about as large as the
  /// int8 error itself. What remains is inherent: the two runtimes' fp32 LayerNorm, GELU and sums
  /// differ by a few ulps, which moves a code by one step where a value lies within those ulps of a
  /// half (about 5 in a million), and such a step propagates through the later layers.
  func testQuantizedExportGivesOurInt8LogitsOnRealImages() throws {
    try requirePython(["onnx", "onnxruntime", "numpy", "sklearn"])
    let folder = try makeTemporaryDirectory(self)
    let raw = folder.appendingPathComponent("digits.npy")
    let make = try runPython([
      "-c",
      """
      import sys, numpy as np
      from sklearn.datasets import load_digits
      d = load_digits()
      p = np.floor(d.images[:600] * (255.0 / 16)).clip(0, 255)
      p = p.repeat(2, axis=1).repeat(2, axis=2)
      np.save(sys.argv[1], np.repeat(p[..., None], 3, axis=3).astype(np.float32))
      """,
      raw.path,
    ])
    XCTAssertEqual(make.status, 0, make.errors)
    let bytes = try NPY.read(contentsOf: raw).floats()
    let perImage = 16 * 16 * 3, count = bytes.count / perImage
    XCTAssertEqual(count, 600)
    let pixels = bytes.map { ($0 - 127.5) / 127.5 }  // as our loader normalises (MixerData/Preprocess.swift)
    let (model, _) = try smallModel(seed: 4)
    let calibration = 256, batch = count - calibration
    let ranges = try calibrate(model: model, images: pixels, count: calibration, method: .percentile)
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
    let test = Array(pixels[(calibration * perImage)...])
    let ours = planLogits(try InferencePlan(model: model, settings: settings), test, batch: batch)
    let int8Error = relativeError(ours, trainingLogits(model, test, batch: batch))

    let onnx = folder.appendingPathComponent("model-int8.onnx")
    try onnxModel(model, settings: settings).write(to: onnx)
    let expected = folder.appendingPathComponent("logits.npy")
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: ours), to: expected)
    let compare = try runPython([
      "-c",
      """
      import sys, json, numpy as np, onnxruntime as ort
      p = np.load(sys.argv[2])[int(sys.argv[4]):]
      ours = np.load(sys.argv[3])
      def session(optimize):
          options = ort.SessionOptions()
          options.intra_op_num_threads = 1
          if optimize:
              options.add_session_config_entry("session.x64quantprecision", "1")
          else:
              options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
          return ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
      for name, x, optimize in (("(p / 255 - 0.5) / 0.5", (p / 255.0 - 0.5) / 0.5, False),
                                ("p / 127.5 - 1", p / 127.5 - 1, False),
                                ("p / 127.5 - 1, default optimization + x64quantprecision", p / 127.5 - 1, True)):
          theirs = session(optimize).run(["logits"], {"images": x.astype(np.float32)})[0]
          rms = float(np.linalg.norm(theirs - ours) / np.linalg.norm(ours))
          print(json.dumps({"pixels": name, "relative_rms": rms,
                            "top1_differ": int(np.sum(theirs.argmax(1) != ours.argmax(1)))}))
      """,
      onnx.path, raw.path, expected.path, "\(calibration)",
    ])
    XCTAssertEqual(compare.status, 0, compare.errors)
    let lines = compare.output.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
    XCTAssertEqual(lines.count, 3, compare.output)
    for line in lines {
      let rms = line["relative_rms"] as? Double ?? .infinity, differ = line["top1_differ"] as? Int ?? -1
      XCTAssertEqual(differ, 0, "\(batch) digits, ONNX Runtime on \(line["pixels"]!): top-1 differs from our int8 plan")
      XCTAssertLessThanOrEqual(
        rms, 2e-3, "\(batch) digits, ONNX Runtime on \(line["pixels"]!): relative logit RMS against our int8 plan "
          + "(our int8 against fp32: \(int8Error))")
      XCTAssertLessThanOrEqual(rms, int8Error / 8, "\(line["pixels"]!): our int8 error against fp32 is \(int8Error)")
    }
    print("int8 QDQ on real digits, ONNX Runtime against our int8 plan: \(compare.output) (our int8 against fp32: \(int8Error))")
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
    guard Precision.bf16.runsNatively else { return }
    let ours = planLogits(try InferencePlan(model: model, settings: settings), images, batch: batch)
    try NPY.write(NDArray(shape: [batch, model.config.classes], data: ours), to: expected)
    let same = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--tolerance", "1e-4"])
    XCTAssertEqual(same.status, 0, "bf16 export against our bf16 plan: \(same.output) \(same.errors)")
  }
}
