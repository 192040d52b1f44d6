// The network described once, for every back end that is not training: the inference plan
// (MixerInference/InferencePlan.swift), the ONNX writer (MixerInference/ONNXExport.swift) and the
// list of matrix products (`productLayers`, which calibration, the sensitivity table and the
// quantized checkpoint walk). Each layer kind (stems, token mixers, the channel MLP, the norms,
// heads) writes its forward here once, as calls on a `NetworkBuilder`; a back end implements the
// builder's few operations (a product, LayerNorm, GELU, an add...) and never learns which layer
// kind it runs. The training forward and backward stay in Mixer+Forward.swift and the layer files.
//
// Values are per image: tokens `[S, W]`, feature maps `[H, W, C]` or vectors `[W]`; the batch is
// implicit. A product (`dense`) always acts on the last axis, `out = x · W + b` with W `[K×N]` as
// stored (a conv kernel `[k, k, C_in, C_out]` is `[k²·C_in × C_out]`).

import MixerKernels

/// A matrix product of the network, by its parameter scope.
public struct ProductLayer: Sendable, Equatable {
  /// the scope of its `kernel` and `bias` (official names: OfficialNames.swift)
  public let name: String
  /// K and N of `out[M×N] = X[M×K] · W[K×N]`
  public let inputs: Int
  public let outputs: Int
  /// rows M per image
  public let rowsPerImage: Int
  /// the kernel's shape as stored (`[K, N]`, or a convolution's `[k, k, C_in, C_out]`)
  public let kernelShape: [Int]
  /// `.kernel`, or `.headKernel` for a head (zero-initialised)
  public let kernelRole: ParameterRole

  public init(
    name: String, inputs: Int, outputs: Int, rowsPerImage: Int, kernelShape: [Int]? = nil, kernelRole: ParameterRole = .kernel
  ) {
    (self.name, self.inputs, self.outputs, self.rowsPerImage) = (name, inputs, outputs, rowsPerImage)
    self.kernelShape = kernelShape ?? [inputs, outputs]
    self.kernelRole = kernelRole
  }

  /// Multiply-adds per image.
  public var macsPerImage: Int { rowsPerImage * inputs * outputs }
}

/// The operations a layer kind's forward is written in. A back end implements them once.
public protocol NetworkBuilder: AnyObject {
  associatedtype Value
  /// The images `[H, W, 3]`.
  var images: Value { get }
  /// Non-overlapping P×P patches of the images: tokens `[S, P·P·3]` (row in patch, column, RGB).
  func patches(_ images: Value, patch: Int) -> Value
  /// `x · W + b` over the last axis.
  func dense(_ x: Value, _ layer: ProductLayer) -> Value
  /// A k×k convolution with zero padding k/2 and this stride, as one product over the im2col
  /// columns (`layer.inputs` = k²·C_in). x is a map `[H, W, C]`, or tokens `[S, C]` on the
  /// `grid` (then the result is tokens too).
  func convolution(_ x: Value, _ layer: ProductLayer, kernel: Int, stride: Int, grid: (height: Int, width: Int)?) -> Value
  /// LayerNorm over the last axis with `scope/scale` and `scope/bias`.
  func layerNorm(_ x: Value, scope: String, epsilon: Float) -> Value
  /// GELU of the model's form, elementwise.
  func gelu(_ x: Value, kind: GELUKind) -> Value
  /// `second(gelu(first(x)))`: the MLP both mixers of the paper use.
  func mlp(_ x: Value, _ first: ProductLayer, _ second: ProductLayer, gelu: GELUKind) -> Value
  /// Swaps the two axes of `[R, W]`.
  func transpose(_ x: Value) -> Value
  /// a + b (same shape).
  func add(_ a: Value, _ b: Value) -> Value
  /// Multi-head dot-product attention on qkv `[S, 3C]` (Q | K | V, heads of C/H each): `[S, C]`.
  func attention(_ qkv: Value, heads: Int) -> Value
  /// A map `[gh, gw, C]` read as tokens `[gh·gw, C]` (row-major over the grid).
  func mapToTokens(_ map: Value) -> Value
  /// The mean over tokens: `[S, C]` → `[C]`.
  func meanOverTokens(_ x: Value) -> Value
  /// Per-token patches of per-pixel outputs `[S, P·P·K]` (row, column, class) → `[H, W, K]`.
  func tokensToPixels(_ x: Value, patch: Int, classes: Int) -> Value
}

extension MixerConfig {
  /// The whole forward, stem to head, written into `builder`; returns the head's outputs.
  public func describe<Builder: NetworkBuilder>(into builder: Builder) -> Builder.Value {
    var x = stem.stem.describe(self, images: builder.images, into: builder)
    for i in 0..<blocks {
      let blockKind = kind(ofBlock: i), scope = blockKind.scope(i)
      // token mixing: every mixer of the kind reads Y = LN_0(x); their branches are summed
      let y = builder.layerNorm(x, scope: OfficialName.join(scope, OfficialName.layerNorm0), epsilon: layerNormEpsilon)
      var branch: Builder.Value?
      for mixer in blockKind.tokenMixers {
        let t = mixer.describe(self, y, scope: scope, into: builder)
        branch = branch.map { builder.add($0, t) } ?? t
      }
      x = builder.add(x, branch!)
      x = builder.add(x, ChannelMLP().describe(self, x, scope: scope, into: builder))
    }
    let y = builder.layerNorm(x, scope: OfficialName.preHeadLayerNorm, epsilon: layerNormEpsilon)
    return head.describe(self, y, into: builder)
  }

