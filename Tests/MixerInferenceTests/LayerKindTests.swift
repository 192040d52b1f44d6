// Every block kind, stem and head through the back ends that walk the network's description:
// the fp32 plan equals the training forward (1e-5), ONNX Runtime equals the fp32 plan (1e-4) and
// runs the int8 QDQ export of every kind, and int8 keeps the top-1 of a trained small model.
// Before the description these models were refused by the plan and the ONNX writer.

import Foundation
import MixerCheckpoint
@testable import MixerInference
import MixerKernels
import MixerModel
import MixerTestSupport
import XCTest

/// One small model (16×16 px, patch 4: S 16, C 32, two blocks) of each block kind, stem and head.
func layerKindConfigs() -> [(name: String, config: MixerConfig)] {
  let base = MixerConfig(
    imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 2, tokensMLP: 16, channelsMLP: 64, classes: 5)
  var kinds: [(String, MixerConfig)] = [("mixer", base)]
  for kind in [BlockKind.attention, .conv, .mixerAttention] {
    var config = base
    config.blockPattern = .uniform(kind)
    config.attentionHeads = 4
    kinds.append((kind.rawValue, config))
  }
  var list = base
  list.blockPattern = .list([.conv, .attention])
  list.attentionHeads = 4
  kinds.append(("conv,attention", list))
  var cnn = base
  cnn.stem = .cnn
  kinds.append(("cnn stem", cnn))
  var segmentation = base
  segmentation.task = .segmentation
  kinds.append(("segmentation head", segmentation))
  return kinds
}

/// `config`'s model with every parameter random (the head too) and 3 random images.
func randomModel(_ config: MixerConfig, seed: UInt64 = 3) throws -> (MixerModel, [Float]) {
  let model = try MixerModel(config: config, seed: seed)
  var rng = CounterRNG(seed: seed, 78)
  for view in model.table.views where view.role != .kernel {
    for j in view.range { model.parameters[j] = (view.role == .scale ? 1 : 0) + (rng.uniform() - 0.5) * 0.4 }
  }
  let images = (0..<(3 * config.imageHeight * config.imageWidth * 3)).map { _ in rng.uniform() * 2 - 1 }
  return (model, images)
}

/// The training forward's outputs `[B, outputsPerImage]`.
func trainingOutputs(_ model: MixerModel, _ images: [Float], batch: Int) -> [Double] {
  let acts = Activations(config: model.config, batch: batch)
  images.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, acts: acts) }
  let out = model.config.head.outputs(acts)
  return (0..<(batch * model.config.head.outputsPerImage(model.config))).map { Double(out[$0]) }
}

func planOutputs(_ plan: InferencePlan, _ images: [Float], batch: Int) -> [Float] {
  let out = images.withUnsafeBufferPointer { plan.forward(images: $0.baseAddress!, batch: batch) }
  return Array(UnsafeBufferPointer(start: out, count: batch * plan.outputsPerImage))
}

/// The shape ONNX Runtime returns: `[B, K]` or `[B, H, W, K]`.
func outputShape(_ config: MixerConfig, batch: Int) -> [Int] {
  config.task == .segmentation ? [batch, config.imageHeight, config.imageWidth, config.classes] : [batch, config.classes]
}

final class LayerKindTests: XCTestCase {
  func testFP32PlanEqualsTrainingForwardForEveryKind() throws {
    for (name, config) in layerKindConfigs() {
      let (model, images) = try randomModel(config)
      let plan = try InferencePlan(model: model, precision: .fp32)
      XCTAssertEqual(plan.layers, config.productLayers, name)
      for batch in [1, 3] {
        assertClose(
          planOutputs(plan, images, batch: batch), trainingOutputs(model, images, batch: batch), relative: 1e-5,
          absolute: 1e-5, "\(name): fp32 plan against the training forward, batch \(batch)")
      }
    }
  }

