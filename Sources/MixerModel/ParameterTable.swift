// The flat parameter layout: every tensor of the model is a named view (official checkpoint
// name, shape, offset) into one contiguous buffer, laid out in forward order. Gradients and
// optimizer moments use the same layout, so optimizers, clipping, all-reduce and checkpoint
// sharding work on plain ranges.

/// What a parameter is, for initialisation and weight decay.
public enum ParameterRole: String, Codable, Sendable {
  /// a Dense or Conv kernel: lecun-normal init (fan-in given), weight decay applies
  case kernel
  /// the head kernel: zero init, weight decay applies
  case headKernel
  /// a bias: zero init, no weight decay
  case bias
  /// a LayerNorm scale: one init, no weight decay
  case scale
}

/// One named tensor inside the flat buffer.
public struct ParameterView: Equatable, Sendable {
  public let name: String
  public let shape: [Int]
  public let offset: Int
  public let role: ParameterRole
  /// fan-in for kernels (lecun-normal), 0 otherwise
  public let fanIn: Int
  public var count: Int { shape.reduce(1, *) }
  public var range: Range<Int> { offset..<(offset + count) }
  public var decays: Bool { role == .kernel || role == .headKernel }
}

/// All parameter views of a config, in forward order.
public struct ParameterTable: Sendable {
  public let views: [ParameterView]
  public let count: Int
  private let index: [String: Int]

  public init(config: MixerConfig) {
    var views: [ParameterView] = []
    var offset = 0
    func add(_ name: String, _ shape: [Int], _ role: ParameterRole, fanIn: Int = 0) {
      views.append(ParameterView(name: name, shape: shape, offset: offset, role: role, fanIn: fanIn))
      offset += shape.reduce(1, *)
    }
    let p = config.patch, c = config.hidden, s = config.tokens
    let ds = config.tokensMLP, dc = config.channelsMLP, k = config.classes
    let cnnStem = config.cnnStemLayers
    if cnnStem.isEmpty {
      add("stem/kernel", [p, p, 3, c], .kernel, fanIn: p * p * 3)  // HWIO
      add("stem/bias", [c], .bias)
    }
    for (j, layer) in cnnStem.enumerated() {
      add("stem/Conv_\(j)/kernel", [3, 3, layer.inChannels, layer.outChannels], .kernel, fanIn: 9 * layer.inChannels)
      add("stem/Conv_\(j)/bias", [layer.outChannels], .bias)
    }
    for i in 0..<config.blocks {
      let kind = config.kind(ofBlock: i)
      let block = kind.scope(i)
      add("\(block)/LayerNorm_0/scale", [c], .scale)
      add("\(block)/LayerNorm_0/bias", [c], .bias)
      if kind.usesMixer {
        add("\(block)/token_mixing/Dense_0/kernel", [s, ds], .kernel, fanIn: s)
        add("\(block)/token_mixing/Dense_0/bias", [ds], .bias)
        add("\(block)/token_mixing/Dense_1/kernel", [ds, s], .kernel, fanIn: ds)
        add("\(block)/token_mixing/Dense_1/bias", [s], .bias)
      }
      if kind.usesAttention {
        add("\(block)/MultiHeadDotProductAttention_0/qkv/kernel", [c, 3 * c], .kernel, fanIn: c)
        add("\(block)/MultiHeadDotProductAttention_0/qkv/bias", [3 * c], .bias)
        add("\(block)/MultiHeadDotProductAttention_0/out/kernel", [c, c], .kernel, fanIn: c)
        add("\(block)/MultiHeadDotProductAttention_0/out/bias", [c], .bias)
      }
      if kind == .conv {
        let k = config.kernel
        add("\(block)/Conv_0/kernel", [k, k, c, c], .kernel, fanIn: k * k * c)  // HWIO
        add("\(block)/Conv_0/bias", [c], .bias)
      }
      add("\(block)/LayerNorm_1/scale", [c], .scale)
      add("\(block)/LayerNorm_1/bias", [c], .bias)
      add("\(block)/channel_mixing/Dense_0/kernel", [c, dc], .kernel, fanIn: c)
      add("\(block)/channel_mixing/Dense_0/bias", [dc], .bias)
      add("\(block)/channel_mixing/Dense_1/kernel", [dc, c], .kernel, fanIn: dc)
      add("\(block)/channel_mixing/Dense_1/bias", [c], .bias)
    }
    add("pre_head_layer_norm/scale", [c], .scale)
    add("pre_head_layer_norm/bias", [c], .bias)
    if config.isSegmentation {
      // a Dense from each token to its patch of per-pixel logits, (row, column, class) order
      add("segmentation_head/kernel", [c, p * p * k], .headKernel)
      add("segmentation_head/bias", [p * p * k], .bias)
    } else {
      add("head/kernel", [c, k], .headKernel)
      add("head/bias", [k], .bias)
    }
    self.views = views
    self.count = offset
    var index: [String: Int] = [:]
    for (i, view) in views.enumerated() { index[view.name] = i }
    self.index = index
  }

  /// The view with this official name, if any.
  public subscript(name: String) -> ParameterView? {
    index[name].map { views[$0] }
  }

  /// The offset of a view that must exist (names are built by this table).
  func offset(_ name: String) -> Int { self[name]!.offset }
}
