// ONNX export of the classification Mixer (linear stem, the paper's blocks, mean-pool head), fp32,
// written with our own protobuf encoder (Protobuf.swift): ONNX files are plain protobuf, and the
// model needs only ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto and
// ValueInfoProto (field numbers from onnx/onnx.proto). Opset 17 (LayerNormalization); GELU is
// spelled out with Tanh or Erf so any runtime of that opset runs it.
//
// Graph, batch B symbolic ("batch"), input `images` [B, H, W, 3] as our NHWC pixels:
//   patches = Reshape→Transpose→Reshape to [B, S, P·P·3] (row in patch, column, RGB: HWIO order)
//   x = patches · stem/kernel [P²3, C] + stem/bias                          [B, S, C]
//   per block: x += Transpose(GELU(Transpose(LN_0(x)) · W1 + b1) · W2 + b2)   token mixing on [B, C, S]
//              x += GELU(LN_1(x) · W1 + b1) · W2 + b2                          channel mixing
//   logits = ReduceMean_S(LN_pre(x)) · head/kernel + head/bias              [B, K]
// Our activations are token-major [S, B, C]; the graph is batch-major, which changes nothing but
// the order of sums inside each product.
//
// A quantized model (`settings` from a quantized checkpoint) is written in the QDQ form: around
// every int8 product
//   x_q = QuantizeLinear(x, <layer>/input_scale, <layer>/input_zero_point)     u8, scalar scale/zero
//   W   = DequantizeLinear(<layer>/kernel (int8 [K, N]), <layer>/kernel_scale [N], zeros, axis 1)
//   y   = MatMul(DequantizeLinear(x_q, same scale/zero), W) + bias
// so a runtime that fuses QDQ (ONNX Runtime) runs the product in integers, with our exact int8
// weights and calibrated input ranges. QuantizeLinear rounds half to even and saturates to
// [0, 255], as our kernels do. bf16 and fp32 layers stay fp32 in the file (a bf16 layer's kernel
// holds its bf16-rounded values; its activations are not rounded). The fused epilogue of our plan
// (GELU inside the product, then requantized) is GELU then QuantizeLinear here.

import Foundation
import MixerKernels
import MixerModel

/// Why a model cannot be exported to ONNX.
public struct ONNXExportError: Error, CustomStringConvertible {
  public let description: String
  init(_ description: String) { self.description = description }
}

/// ONNX TensorProto.DataType values used here.
enum ONNXType: Int {
  case float = 1, uint8 = 2, int8 = 3, int64 = 7
}

/// An ONNX graph being assembled: nodes in execution order and initializers (the weights).
struct ONNXGraph {
  var nodes: [ProtobufMessage] = []
  var initializers: [ProtobufMessage] = []
  private var counter = 0

  /// A fresh value name with a readable prefix.
  mutating func name(_ prefix: String) -> String {
    counter += 1
    return "\(prefix)_\(counter)"
  }

  /// Adds a raw-data initializer.
  mutating func initializer(_ name: String, type: ONNXType, dims: [Int], raw: [UInt8]) {
    var t = ProtobufMessage()
    for d in dims { t.int(1, d) }  // dims
    t.int(2, type.rawValue)  // data_type
    t.string(8, name)  // name
    t.bytes(9, raw)  // raw_data
    initializers.append(t)
  }

  /// Adds an fp32 initializer (little-endian raw data).
  mutating func floats(_ name: String, dims: [Int], _ values: UnsafePointer<Float>, count: Int) {
    var raw = [UInt8](repeating: 0, count: 4 * count)
    for i in 0..<count {
      let bits = values[i].bitPattern.littleEndian
      withUnsafeBytes(of: bits) { for j in 0..<4 { raw[4 * i + j] = $0[j] } }
    }
    initializer(name, type: .float, dims: dims, raw: raw)
  }

  /// Adds an fp32 scalar constant and returns its name.
  mutating func scalar(_ value: Float, _ prefix: String = "const") -> String {
    let n = name(prefix)
    var v = value
    floats(n, dims: [], &v, count: 1)
    return n
  }