  /// The parameter table the description lays out: the official names, shapes, roles and fan-ins in
  /// forward order, for a model with every kind at once (CNN stem, the four block kinds, the
  /// segmentation head).
  func testDescriptionNamesEveryParameter() throws {
    var config = MixerConfig(
      imageHeight: 16, imageWidth: 16, patch: 4, hidden: 32, blocks: 4, tokensMLP: 16, channelsMLP: 64, classes: 5)
    config.blockPattern = .list([.mixer, .attention, .conv, .mixerAttention])
    config.attentionHeads = 4
    config.stem = .cnn
    config.task = .segmentation
    var expected: [(String, [Int], ParameterRole, Int)] = []
    func dense(_ scope: String, _ shape: [Int], role: ParameterRole = .kernel) {
      expected.append((scope + "/kernel", shape, role, role == .kernel ? shape.dropLast().reduce(1, *) : 0))
      expected.append((scope + "/bias", [shape.last!], .bias, 0))
    }
    func norm(_ scope: String) {
      expected += [(scope + "/scale", [32], .scale, 0), (scope + "/bias", [32], .bias, 0)]
    }
    dense("stem/Conv_0", [3, 3, 3, 16])
    dense("stem/Conv_1", [3, 3, 16, 32])
    for block in ["MixerBlock_0", "AttentionBlock_1", "ConvBlock_2", "MixerAttentionBlock_3"] {
      norm(block + "/LayerNorm_0")
      if block.hasPrefix("Mixer") {
        dense(block + "/token_mixing/Dense_0", [16, 16])
        dense(block + "/token_mixing/Dense_1", [16, 16])
      }
      if block.hasPrefix("Attention") || block.hasPrefix("MixerAttention") {
        dense(block + "/MultiHeadDotProductAttention_0/qkv", [32, 96])
        dense(block + "/MultiHeadDotProductAttention_0/out", [32, 32])
      }
      if block.hasPrefix("Conv") { dense(block + "/Conv_0", [3, 3, 32, 32]) }
      norm(block + "/LayerNorm_1")
      dense(block + "/channel_mixing/Dense_0", [32, 64])
      dense(block + "/channel_mixing/Dense_1", [64, 32])
    }
    norm("pre_head_layer_norm")
    dense("segmentation_head", [32, 80], role: .headKernel)
    let table = ParameterTable(config: config)
    XCTAssertEqual(table.views.map(\.name), expected.map(\.0))
    XCTAssertEqual(table.views.map(\.shape), expected.map(\.1))
    XCTAssertEqual(table.views.map(\.role), expected.map(\.2))
    XCTAssertEqual(table.views.map(\.fanIn), expected.map(\.3))
    XCTAssertEqual(table.count, expected.reduce(0) { $0 + $1.1.reduce(1, *) })
    XCTAssertEqual(table.views.map(\.offset), table.views.indices.map { table.views[..<$0].reduce(0) { $0 + $1.count } })
  }

  /// The products the description lists are the model's kernels, each once, with their shapes.
  func testProductLayersCoverEveryKernel() throws {
    for (name, config) in layerKindConfigs() {
      let table = ParameterTable(config: config)
      let kernels = table.views.filter { $0.name.hasSuffix("/kernel") }
      let layers = config.productLayers
      XCTAssertEqual(layers.map { $0.name + "/kernel" }, kernels.map(\.name), name)
      for (layer, view) in zip(layers, kernels) {
        XCTAssertEqual(layer.inputs * layer.outputs, view.count, "\(name): \(layer.name)")
        XCTAssertEqual(layer.outputs, view.shape.last, "\(name): \(layer.name)")
      }
    }
  }

