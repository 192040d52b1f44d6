// The inference plan: the trained classification Mixer's forward (linear stem, the paper's
// blocks, mean-pool head) where every matrix product is a per-layer kernel chosen by precision
// (ProductKernels.swift). LayerNorm, GELU, the residual adds and the token mean stay fp32.
// Activations are token-major `[S, B, C]` as in training; both token-mixing products read
// activations on the left, so every layer is `out = op(X) · W + b` with W `[K×N]` as stored:
//   stem       P [S·B, P²3] · W [P²3, C]            → x_0
//   token 0    Yᵀ [B·C, S] (Y = LN_0(x) [S, B·C]) · W1 [S, D_S] → H [B·C, D_S]
//   token 1    gelu(H) [B·C, D_S] · W2 [D_S, S]       → T [B·C, S];  x[s, bc] += T[bc, s]
//   channel 0  LN_1(x) [S·B, C] · W1 [C, D_C]          → G [S·B, D_C]
//   channel 1  gelu(G) · W2 [D_C, C]                   → x += ...
//   head       mean_s(LN_pre(x)) [B, C] · W [C, K]     → logits [B, K]
// With every layer fp32 the logits are the training forward's up to the order of sums inside the
// token-mixing products (InferenceTests checks 1e-5).
// When both products of an MLP are int8 the MLP runs fused (`int8MLP`): LayerNorm writes the first
// product's u8 input directly (for token mixing already transposed, `[B·C, S]`), the first product
// applies bias and GELU and writes the second's u8 input, and the second adds its fp32 output into
// the residual stream (channel mixing) or into T (token mixing, then added transposed).

import MixerKernels
import MixerModel

/// The matrix products of a classification Mixer, in forward order, by their parameter scope.
public struct ProductLayer: Sendable, Equatable {
  /// the scope of its `kernel` and `bias` (`stem`, `MixerBlock_0/token_mixing/Dense_0`, `head`)
  public let name: String
  /// K and N of `out[M×N] = X[M×K] · W[K×N]`
  public let inputs: Int
  public let outputs: Int
  /// rows M per image
  public let rowsPerImage: Int

  /// Multiply-adds per image.
  public var macsPerImage: Int { rowsPerImage * inputs * outputs }
}

/// Why a model or a precision cannot be planned.
public struct InferenceError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

extension MixerConfig {
  /// Every matrix product of the classification forward.
  public var productLayers: [ProductLayer] {
    let s = tokens, c = hidden
    var layers = [ProductLayer(name: "stem", inputs: patchLength, outputs: c, rowsPerImage: s)]
    for i in 0..<blocks {
      let b = "MixerBlock_\(i)"
      layers += [
        ProductLayer(name: b + "/token_mixing/Dense_0", inputs: s, outputs: tokensMLP, rowsPerImage: c),
        ProductLayer(name: b + "/token_mixing/Dense_1", inputs: tokensMLP, outputs: s, rowsPerImage: c),
        ProductLayer(name: b + "/channel_mixing/Dense_0", inputs: c, outputs: channelsMLP, rowsPerImage: s),
        ProductLayer(name: b + "/channel_mixing/Dense_1", inputs: channelsMLP, outputs: c, rowsPerImage: s),
      ]
    }
    layers.append(ProductLayer(name: "head", inputs: c, outputs: classes, rowsPerImage: 1))
    return layers
  }

  /// Throws a one-line error unless the inference plan covers this model.
  public func checkInferencePlan() throws {
    guard task == .classification else {
      throw InferenceError("--precision bf16/int8 covers classification models; this one is \(task.rawValue) (use --precision fp32)")
    }
    guard stem == .linear else {
      throw InferenceError("--precision bf16/int8 covers the linear (paper) stem; this model uses --stem \(stem.rawValue) (use --precision fp32)")
    }
    if let other = (0..<blocks).map(kind(ofBlock:)).first(where: { $0 != .mixer }) {
      throw InferenceError("--precision bf16/int8 covers the paper's mixer blocks; this model has \(other.rawValue) blocks (use --precision fp32)")
    }
  }
}

/// What the plan runs each layer with: a precision, and for int8 the input's quantization and,
/// when they come from a quantized checkpoint, the int8 weights.
public struct LayerSetting: Sendable {
  public var precision: Precision
  public var input: ActivationQuantization?
  public var weights: QuantizedWeights?

  public init(precision: Precision, input: ActivationQuantization? = nil, weights: QuantizedWeights? = nil) {
    self.precision = precision
    self.input = input
    self.weights = weights
  }
}

/// Activations of the plan for one batch size.
final class PlanBuffers {
  let batch: Int
  let patches, x, y, hidden, tokenOut, pooled, logits, mean, rstd: UnsafeMutablePointer<Float>
  /// u8 inputs of the fused int8 MLPs: the LayerNorm output `[S·B, C]` or `[B·C, S]`, and the
  /// hidden activation `[B·C, D_S]` or `[S·B, D_C]`
  let quantizedInput, quantizedHidden: UnsafeMutablePointer<UInt8>
  /// staging of `layerNormQuantizeForward`
  let normStaging: UnsafeMutablePointer<Float>
  private let arena: FloatArena