  /// Adds an int64 vector constant (shapes, axes) and returns its name.
  mutating func int64s(_ values: [Int], _ prefix: String = "shape") -> String {
    let n = name(prefix)
    var raw: [UInt8] = []
    for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { raw.append(contentsOf: $0) } }
    initializer(n, type: .int64, dims: [values.count], raw: raw)
    return n
  }

  /// An attribute value of a node.
  enum Attribute {
    case int(Int), float(Float), ints([Int])
  }

  /// Appends a node; returns its (single) output name.
  @discardableResult
  mutating func node(
    _ op: String, _ inputs: [String], output: String? = nil, attributes: [(String, Attribute)] = []
  ) -> String {
    let out = output ?? name(op.lowercased())
    var n = ProtobufMessage()
    for i in inputs { n.string(1, i) }
    n.string(2, out)
    n.string(3, out)  // node name = its output's
    n.string(4, op)
    for (key, value) in attributes {
      var a = ProtobufMessage()
      a.string(1, key)
      switch value {
      case .int(let v):
        a.int(3, v)
        a.int(20, 2)  // INT
      case .float(let v):
        a.float(2, v)
        a.int(20, 1)  // FLOAT
      case .ints(let vs):
        for v in vs { a.int(8, v) }
        a.int(20, 7)  // INTS
      }
      n.message(5, a)
    }
    nodes.append(n)
    return out
  }

  /// A graph input or output: a float tensor with these dims (nil: the symbolic batch).
  static func valueInfo(_ name: String, dims: [Int?], type: ONNXType = .float) -> ProtobufMessage {
    var shape = ProtobufMessage()
    for d in dims {
      var dim = ProtobufMessage()
      if let d { dim.int(1, d) } else { dim.string(2, "batch") }
      shape.message(1, dim)
    }
    var tensor = ProtobufMessage()
    tensor.int(1, type.rawValue)
    tensor.message(2, shape)
    var typeProto = ProtobufMessage()
    typeProto.message(1, tensor)
    var info = ProtobufMessage()
    info.string(1, name)
    info.message(2, typeProto)
    return info
  }

  /// The serialized ModelProto (IR version 8, opset 17).
  func model(inputs: [ProtobufMessage], outputs: [ProtobufMessage], docString: String) -> Data {
    var graph = ProtobufMessage()
    for n in nodes { graph.message(1, n) }
    graph.string(2, "mixer")
    for t in initializers { graph.message(5, t) }
    graph.string(10, docString)
    for i in inputs { graph.message(11, i) }
    for o in outputs { graph.message(12, o) }
    var opset = ProtobufMessage()
    opset.string(1, "")
    opset.int(2, 17)
    var model = ProtobufMessage()
    model.int(1, 8)  // ir_version
    model.string(2, "mixer-dist")
    model.message(7, graph)
    model.message(8, opset)
    return Data(model.bytes)
  }
}

extension ONNXGraph {
  /// gelu(x) with the model's form, spelled out in elementwise ops.
  mutating func gelu(_ x: String, kind: GELUKind) -> String {
    let half = scalar(0.5, "half"), one = scalar(1, "one")
    let inner: String
    switch kind {
    case .tanh:
      let x3 = node("Mul", [node("Mul", [x, x]), x])
      let cubic = node("Mul", [x3, scalar(0.044_715, "gelu_cubic")])
      let arg = node("Mul", [node("Add", [x, cubic]), scalar(0.797_884_560_802_865_4, "sqrt_2_over_pi")])
      inner = node("Tanh", [arg])
    case .erf:
      inner = node("Erf", [node("Div", [x, scalar(Float(2).squareRoot(), "sqrt2")])])
    }
    return node("Mul", [node("Mul", [x, node("Add", [inner, one])]), half])
  }

  /// QuantizeLinear then DequantizeLinear of `x` with the layer's u8 input quantization
  /// (`<scope>/input_scale`, `<scope>/input_zero_point`, both scalars).
  mutating func quantizeDequantize(_ x: String, _ scope: String, _ q: ActivationQuantization) -> String {
    let scale = scope + "/input_scale", zero = scope + "/input_zero_point"
    var value = q.scale
    floats(scale, dims: [], &value, count: 1)
    initializer(zero, type: .uint8, dims: [], raw: [UInt8(q.zeroPoint)])
    let quantized = node("QuantizeLinear", [x, scale, zero])
    return node("DequantizeLinear", [quantized, scale, zero])
  }

  /// The int8 kernel `[K, N]` (`<scope>/kernel`) through DequantizeLinear with one scale per
  /// output column (`<scope>/kernel_scale`, axis 1) and zero zero points.
  mutating func dequantizedKernel(_ scope: String, _ weights: QuantizedWeights, inputs k: Int, outputs n: Int) -> String {
    let kernel = scope + "/kernel", scale = scope + "/kernel_scale", zero = scope + "/kernel_zero_point"
    initializer(kernel, type: .int8, dims: [k, n], raw: weights.values.map { UInt8(bitPattern: $0) })
    weights.scales.withUnsafeBufferPointer { floats(scale, dims: [n], $0.baseAddress!, count: n) }
    initializer(zero, type: .int8, dims: [n], raw: [UInt8](repeating: 0, count: n))
    return node("DequantizeLinear", [kernel, scale, zero], attributes: [("axis", .int(1))])
  }

  /// A model parameter as an initializer named by its official name (shape as stored).
  mutating func parameter(_ model: MixerModel, _ name: String) -> String {
    let view = model.table[name]!
    floats(name, dims: view.shape, model.parameters.pointer + view.offset, count: view.count)
    return name
  }
}

