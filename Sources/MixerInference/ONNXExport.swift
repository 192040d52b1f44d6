// ONNX export of any model mixer-dist trains (every stem, block kind and head), written from the
// network's description (MixerModel/NetworkDescription.swift) by implementing its builder's
// operations as ONNX nodes: this file knows no layer kind. The protobuf is our own encoder
// (Protobuf.swift): ONNX files are plain protobuf, and the model needs only ModelProto,
// GraphProto, NodeProto, AttributeProto, TensorProto and ValueInfoProto (field numbers from
// onnx/onnx.proto). Opset 17 (LayerNormalization); GELU is spelled out with Tanh or Erf so any
// runtime of that opset runs it.
//
// Batch B symbolic ("batch"), input `images` [B, H, W, 3] as our NHWC pixels, output `logits`
// (the head's outputs: [B, K], or [B, H, W, K] per pixel). Values are batch-major tensors:
//   patches     Reshape→Transpose→Reshape to [B, S, P·P·3] (row in patch, column, RGB: HWIO order)
//   dense       MatMul with the kernel as [K, N] (a stem kernel [P, P, 3, C] reshaped), Add bias
//   convolution NHWC→NCHW Transpose, Conv (kernel HWIO transposed to OIHW, pads k/2), back to
//               NHWC; tokens on a grid are reshaped to the map and back
//   attention   [B, S, 3C] → [3, B, H, S, D]; softmax(Q·Kᵀ/√D)·V → [B, S, C]
//   the rest    LayerNormalization, the GELU formula, Transpose, Add, ReduceMean, Reshape
// Our activations are token-major [S, B, C]; the graph is batch-major, which changes nothing but
// the order of sums inside each product.
//
// A quantized model (`settings` from a quantized checkpoint) is written in the QDQ form: around
// every int8 product
//   x_q = QuantizeLinear(x, <layer>/input_scale, <layer>/input_zero_point)     u8, scalar scale/zero
//   W   = DequantizeLinear(<layer>/kernel (int8, as stored), <layer>/kernel_scale [N], zeros, last axis)
//   y   = MatMul or Conv(DequantizeLinear(x_q, same scale/zero), W) + bias
// so a runtime that fuses QDQ (ONNX Runtime) runs the product in integers, with our exact int8
// weights and calibrated input ranges. QuantizeLinear rounds half to even and saturates to
// [0, 255], as our kernels do. A bf16 product is an fp32 MatMul on its input rounded to bf16 and
// back (Cast to BFLOAT16, which ONNX Runtime rounds to nearest even as we do) and its kernel's
// bf16 values, so it computes what our bf16 kernel does up to the order of sums. The fused
// epilogue of our plan (GELU inside the product, then requantized) is GELU then QuantizeLinear here.

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
  case float = 1, uint8 = 2, int8 = 3, int64 = 7, bfloat16 = 16
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

  /// The int8 kernel as stored (`<scope>/kernel`, `[K, N]` or `[k, k, C_in, C_out]`) through
  /// DequantizeLinear with one scale per output channel (`<scope>/kernel_scale`, the last axis) and
  /// zero zero points.
  mutating func dequantizedKernel(_ scope: String, _ weights: QuantizedWeights, shape: [Int]) -> String {
    let kernel = scope + "/kernel", scale = scope + "/kernel_scale", zero = scope + "/kernel_zero_point"
    let n = shape.last!
    initializer(kernel, type: .int8, dims: shape, raw: weights.values.map { UInt8(bitPattern: $0) })
    weights.scales.withUnsafeBufferPointer { floats(scale, dims: [n], $0.baseAddress!, count: n) }
    initializer(zero, type: .int8, dims: [n], raw: [UInt8](repeating: 0, count: n))
    return node("DequantizeLinear", [kernel, scale, zero], attributes: [("axis", .int(shape.count - 1))])
  }

  /// A model parameter as an initializer named by its official name (shape as stored), its values
  /// rounded to bf16 when `roundedToBF16` (as a bf16 kernel runs them).
  mutating func parameter(_ model: MixerModel, _ name: String, roundedToBF16: Bool = false) -> String {
    let view = model.table[name]!
    var values = model.parameters.array(view.range)
    if roundedToBF16 { values = values.map { floatFromBF16(bf16Bits($0)) } }
    floats(name, dims: view.shape, values, count: view.count)
    return name
  }
}

/// A tensor of the graph: its name and its shape per image (the batch is the leading axis).
struct ONNXValue {
  let name: String
  let dims: [Int]
}

/// Writes the network's description as ONNX nodes (the builder's operations, once).
final class ONNXBuilder: NetworkBuilder {
  let model: MixerModel
  let settings: [String: LayerSetting]
  var graph = ONNXGraph()
  var error: Error?

  init(model: MixerModel, settings: [String: LayerSetting]) {
    self.model = model
    self.settings = settings
  }

  var images: ONNXValue {
    let cfg = model.config
    return ONNXValue(name: "images", dims: [cfg.imageHeight, cfg.imageWidth, 3])
  }