  init(config cfg: MixerConfig, batch b: Int) {
    let sb = cfg.tokens * b, c = cfg.hidden
    let hiddenCount = max(b * c * cfg.tokensMLP, sb * cfg.channelsMLP)
    arena = FloatArena(sizes: [
      sb * cfg.patchLength,  // patches [S, B, P²3]
      sb * c,  // x [S, B, C], the residual stream
      sb * c,  // y: LayerNorm output [S, B, C]
      hiddenCount,  // H [B·C, D_S] or G [S·B, D_C]
      b * c * cfg.tokens,  // T [B·C, S]
      b * c,  // pooled [B, C]
      b * cfg.classes,  // logits [B, K]
      sb, sb,  // LayerNorm mean, rstd
      layerNormQuantizeStaging(channels: c),
    ])
    batch = b
    (patches, x, y, hidden, tokenOut) = (arena[0], arena[1], arena[2], arena[3], arena[4])
    (pooled, logits, mean, rstd) = (arena[5], arena[6], arena[7], arena[8])
    normStaging = arena[9]
    quantizedInput = .allocate(capacity: sb * c)
    quantizedHidden = .allocate(capacity: hiddenCount)
  }

  deinit {
    quantizedInput.deallocate()
    quantizedHidden.deallocate()
  }
}

/// A classification Mixer's forward with one kernel per matrix product.
public final class InferencePlan {
  public let model: MixerModel
  public let layers: [ProductLayer]
  /// the precision each layer runs in, by layer name
  public let precisions: [String: Precision]
  let kernels: [any ProductKernel]
  let scratch = KernelScratch()
  private var buffers: [Int: PlanBuffers] = [:]
  /// Called with each product's input before it runs (calibration): layer index, X, its count.
  var observer: ((Int, UnsafePointer<Float>, Int) -> Void)?

  /// Builds the kernels: fp32 on the model's parameters, bf16 weights rounded once, int8 weights
  /// quantized per output channel (or taken from `settings`). Throws a one-line error for a model
  /// the plan does not cover, an int8 layer without a calibrated input range, or a CPU without
  /// the instructions a precision needs.
  public init(model: MixerModel, settings: [String: LayerSetting]) throws {
    let cfg = model.config
    let layers = cfg.productLayers
    let used = Set(layers.map { settings[$0.name]?.precision ?? .fp32 })
    if used != [.fp32] { try cfg.checkInferencePlan() }
    var kernels: [any ProductKernel] = []
    for layer in layers {
      let setting = settings[layer.name] ?? LayerSetting(precision: .fp32)
      let w = model.parameters.pointer + model.table.offset(layer.name + "/kernel")
      let biasView = model.table[layer.name + "/bias"]!
      let bias = model.parameters.array(biasView.range)
      switch setting.precision {
      case .fp32:
        kernels.append(FP32Product(
          weight: w, bias: model.parameters.pointer + biasView.offset, inputs: layer.inputs, outputs: layer.outputs))
      case .bf16:
        kernels.append(BF16Product(weight: w, bias: bias, inputs: layer.inputs, outputs: layer.outputs))
      case .int8:
        guard let input = setting.input else {
          throw InferenceError(
            "layer \(layer.name) is int8 but has no calibrated input range: run `mixer-dist quantize CHECKPOINT "
              + "--calibration DATA --output DIR` and use DIR")
        }
        let weights = setting.weights ?? QuantizedWeights(w, inputs: layer.inputs, outputs: layer.outputs)
        kernels.append(Int8Product(weights: weights, bias: bias, input: input, inputs: layer.inputs, outputs: layer.outputs))
      }
    }
    self.model = model
    self.layers = layers
    self.kernels = kernels
    self.precisions = Dictionary(uniqueKeysWithValues: zip(layers.map(\.name), kernels.map(\.precision)))
  }

  /// The plan with every product in `precision` (int8 needs `inputs`, each layer's range).
  public convenience init(model: MixerModel, precision: Precision, inputs: [String: ActivationQuantization] = [:]) throws {
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers {
      settings[layer.name] = LayerSetting(precision: precision, input: inputs[layer.name])
    }
    try self.init(model: model, settings: settings)
  }