  /// Every matrix product of the forward, in order.
  public var productLayers: [ProductLayer] {
    let collector = ProductCollector()
    _ = describe(into: collector)
    return collector.layers
  }
}

/// Every block's channel MLP on Y = LN_1(x): `gelu(Y·W1 + b1)·W2 + b2` per token.
public struct ChannelMLP: Sendable {
  public init() {}
  public func describe<Builder: NetworkBuilder>(
    _ config: MixerConfig, _ x: Builder.Value, scope: String, into builder: Builder
  ) -> Builder.Value {
    let s = config.tokens, c = config.hidden, dc = config.channelsMLP
    typealias N = OfficialName
    let y = builder.layerNorm(x, scope: N.join(scope, N.layerNorm1), epsilon: config.layerNormEpsilon)
    return builder.mlp(
      y, ProductLayer(name: N.join(scope, N.channelMixing, N.dense0), inputs: c, outputs: dc, rowsPerImage: s),
      ProductLayer(name: N.join(scope, N.channelMixing, N.dense1), inputs: dc, outputs: c, rowsPerImage: s), gelu: config.gelu)
  }
}

/// A builder that only records the products, in order.
final class ProductCollector: NetworkBuilder {
  var layers: [ProductLayer] = []
  var images: Int { 0 }
  func patches(_ images: Int, patch: Int) -> Int { 0 }
  func dense(_ x: Int, _ layer: ProductLayer) -> Int {
    layers.append(layer)
    return 0
  }
  func convolution(_ x: Int, _ layer: ProductLayer, kernel: Int, stride: Int, grid: (height: Int, width: Int)?) -> Int {
    layers.append(layer)
    return 0
  }
  func layerNorm(_ x: Int, scope: String, epsilon: Float) -> Int { 0 }
  func gelu(_ x: Int, kind: GELUKind) -> Int { 0 }
  func mlp(_ x: Int, _ first: ProductLayer, _ second: ProductLayer, gelu: GELUKind) -> Int {
    layers += [first, second]
    return 0
  }
  func transpose(_ x: Int) -> Int { 0 }
  func add(_ a: Int, _ b: Int) -> Int { 0 }
  func attention(_ qkv: Int, heads: Int) -> Int { 0 }
  func mapToTokens(_ map: Int) -> Int { 0 }
  func meanOverTokens(_ x: Int) -> Int { 0 }
  func tokensToPixels(_ x: Int, patch: Int, classes: Int) -> Int { 0 }
}

/// A builder that lays out the parameters every operation names, in forward order: the
/// description's parameter table (`ParameterTable(describing:)`).
final class ParameterCollector: NetworkBuilder {
  var builder = ParameterTableBuilder()
  let config: MixerConfig
  init(_ config: MixerConfig) { self.config = config }

  private func product(_ layer: ProductLayer) {
    builder.add(OfficialName.kernel(layer.name), layer.kernelShape, layer.kernelRole, fanIn: layer.kernelRole == .kernel ? layer.inputs : 0)
    builder.add(OfficialName.bias(layer.name), [layer.outputs], .bias)
  }

  var images: [Int] { [config.imageHeight, config.imageWidth, 3] }
  func patches(_ images: [Int], patch: Int) -> [Int] { [config.tokens, patch * patch * 3] }
  func dense(_ x: [Int], _ layer: ProductLayer) -> [Int] {
    product(layer)
    return Array(x.dropLast()) + [layer.outputs]
  }
  func convolution(_ x: [Int], _ layer: ProductLayer, kernel: Int, stride: Int, grid: (height: Int, width: Int)?) -> [Int] {
    product(layer)
    return grid == nil ? [x[0] / stride, x[1] / stride, layer.outputs] : [x[0], layer.outputs]
  }
  func layerNorm(_ x: [Int], scope: String, epsilon: Float) -> [Int] {
    builder.add(OfficialName.scale(scope), [x.last!], .scale)
    builder.add(OfficialName.bias(scope), [x.last!], .bias)
    return x
  }
  func gelu(_ x: [Int], kind: GELUKind) -> [Int] { x }
  func mlp(_ x: [Int], _ first: ProductLayer, _ second: ProductLayer, gelu: GELUKind) -> [Int] {
    product(first)
    product(second)
    return Array(x.dropLast()) + [second.outputs]
  }
  func transpose(_ x: [Int]) -> [Int] { [x[1], x[0]] }
  func add(_ a: [Int], _ b: [Int]) -> [Int] { a }
  func attention(_ qkv: [Int], heads: Int) -> [Int] { [qkv[0], qkv[1] / 3] }
  func mapToTokens(_ map: [Int]) -> [Int] { [map[0] * map[1], map[2]] }
  func meanOverTokens(_ x: [Int]) -> [Int] { [x[1]] }
  func tokensToPixels(_ x: [Int], patch: Int, classes: Int) -> [Int] { [config.imageHeight, config.imageWidth, classes] }
}

extension ParameterTable {
  /// The parameters the network's description names, in forward order.
  public init(describing config: MixerConfig) {
    let collector = ParameterCollector(config)
    _ = config.describe(into: collector)
    self.init(views: collector.builder.views)
  }
}