  /// `x` reshaped to `[B] + dims`.
  private func reshape(_ x: String, _ dims: [Int]) -> String { graph.node("Reshape", [x, graph.int64s([-1] + dims)]) }

  private func transpose(_ x: String, _ perm: [Int]) -> String {
    graph.node("Transpose", [x], attributes: [("perm", .ints(perm))])
  }

  /// The product's input and its kernel as stored: QDQ and the dequantized int8 kernel when the
  /// layer is int8; the input rounded to bf16 and back and the kernel's bf16 values when it is bf16.
  private func operands(_ x: String, _ layer: ProductLayer) -> (input: String, kernel: String) {
    let name = layer.name
    let setting = settings[name] ?? LayerSetting(precision: .fp32)
    switch setting.precision.format.operandRounding {
    case .none:
      return (x, graph.parameter(model, name + "/kernel"))
    case .bfloat16:
      let rounded = graph.node("Cast", [graph.node("Cast", [x], attributes: [("to", .int(ONNXType.bfloat16.rawValue))])],
        attributes: [("to", .int(ONNXType.float.rawValue))])
      return (rounded, graph.parameter(model, name + "/kernel", roundedToBF16: true))
    case .affineU8:
      guard let quantization = setting.input else {
        error = error ?? ONNXExportError("layer \(name) is \(setting.precision.rawValue) but has no calibrated input range (run mixer-dist quantize)")
        return (x, graph.parameter(model, name + "/kernel"))
      }
      let shape = model.table[name + "/kernel"]!.shape
      let weights = setting.weights ?? QuantizedWeights(
        model.parameters.pointer + model.table.offset(name + "/kernel"), inputs: layer.inputs, outputs: layer.outputs)
      return (graph.quantizeDequantize(x, name, quantization), graph.dequantizedKernel(name, weights, shape: shape))
    }
  }

  func patches(_ images: ONNXValue, patch p: Int) -> ONNXValue {
    let cfg = model.config
    // [B, H, W, 3] → [B, gh, P, gw, P, 3] → [B, gh, gw, P, P, 3] → [B, S, P·P·3]
    let grid = reshape(images.name, [cfg.gridHeight, p, cfg.gridWidth, p, 3])
    let swapped = transpose(grid, [0, 1, 3, 2, 4, 5])
    return ONNXValue(name: reshape(swapped, [cfg.tokens, cfg.patchLength]), dims: [cfg.tokens, cfg.patchLength])
  }

  func dense(_ x: ONNXValue, _ layer: ProductLayer) -> ONNXValue {
    var (input, kernel) = operands(x.name, layer)
    if model.table[layer.name + "/kernel"]!.shape.count != 2 {
      kernel = graph.node("Reshape", [kernel, graph.int64s([layer.inputs, layer.outputs])])
    }
    let out = graph.node("Add", [graph.node("MatMul", [input, kernel]), graph.parameter(model, layer.name + "/bias")])
    return ONNXValue(name: out, dims: Array(x.dims.dropLast()) + [layer.outputs])
  }

  func convolution(_ x: ONNXValue, _ layer: ProductLayer, kernel k: Int, stride: Int, grid: (height: Int, width: Int)?) -> ONNXValue {
    let map = grid.map { reshape(x.name, [$0.height, $0.width, x.dims.last!]) } ?? x.name
    let (height, width) = grid.map { ($0.height, $0.width) } ?? (x.dims[0], x.dims[1])
    let (input, kernel) = operands(map, layer)
    let pad = (k - 1) / 2
    let conv = graph.node(
      "Conv", [transpose(input, [0, 3, 1, 2]), transpose(kernel, [3, 2, 0, 1]), graph.parameter(model, layer.name + "/bias")],
      attributes: [
        ("kernel_shape", .ints([k, k])), ("strides", .ints([stride, stride])), ("pads", .ints([pad, pad, pad, pad])),
      ])
    let out = transpose(conv, [0, 2, 3, 1])
    let dims = [height / stride, width / stride, layer.outputs]
    if grid != nil { return ONNXValue(name: reshape(out, [dims[0] * dims[1], layer.outputs]), dims: [dims[0] * dims[1], layer.outputs]) }
    return ONNXValue(name: out, dims: dims)
  }

  func layerNorm(_ x: ONNXValue, scope: String, epsilon: Float) -> ONNXValue {
    let out = graph.node(
      "LayerNormalization", [x.name, graph.parameter(model, scope + "/scale"), graph.parameter(model, scope + "/bias")],
      attributes: [("axis", .int(-1)), ("epsilon", .float(epsilon))])
    return ONNXValue(name: out, dims: x.dims)
  }

  func gelu(_ x: ONNXValue, kind: GELUKind) -> ONNXValue { ONNXValue(name: graph.gelu(x.name, kind: kind), dims: x.dims) }

  func mlp(_ x: ONNXValue, _ first: ProductLayer, _ second: ProductLayer, gelu kind: GELUKind) -> ONNXValue {
    dense(gelu(dense(x, first), kind: kind), second)
  }

  func transpose(_ x: ONNXValue) -> ONNXValue {
    ONNXValue(name: transpose(x.name, [0, 2, 1]), dims: [x.dims[1], x.dims[0]])
  }