  /// "fp32", "int8", or a mix such as "int8 (3 of 18 products bf16)".
  public var precisionSummary: String {
    var counts: [Precision: Int] = [:]
    for p in precisions.values { counts[p, default: 0] += 1 }
    let main = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }!.key
    let others = counts.filter { $0.key != main }.sorted { $0.key.rawValue < $1.key.rawValue }
      .map { "\($0.value) of \(precisions.count) products \($0.key.rawValue)" }
    return others.isEmpty ? main.rawValue : "\(main.rawValue) (\(others.joined(separator: ", ")))"
  }

  /// Runs the network on `images` `[B, H, W, 3]`; returns the logits `[B, K]` (valid until the
  /// next call with the same B).
  @discardableResult
  public func forward(images: UnsafePointer<Float>, batch b: Int) -> UnsafeMutablePointer<Float> {
    let cfg = model.config
    let s = cfg.tokens, c = cfg.hidden, sb = s * b, bc = b * c
    let ds = cfg.tokensMLP, dc = cfg.channelsMLP
    let buffers = self.buffers[b] ?? PlanBuffers(config: cfg, batch: b)
    self.buffers[b] = buffers
    scratch.reserve(elements: max(sb * max(cfg.patchLength, dc), bc * ds))
    let w = model.parameters.pointer
    func product(_ index: Int, _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, transposed: Bool, rows: Int) {
      observer?(index, x, rows * kernels[index].inputs)
      kernels[index].run(out: out, x: x, transposed: transposed, rows: rows, scratch: scratch)
    }
    func layerNorm(_ scope: String, _ inp: UnsafePointer<Float>) {
      layerNormForward(
        out: buffers.y, mean: buffers.mean, rstd: buffers.rstd, inp: inp, weight: w + model.table.offset(scope + "/scale"),
        bias: w + model.table.offset(scope + "/bias"), rows: sb, channels: c, epsilon: cfg.layerNormEpsilon)
    }
    /// Both products of an MLP int8 (and no observer): LayerNorm → u8 → product gelu→u8 → product.
    func int8MLP(_ first: Int, norm scope: String, layout: QuantizedLayout, rows: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
      guard observer == nil, let dense0 = kernels[first] as? Int8Product, let dense1 = kernels[first + 1] as? Int8Product else {
        return false
      }
      layerNormQuantizeForward(
        q: buffers.quantizedInput, staging: buffers.normStaging, inp: buffers.x, weight: w + model.table.offset(scope + "/scale"),
        bias: w + model.table.offset(scope + "/bias"), rows: sb, channels: c, epsilon: cfg.layerNormEpsilon,
        quantization: dense0.input, layout: layout)
      dense0.runQuantized(
        dst: UnsafeMutableRawPointer(buffers.quantizedHidden), q: buffers.quantizedInput, rows: rows,
        epilogue: dense1.inputEpilogue(gelu: cfg.gelu))
      dense1.runQuantized(
        dst: UnsafeMutableRawPointer(out), q: buffers.quantizedHidden, rows: rows, epilogue: accumulate ? .accumulate : .float)
      return true
    }
    let x = buffers.x, hidden = buffers.hidden, tokenOut = buffers.tokenOut

    patchifyForward(
      patches: buffers.patches, images: images, batch: b, height: cfg.imageHeight, width: cfg.imageWidth, patch: cfg.patch)
    product(0, x, buffers.patches, transposed: false, rows: sb)
    for i in 0..<cfg.blocks {
      let block = "MixerBlock_\(i)", first = 1 + 4 * i
      // token mixing on Yᵀ [B·C, S]
      if !int8MLP(first, norm: block + "/LayerNorm_0", layout: .transposed(tokens: s, batch: b), rows: bc, out: tokenOut, accumulate: false) {
        layerNorm(block + "/LayerNorm_0", x)
        product(first, hidden, buffers.y, transposed: true, rows: bc)
        geluForward(out: hidden, inp: hidden, count: bc * ds, kind: cfg.gelu)
        product(first + 1, tokenOut, hidden, transposed: false, rows: bc)
      }
      addTransposed(x, tokenOut, rows: bc, cols: s)
      // channel mixing on [S·B, C]
      if !int8MLP(first + 2, norm: block + "/LayerNorm_1", layout: .rows, rows: sb, out: x, accumulate: true) {
        layerNorm(block + "/LayerNorm_1", x)
        product(first + 2, hidden, buffers.y, transposed: false, rows: sb)
        geluForward(out: hidden, inp: hidden, count: sb * dc, kind: cfg.gelu)
        product(first + 3, buffers.y, hidden, transposed: false, rows: sb)
        for j in 0..<(sb * c) { x[j] += buffers.y[j] }
      }
    }
    layerNorm("pre_head_layer_norm", x)
    tokenMeanForward(out: buffers.pooled, inp: buffers.y, tokens: s, batch: b, channels: c)
    product(kernels.count - 1, buffers.logits, buffers.pooled, transposed: false, rows: b)
    return buffers.logits
  }
}

/// x[s, r] += t[r, s] for x `[cols, rows]` and t `[rows, cols]` (blocks of 16 rows for locality).
func addTransposed(_ x: UnsafeMutablePointer<Float>, _ t: UnsafePointer<Float>, rows: Int, cols: Int) {
  KernelProfile.measure("add transposed") {
    let tile = 16
    for r0 in stride(from: 0, to: rows, by: tile) {
      let r1 = min(r0 + tile, rows)
      for s in 0..<cols {
        let xs = x + s * rows
        for r in r0..<r1 { xs[r] += t[r * cols + s] }
      }
    }
  }
}