/// The ONNX model of a classification Mixer with the linear stem and the paper's blocks: fp32, or
/// with `settings` (a quantized checkpoint's) every int8 product as QuantizeLinear/DequantizeLinear
/// nodes around an fp32 MatMul.
public func onnxModel(_ model: MixerModel, settings: [String: LayerSetting] = [:]) throws -> Data {
  let cfg = model.config
  guard cfg.task == .classification else {
    throw ONNXExportError("ONNX export covers classification models; this checkpoint is \(cfg.task.rawValue)")
  }
  guard cfg.stem == .linear else {
    throw ONNXExportError("ONNX export covers the linear (paper) stem; this model uses --stem \(cfg.stem.rawValue)")
  }
  if let other = (0..<cfg.blocks).map(cfg.kind(ofBlock:)).first(where: { $0 != .mixer }) {
    throw ONNXExportError("ONNX export covers the paper's mixer blocks; this model has \(other.rawValue) blocks")
  }
  let p = cfg.patch, s = cfg.tokens, c = cfg.hidden
  let int8Count = cfg.productLayers.filter { settings[$0.name]?.precision == .int8 }.count
  var g = ONNXGraph()

  // stem: [B, H, W, 3] → [B, gh, P, gw, P, 3] → [B, gh, gw, P, P, 3] → [B, S, P·P·3]
  let grid = g.node("Reshape", ["images", g.int64s([-1, cfg.gridHeight, p, cfg.gridWidth, p, 3])])
  let swapped = g.node("Transpose", [grid], attributes: [("perm", .ints([0, 1, 3, 2, 4, 5]))])
  let patches = g.node("Reshape", [swapped, g.int64s([-1, s, cfg.patchLength])])
  let layers = Dictionary(uniqueKeysWithValues: cfg.productLayers.map { ($0.name, $0) })
  /// inp · W + b for the product `scope`: fp32, or int8 in the QDQ form.
  func dense(_ g: inout ONNXGraph, _ inp: String, _ scope: String, output: String? = nil) throws -> String {
    let layer = layers[scope]!
    let kernel: String, input: String
    if let setting = settings[scope], setting.precision == .int8 {
      guard let quantization = setting.input else {
        throw ONNXExportError("layer \(scope) is int8 but has no calibrated input range (run mixer-dist quantize)")
      }
      let weights = setting.weights ?? QuantizedWeights(
        model.parameters.pointer + model.table.offset(scope + "/kernel"), inputs: layer.inputs, outputs: layer.outputs)
      input = g.quantizeDequantize(inp, scope, quantization)
      kernel = g.dequantizedKernel(scope, weights, inputs: layer.inputs, outputs: layer.outputs)
    } else {
      input = inp
      let stored = g.parameter(model, scope + "/kernel")
      // the stem's kernel is stored [P, P, 3, C]
      kernel = model.table[stored]!.shape.count == 2 ? stored : g.node("Reshape", [stored, g.int64s([layer.inputs, layer.outputs])])
    }
    return g.node("Add", [g.node("MatMul", [input, kernel]), g.parameter(model, scope + "/bias")], output: output)
  }
  var x = try dense(&g, patches, "stem", output: "stem_out")

  func layerNorm(_ g: inout ONNXGraph, _ inp: String, _ scope: String) -> String {
    g.node(
      "LayerNormalization", [inp, g.parameter(model, scope + "/scale"), g.parameter(model, scope + "/bias")],
      attributes: [("axis", .int(-1)), ("epsilon", .float(cfg.layerNormEpsilon))])
  }
  for i in 0..<cfg.blocks {
    let block = "MixerBlock_\(i)"
    let y = g.node("Transpose", [layerNorm(&g, x, block + "/LayerNorm_0")], attributes: [("perm", .ints([0, 2, 1]))])
    let hidden = g.gelu(try dense(&g, y, block + "/token_mixing/Dense_0"), kind: cfg.gelu)
    let token = g.node("Transpose", [try dense(&g, hidden, block + "/token_mixing/Dense_1")], attributes: [("perm", .ints([0, 2, 1]))])
    x = g.node("Add", [x, token], output: "\(block)_mid")
    let channelHidden = g.gelu(try dense(&g, layerNorm(&g, x, block + "/LayerNorm_1"), block + "/channel_mixing/Dense_0"), kind: cfg.gelu)
    x = g.node("Add", [x, try dense(&g, channelHidden, block + "/channel_mixing/Dense_1")], output: "\(block)_out")
  }
  let pooled = g.node(
    "ReduceMean", [layerNorm(&g, x, "pre_head_layer_norm")], attributes: [("axes", .ints([1])), ("keepdims", .int(0))])
  _ = try dense(&g, pooled, "head", output: "logits")
  return g.model(
    inputs: [ONNXGraph.valueInfo("images", dims: [nil, cfg.imageHeight, cfg.imageWidth, 3])],
    outputs: [ONNXGraph.valueInfo("logits", dims: [nil, cfg.classes])],
    docString: "MLP-Mixer (\(cfg.blocks) blocks, patch \(p), C \(c), \(cfg.classes) classes, \(cfg.gelu.rawValue) GELU) "
      + "exported by mixer-dist; input: NHWC pixels as the model was trained on them, output: logits"
      + (int8Count > 0 ? "; \(int8Count) of \(cfg.productLayers.count) products int8 (QDQ), the others fp32" : ""))
}