  func add(_ a: ONNXValue, _ b: ONNXValue) -> ONNXValue { ONNXValue(name: graph.node("Add", [a.name, b.name]), dims: a.dims) }

  func attention(_ qkv: ONNXValue, heads h: Int) -> ONNXValue {
    let s = qkv.dims[0], c = qkv.dims[1] / 3, d = c / h
    // [B, S, 3C] → [B, S, 3, H, D] → [3, B, H, S, D]
    let parts = transpose(reshape(qkv.name, [s, 3, h, d]), [2, 0, 3, 1, 4])
    func part(_ i: Int) -> String {
      let index = graph.name("index")
      graph.initializer(index, type: .int64, dims: [], raw: withUnsafeBytes(of: Int64(i).littleEndian) { Array($0) })
      return graph.node("Gather", [parts, index], attributes: [("axis", .int(0))])
    }
    let (q, k, v) = (part(0), part(1), part(2))
    let scores = graph.node(
      "Mul", [graph.node("MatMul", [q, transpose(k, [0, 1, 3, 2])]), graph.scalar(1 / Float(d).squareRoot(), "attention_scale")])
    let weighted = graph.node("MatMul", [graph.node("Softmax", [scores], attributes: [("axis", .int(-1))]), v])
    // [B, H, S, D] → [B, S, H, D] → [B, S, C]
    return ONNXValue(name: reshape(transpose(weighted, [0, 2, 1, 3]), [s, c]), dims: [s, c])
  }

  func mapToTokens(_ map: ONNXValue) -> ONNXValue {
    let dims = [map.dims[0] * map.dims[1], map.dims[2]]
    return ONNXValue(name: reshape(map.name, dims), dims: dims)
  }

  func meanOverTokens(_ x: ONNXValue) -> ONNXValue {
    let out = graph.node("ReduceMean", [x.name], attributes: [("axes", .ints([1])), ("keepdims", .int(0))])
    return ONNXValue(name: out, dims: [x.dims[1]])
  }

  func tokensToPixels(_ x: ONNXValue, patch p: Int, classes k: Int) -> ONNXValue {
    let cfg = model.config
    // [B, S, P·P·K] → [B, gh, gw, P, P, K] → [B, gh, P, gw, P, K] → [B, H, W, K]
    let grid = transpose(reshape(x.name, [cfg.gridHeight, cfg.gridWidth, p, p, k]), [0, 1, 3, 2, 4, 5])
    let dims = [cfg.imageHeight, cfg.imageWidth, k]
    return ONNXValue(name: reshape(grid, dims), dims: dims)
  }
}

/// The ONNX model of any model: fp32, or with `settings` (a quantized checkpoint's) every int8
/// product as QuantizeLinear/DequantizeLinear nodes around an fp32 MatMul or Conv.
public func onnxModel(_ model: MixerModel, settings: [String: LayerSetting] = [:]) throws -> Data {
  let cfg = model.config
  let builder = ONNXBuilder(model: model, settings: settings)
  let output = cfg.describe(into: builder)
  if let error = builder.error { throw error }
  builder.graph.node("Identity", [output.name], output: "logits")
  let products = cfg.productLayers
  let blockKinds = Set(cfg.blockKinds.map(\.rawValue)).sorted().joined(separator: ", ")
  return builder.graph.model(
    inputs: [ONNXGraph.valueInfo("images", dims: [nil, cfg.imageHeight, cfg.imageWidth, 3])],
    outputs: [ONNXGraph.valueInfo("logits", dims: [nil] + output.dims)],
    docString: "\(cfg.task.rawValue) model (\(cfg.stem.rawValue) stem, \(cfg.blocks) \(blockKinds) blocks, patch \(cfg.patch), "
      + "C \(cfg.hidden), \(cfg.classes) classes, \(cfg.gelu.rawValue) GELU) exported by mixer-dist; input: NHWC pixels as the "
      + "model was trained on them, output: logits"
      + "; products: " + onnxProductSummary(products, settings: settings))
}

/// How the exported file computes the products, as one line: "fp32", or e.g. "16 of 18 products
/// int8 (QDQ), 2 fp32" (bf16 products: "(Cast)", their input rounded to bf16 and back).
public func onnxProductSummary(_ products: [ProductLayer], settings: [String: LayerSetting]) -> String {
  let counts = Dictionary(grouping: products) { settings[$0.name]?.precision ?? .fp32 }.mapValues(\.count)
  func form(_ precision: Precision) -> String {
    switch precision.format.operandRounding {
    case .none: return precision.rawValue
    case .bfloat16: return "\(precision.rawValue) (Cast)"
    case .affineU8: return "\(precision.rawValue) (QDQ)"
    }
  }
  // the most reduced precision first (the registry's order reversed), fp32 last
  let present = Precision.allCases.reversed().filter { counts[$0] != nil }
  guard let first = present.first, present != [.fp32] else { return "fp32" }
  return (["\(counts[first]!) of \(products.count) products \(form(first))"]
    + present.dropFirst().map { "\(counts[$0]!) \(form($0))" }).joined(separator: ", ")
}