  func testONNXRuntimeEqualsFP32PlanForEveryKind() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
    for (index, (name, config)) in layerKindConfigs().enumerated() {
      let (model, images) = try randomModel(config)
      let batch = 3
      let ours = planOutputs(try InferencePlan(model: model, precision: .fp32), images, batch: batch)
      let onnx = folder.appendingPathComponent("model-\(index).onnx")
      try onnxModel(model).write(to: onnx)
      let inputs = folder.appendingPathComponent("inputs-\(index).npy"), expected = folder.appendingPathComponent("out-\(index).npy")
      try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
      try NPY.write(NDArray(shape: outputShape(config, batch: batch), data: ours), to: expected)
      let run = try runPython([script, "check", onnx.path, inputs.path, expected.path, "--tolerance", "1e-4"])
      XCTAssertEqual(run.status, 0, "\(name): \(run.output) \(run.errors)")
      XCTAssertTrue(run.output.contains("\"ok\": true"), "\(name): \(run.output)")
    }
  }

  /// The QDQ export of every kind (every product int8, ranges calibrated on the same images) runs
  /// in ONNX Runtime and computes what our int8 layers compute: against the plan with every int8
  /// product on its dequantized operands (`DequantizedInt8Product`, which any CPU runs; the oneDNN
  /// int8 kernel's exact integer sums equal it up to fp32 rounding), relative RMS at most 2e-3 and
  /// the same top-1 on at least 99% of the predictions (images, or pixels). What differs is
  /// inherent: ONNX Runtime's LayerNorm and GELU round differently from ours in the last bits, and a
  /// value that lands on the other side of a quantization boundary moves by one step. A QDQ node on
  /// the wrong axis, a kernel transposed the wrong way or a missing quantization would be far off.
  func testONNXRuntimeRunsTheInt8ExportOfEveryKind() throws {
    try requirePython(["onnx", "onnxruntime", "numpy"])
    let folder = try makeTemporaryDirectory(self)
    let script = repositoryRoot.appendingPathComponent("tools/onnx_compare.py").path
    for (index, (name, config)) in layerKindConfigs().enumerated() {
      let (model, images) = try randomModel(config)
      let batch = 3
      let ranges = try calibrate(model: model, images: images, count: batch, method: .minMax)
      XCTAssertEqual(Set(ranges.keys), Set(config.productLayers.map(\.name)), "\(name): calibration covers every product")
      var settings: [String: LayerSetting] = [:]
      for layer in config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
      let ours = planOutputs(try InferencePlan(model: model, settings: settings, dequantizedInt8: true), images, batch: batch)
      let fp32 = planOutputs(try InferencePlan(model: model, precision: .fp32), images, batch: batch)
      let int8Error = relativeError(ours, fp32.map(Double.init))
      XCTAssertGreaterThan(int8Error, 1e-3, "\(name): int8 should differ from fp32")
      let onnx = folder.appendingPathComponent("model-int8-\(index).onnx")
      try onnxModel(model, settings: settings).write(to: onnx)
      let inputs = folder.appendingPathComponent("inputs-\(index).npy"), expected = folder.appendingPathComponent("out-\(index).npy")
      try NPY.write(NDArray(shape: [batch, 16, 16, 3], data: images), to: inputs)
      try NPY.write(NDArray(shape: outputShape(config, batch: batch), data: ours), to: expected)
      let run = try runPython([
        script, "check", onnx.path, inputs.path, expected.path, "--rms-tolerance", "2e-3", "--min-agreement", "0.99", "--unoptimized",
      ])
      XCTAssertEqual(run.status, 0, "\(name) (our int8 against fp32: \(int8Error)): \(run.output) \(run.errors)")
      print("\(name): ONNX Runtime int8 QDQ against our int8 \(run.output) (our int8 against fp32: \(int8Error))")
      let nodes = try runPython([
        "-c", "import onnx, sys; g = onnx.load(sys.argv[1]).graph; print(sum(n.op_type == 'QuantizeLinear' for n in g.node))",
        onnx.path,
      ])
      XCTAssertEqual(
        nodes.output.trimmingCharacters(in: .whitespacesAndNewlines), "\(config.productLayers.count)", "\(name): \(nodes.errors)")
    }
  }

  /// Trains each kind for a few SGD steps on a fixed labelled set (labels from a random teacher
  /// direction), then runs the all-int8 plan (min-max ranges from 24 training images) on 48 held-out
  /// images: its top-1 agrees with fp32 on at least 90% of them (per pixel for segmentation).
  /// On a CPU with int8 instructions (VNNI) this is our oneDNN int8 plan; elsewhere the int8
  /// products run on their dequantized operands (the same numbers up to fp32 rounding).
  func testInt8KeepsTheTop1OfATrainedModelForEveryKind() throws {
    let native = Precision.int8.runsNatively
    for (name, config) in layerKindConfigs() {
      let model = try MixerModel(config: config, seed: 7)
      var rng = CounterRNG(seed: 21)
      let perImage = config.imageHeight * config.imageWidth * 3, count = 72
      let images = (0..<(count * perImage)).map { _ in rng.uniform() * 2 - 1 }
      // a label per image: the class whose slice of the image has the largest mean
      let labels = (0..<count).map { e in
        (0..<config.classes).max { a, b in
          func mean(_ k: Int) -> Float { (0..<(perImage / config.classes)).reduce(0) { $0 + images[e * perImage + k * (perImage / config.classes) + $1] } }
          return mean(a) < mean(b)
        }!
      }
      let batch = 8
      let acts = Activations(config: config, batch: batch)
      for step in 0..<30 {
        let start = (step * batch) % 24
        model.zeroGradients()
        images.withUnsafeBufferPointer { model.forward(images: $0.baseAddress! + start * perImage, acts: acts) }
        if config.task == .segmentation {
          let masks = acts.head(SegmentationBuffers.self).masks
          for e in 0..<batch { for p in 0..<(config.imageHeight * config.imageWidth) { masks[e * config.imageHeight * config.imageWidth + p] = Int32(labels[start + e]) } }
        } else {
          let targets = acts.head(ClassificationBuffers.self).targets
          for e in 0..<batch { for k in 0..<config.classes { targets[e * config.classes + k] = k == labels[start + e] ? 1 : 0 } }
        }
        _ = model.loss(acts: acts)
        model.backward(acts: acts, lossScale: 1 / Float(batch))
        for j in 0..<model.parameters.count { model.parameters[j] -= 0.05 * model.gradients[j] }
      }
      let calibration = Array(images[0..<(24 * perImage)])
      let heldOut = Array(images[(24 * perImage)...])
      let ranges = try calibrate(model: model, images: calibration, count: 24, method: .minMax)
      let fp32 = planOutputs(try InferencePlan(model: model, precision: .fp32), heldOut, batch: 48)
      var settings: [String: LayerSetting] = [:]
      for layer in config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
      let int8Plan = try InferencePlan(model: model, settings: settings, dequantizedInt8: !native)
      XCTAssertEqual(Set(int8Plan.precisions.values), [.int8], name)
      let int8 = planOutputs(int8Plan, heldOut, batch: 48)
      let k = config.classes, predictions = fp32.count / k
      var agree = 0
      for r in 0..<predictions {
        let a = (0..<k).max { fp32[r * k + $0] < fp32[r * k + $1] }!, b = (0..<k).max { int8[r * k + $0] < int8[r * k + $1] }!
        if a == b { agree += 1 }
      }
      let agreement = Double(agree) / Double(predictions)
      print("\(name): int8 (\(native ? "oneDNN" : "dequantized operands")) top-1 agreement with fp32 \(agreement)")
      XCTAssertGreaterThanOrEqual(agreement, 0.9, "\(name): int8 top-1 agreement with fp32")
    }
  }

  func testPlanSaysWhatRunsFP32InsideAnInt8Plan() throws {
    var config = layerKindConfigs()[1].config  // attention
    config.blocks = 1
    let (model, images) = try randomModel(config)
    let fp32 = try InferencePlan(model: model, precision: .fp32)
    XCTAssertEqual(fp32.precisionSummary, "fp32")
    let ranges = try calibrate(model: model, images: images, count: 3, method: .minMax)
    var settings: [String: LayerSetting] = [:]
    for layer in config.productLayers { settings[layer.name] = LayerSetting(precision: .int8, input: ranges[layer.name]) }
    settings["head"] = LayerSetting(precision: .fp32)
    // int8 runs on every CPU (oneDNN where it is exact, else the portable kernels)
    let plan = try InferencePlan(model: model, settings: settings)
    XCTAssertEqual(plan.precisionSummary, "int8 (1 of 6 products fp32; attention scores and softmax fp32)")
  }
}
