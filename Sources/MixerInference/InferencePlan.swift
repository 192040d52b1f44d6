// The inference plan: the network's description (MixerModel/NetworkDescription.swift) compiled
// into a list of steps over preallocated buffers, every matrix product a per-layer kernel chosen
// by precision (MixerKernels/InferenceKernels.swift). Everything but the products (LayerNorm, GELU, the adds,
// the attention between its two products, im2col, the token mean) stays fp32. This file knows
// the builder's operations, never a layer kind: any stem, block kind and head that describes
// itself runs here at every precision.
//
// Buffers hold the batch; a value `[R, W]` per image lies in one of four layouts, so that a
// transpose is free and every product reads its operand in place:
//   batchMajor       (b·R + r)·W + w       maps `[H, W, C]` and vectors `[W]` too
//   tokenMajor       (r·B + b)·W + w       the residual stream `[S, B, C]`, as in training
//   transposedBatch  (b·W + w)·R + r       a batchMajor `[W, R]` read transposed
//   transposedToken  (w·B + b)·R + r       a tokenMajor `[W, R]` read transposed: a product reads
//                                          it as X stored `[K×M]` (the token-mixing MLP's Yᵀ)
// With every product fp32 the outputs are the training forward's up to the order of sums
// (InferencePlanTests checks 1e-5). Buffers are shared between values whose lives do not
// overlap (assigned once, when the plan is built).
// An MLP whose two products are int8 runs fused: its input is quantized to u8 once (by the
// LayerNorm that makes it, `layerNormQuantizeForward`, when only such MLPs read that LayerNorm),
// the first product applies bias and GELU and writes the second's u8 input, so the hidden
// activation never exists in fp32.

import MixerKernels
import MixerModel

/// Why a model or a precision cannot be planned.
public struct InferenceError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// Where a value's elements lie (see the header).
enum ValueLayout: Equatable {
  case batchMajor, tokenMajor, transposedBatch, transposedToken

  /// The layout of the same memory read with its two axes swapped.
  var transposed: ValueLayout {
    switch self {
    case .batchMajor: return .transposedBatch
    case .transposedBatch: return .batchMajor
    case .tokenMajor: return .transposedToken
    case .transposedToken: return .tokenMajor
    }
  }
}

/// A value of the plan: its shape per image, its layout, and the value whose buffer it reads
/// (itself, or the one it is a transposed view of).
struct PlanValue {
  var dims: [Int]
  var layout: ValueLayout
  var root: Int
  var perImage: Int { dims.reduce(1, *) }
  /// the last axis (W)
  var width: Int { dims.last! }
  /// rows per image when the last axis is the row (R, or H·W for a map)
  var rows: Int { perImage / width }

  /// The buffer offset of element `i` (row-major over `dims`) of image `b` of `batch`.
  func offset(image b: Int, index i: Int, batch: Int) -> Int {
    let w = width, r = rows
    switch layout {
    case .batchMajor: return b * perImage + i
    case .tokenMajor: return ((i / w) * batch + b) * w + i % w
    case .transposedBatch: return (b * w + i % w) * r + i / w
    case .transposedToken: return ((i % w) * batch + b) * r + i / w
    }
  }
}

/// One step of the plan.
enum PlanStep {
  case patches(out: Int, patch: Int)
  case product(out: Int, input: Int, kernel: Int)
  case columns(out: Int, input: Int, kernel: Int, stride: Int, grid: (height: Int, width: Int)?)
  case layerNorm(out: Int, input: Int, scope: String, epsilon: Float)
  case gelu(out: Int, input: Int, kind: GELUKind)
  case mlp(out: Int, input: Int, first: Int, second: Int, kind: GELUKind)
  case add(out: Int, a: Int, b: Int)
  case relayout(out: Int, input: Int)
  case attention(out: Int, qkv: Int, heads: Int)
  case mapToTokens(out: Int, input: Int, grid: (height: Int, width: Int))
  case mean(out: Int, input: Int)
  case pixels(out: Int, input: Int, patch: Int, classes: Int)

  var output: Int {
    switch self {
    case .patches(let out, _), .product(let out, _, _), .columns(let out, _, _, _, _), .layerNorm(let out, _, _, _),
      .gelu(let out, _, _), .mlp(let out, _, _, _, _), .add(let out, _, _), .relayout(let out, _),
      .attention(let out, _, _), .mapToTokens(let out, _, _), .mean(let out, _), .pixels(let out, _, _, _):
      return out
    }
  }

  var inputs: [Int] {
    switch self {
    case .patches: return [0]
    case .product(_, let input, _), .columns(_, let input, _, _, _), .layerNorm(_, let input, _, _), .gelu(_, let input, _),
      .mlp(_, let input, _, _, _), .relayout(_, let input), .attention(_, let input, _), .mapToTokens(_, let input, _),
      .mean(_, let input), .pixels(_, let input, _, _):
      return [input]
    case .add(_, let a, let b): return [a, b]
    }
  }
}

/// An int8 MLP whose input comes straight from LayerNorm of `source` (fused, see the header).
struct FusedNorm {
  let source: Int
  let scope: String
  let epsilon: Float
  let layout: QuantizedLayout
}

/// Builds a plan's steps from the network's description (the builder's operations, once).
final class PlanBuilder: NetworkBuilder {
  let model: MixerModel
  let settings: [String: LayerSetting]
  var values: [PlanValue] = []
  var steps: [PlanStep] = []
  var layers: [ProductLayer] = []
  var kernels: [any ProductKernel] = []
  var error: Error?

  /// int8 layers as `DequantizedInt8Product` (fp32 on dequantized operands) instead of oneDNN
  let dequantizedInt8: Bool

  init(model: MixerModel, settings: [String: LayerSetting], dequantizedInt8: Bool) {
    self.model = model
    self.settings = settings
    self.dequantizedInt8 = dequantizedInt8
    let cfg = model.config
    values = [PlanValue(dims: [cfg.imageHeight, cfg.imageWidth, 3], layout: .batchMajor, root: 0)]
  }

  private func make(_ dims: [Int], _ layout: ValueLayout) -> Int {
    values.append(PlanValue(dims: dims, layout: layout, root: values.count))
    return values.count - 1
  }

  /// `x` in one of `layouts` (the first when it must be copied).
  private func laidOut(_ x: Int, _ layouts: [ValueLayout]) -> Int {
    if layouts.contains(values[x].layout) { return x }
    let out = make(values[x].dims, layouts[0])
    steps.append(.relayout(out: out, input: x))
    return out
  }

  /// The kernel of `layer` in its setting's precision.
  private func kernel(_ layer: ProductLayer) -> Int {
    let setting = settings[layer.name] ?? LayerSetting(precision: .fp32)
    let w = model.parameters.pointer + model.table.offset(layer.name + "/kernel")
    let biasView = model.table[layer.name + "/bias"]!
    let (k, n) = (layer.inputs, layer.outputs)
    do {
      kernels.append(
        try setting.precision.makeKernel(
          weight: w, bias: model.parameters.pointer + biasView.offset, inputs: k, outputs: n, setting: setting,
          dequantized: dequantizedInt8))
    } catch {
      self.error = self.error ?? InferenceError("layer \(layer.name) \(error)")
      kernels.append(FP32Product(weight: w, bias: model.parameters.pointer + biasView.offset, inputs: k, outputs: n))
    }
    layers.append(layer)
    return kernels.count - 1
  }

  /// The layout a product's output has for an input in `layout`.
  private func productLayout(_ layout: ValueLayout) -> ValueLayout { layout == .tokenMajor ? .tokenMajor : .batchMajor }

  var images: Int { 0 }

  func patches(_ images: Int, patch: Int) -> Int {
    let cfg = model.config
    let out = make([cfg.tokens, patch * patch * 3], .tokenMajor)
    steps.append(.patches(out: out, patch: patch))
    return out
  }

  func dense(_ x: Int, _ layer: ProductLayer) -> Int {
    let input = laidOut(x, [.batchMajor, .tokenMajor, .transposedToken])
    let out = make(Array(values[input].dims.dropLast()) + [layer.outputs], productLayout(values[input].layout))
    steps.append(.product(out: out, input: input, kernel: kernel(layer)))
    return out
  }

  func convolution(_ x: Int, _ layer: ProductLayer, kernel k: Int, stride: Int, grid: (height: Int, width: Int)?) -> Int {
    let columns: Int
    if let grid {
      let input = laidOut(x, [.tokenMajor])
      columns = make([grid.height * grid.width, k * k * values[input].width], .tokenMajor)
      steps.append(.columns(out: columns, input: input, kernel: k, stride: stride, grid: grid))
    } else {
      let input = laidOut(x, [.batchMajor])
      let d = values[input].dims
      columns = make([d[0] / stride, d[1] / stride, k * k * d[2]], .batchMajor)
      steps.append(.columns(out: columns, input: input, kernel: k, stride: stride, grid: nil))
    }
    return dense(columns, layer)
  }

  func layerNorm(_ x: Int, scope: String, epsilon: Float) -> Int {
    let input = laidOut(x, [.tokenMajor, .batchMajor])
    let out = make(values[input].dims, values[input].layout)
    steps.append(.layerNorm(out: out, input: input, scope: scope, epsilon: epsilon))
    return out
  }

  func gelu(_ x: Int, kind: GELUKind) -> Int {
    let out = make(values[x].dims, values[x].layout)
    steps.append(.gelu(out: out, input: x, kind: kind))
    return out
  }

  func mlp(_ x: Int, _ first: ProductLayer, _ second: ProductLayer, gelu kind: GELUKind) -> Int {
    let input = laidOut(x, [.batchMajor, .tokenMajor, .transposedToken])
    let (k1, k2) = (kernel(first), kernel(second))
    let out = make(Array(values[input].dims.dropLast()) + [second.outputs], productLayout(values[input].layout))
    steps.append(.mlp(out: out, input: input, first: k1, second: k2, kind: kind))
    return out
  }

  func transpose(_ x: Int) -> Int {
    let v = values[x]
    precondition(v.dims.count == 2, "transpose of a value of rank \(v.dims.count)")
    values.append(PlanValue(dims: [v.dims[1], v.dims[0]], layout: v.layout.transposed, root: v.root))
    return values.count - 1
  }

  func add(_ a: Int, _ b: Int) -> Int {
    let layout = values[a].layout == .tokenMajor ? ValueLayout.tokenMajor : .batchMajor
    let out = make(values[a].dims, layout)
    steps.append(.add(out: out, a: a, b: b))
    return out
  }

  func attention(_ qkv: Int, heads: Int) -> Int {
    let input = laidOut(qkv, [.tokenMajor])
    let out = make([values[input].dims[0], values[input].width / 3], .tokenMajor)
    steps.append(.attention(out: out, qkv: input, heads: heads))
    return out
  }

  func mapToTokens(_ map: Int) -> Int {
    let input = laidOut(map, [.batchMajor])
    let d = values[input].dims
    let out = make([d[0] * d[1], d[2]], .tokenMajor)
    steps.append(.mapToTokens(out: out, input: input, grid: (d[0], d[1])))
    return out
  }

  func meanOverTokens(_ x: Int) -> Int {
    let input = laidOut(x, [.tokenMajor])
    let out = make([values[input].width], .batchMajor)
    steps.append(.mean(out: out, input: input))
    return out
  }

  func tokensToPixels(_ x: Int, patch: Int, classes: Int) -> Int {
    let input = laidOut(x, [.tokenMajor])
    let cfg = model.config
    let out = make([cfg.imageHeight, cfg.imageWidth, classes], .batchMajor)
    steps.append(.pixels(out: out, input: input, patch: patch, classes: classes))
    return out
  }
}

/// Buffers of the plan for one batch size.
final class PlanBuffers {
  let slots: [UnsafeMutablePointer<Float>]
  let mean, rstd, hidden, probabilities, normStaging: UnsafeMutablePointer<Float>
  /// u8 inputs of the int8 MLPs and their hidden activations
  let quantizedInput, quantizedHidden: UnsafeMutablePointer<UInt8>
  private let arena: FloatArena

  init(plan: InferencePlan, batch b: Int) {
    let sizes = plan.slotSizes.map { $0 * b } + [
      plan.normRows * b, plan.normRows * b, plan.mlpHidden * b, plan.attentionProbabilities * b,
      layerNormQuantizeStaging(channels: plan.normChannels),
    ]
    let arena = FloatArena(sizes: sizes)
    self.arena = arena
    let n = plan.slotSizes.count
    slots = (0..<n).map { arena[$0] }
    (mean, rstd, hidden, probabilities, normStaging) = (arena[n], arena[n + 1], arena[n + 2], arena[n + 3], arena[n + 4])
    quantizedInput = .allocate(capacity: max(1, plan.quantizedInputs * b))
    quantizedHidden = .allocate(capacity: max(1, plan.mlpHidden * b))
  }

  deinit {
    quantizedInput.deallocate()
    quantizedHidden.deallocate()
  }
}

/// A network's forward with one kernel per matrix product, compiled from its description.
public final class InferencePlan {
  public let model: MixerModel
  /// every product, in forward order (the model's `productLayers`)
  public let layers: [ProductLayer]
  /// the precision each product runs in, by layer name
  public let precisions: [String: Precision]
  /// outputs per image (`[B, outputsPerImage]`: logits, or per-pixel logits)
  public let outputsPerImage: Int
  /// parts of the forward that run fp32 whatever the products' precision, for `precisionSummary`
  public let fp32Parts: [String]
  private(set) var kernels: [any ProductKernel]
  let values: [PlanValue]
  let steps: [PlanStep]
  /// for each value, its buffer slot (nil: the images, or never stored)
  let slotOfValue: [Int?]
  /// floats per image of each slot
  let slotSizes: [Int]
  /// fused int8 MLPs by step index; LayerNorm steps whose output nobody reads in fp32
  let fusedNorms: [Int: FusedNorm]
  let skippedSteps: Set<Int>
  /// per-image sizes of the shared scratch
  let normRows: Int, normChannels: Int, mlpHidden: Int, quantizedInputs: Int, attentionProbabilities: Int
  let output: Int
  let scratch = KernelScratch()
  private var buffersByBatch: [Int: PlanBuffers] = [:]
  /// Called with each product's input before it runs (calibration): layer index, X, its count.
  /// A fused int8 MLP's products are not observed (their inputs never exist in fp32).
  var observer: ((Int, UnsafePointer<Float>, Int) -> Void)?

  /// Builds the kernels: fp32 on the model's parameters, bf16 weights rounded once, int8 weights
  /// quantized per output channel (or taken from `settings`). Throws a one-line error for an int8
  /// layer without a calibrated input range. (A CPU without the instructions a precision needs
  /// runs its portable kernels: `Precision.kernelNote`.)
  public convenience init(model: MixerModel, settings: [String: LayerSetting]) throws {
    try self.init(model: model, settings: settings, dequantizedInt8: false)
  }

  /// With `dequantizedInt8`, int8 layers compute in fp32 on their dequantized operands (what the
  /// QDQ export computes; `DequantizedInt8Product`) on any CPU: the int8 reference of tests.
  init(model: MixerModel, settings: [String: LayerSetting], dequantizedInt8: Bool) throws {
    let cfg = model.config
    let builder = PlanBuilder(model: model, settings: settings, dequantizedInt8: dequantizedInt8)
    let output = cfg.describe(into: builder)
    if let error = builder.error { throw error }
    let (layers, kernels, values, steps) = (builder.layers, builder.kernels, builder.values, builder.steps)
    self.model = model
    self.layers = layers
    self.kernels = kernels
    self.values = values
    self.steps = steps
    self.output = output
    self.outputsPerImage = builder.values[output].perImage
    self.precisions = Dictionary(uniqueKeysWithValues: zip(layers.map(\.name), kernels.map(\.precision)))
    let hasAttention = steps.contains { if case .attention = $0 { return true } else { return false } }
    self.fp32Parts = hasAttention ? ["attention scores and softmax"] : []

    // int8 MLPs fed by a LayerNorm that nothing else reads in fp32: LayerNorm quantizes for them
    var producer: [Int: Int] = [:]
    for (t, step) in steps.enumerated() { producer[step.output] = t }
    var fused: [Int: FusedNorm] = [:]
    for (t, step) in steps.enumerated() {
      guard case .mlp(_, let input, let first, let second, _) = step, kernels[first] is Int8Product,
        kernels[second] is Int8Product, let source = producer[values[input].root],
        case .layerNorm(_, let normInput, let scope, let epsilon) = steps[source], values[normInput].layout == .tokenMajor
      else { continue }
      let layout: QuantizedLayout
      switch values[input].layout {
      case .tokenMajor: layout = .rows
      case .transposedToken: layout = .transposed(tokens: values[normInput].dims[0], batch: 0)
      default: continue
      }
      fused[t] = FusedNorm(source: normInput, scope: scope, epsilon: epsilon, layout: layout)
    }
    var skipped = Set<Int>()
    for (t, step) in steps.enumerated() {
      guard case .layerNorm(let out, _, _, _) = step else { continue }
      let readers = steps.indices.filter { steps[$0].inputs.contains { values[$0].root == out } }
      if !readers.isEmpty && readers.allSatisfy({ fused[$0] != nil }) { skipped.insert(t) }
    }
    self.fusedNorms = fused
    self.skippedSteps = skipped

    // buffers: a slot per value, shared by values whose lives do not overlap
    func reads(_ t: Int) -> [Int] {
      if skipped.contains(t) { return [] }
      if let f = fused[t] { return [values[f.source].root] }
      return steps[t].inputs.map { values[$0].root }
    }
    var lastUse: [Int: Int] = [values[output].root: steps.count]
    for t in steps.indices {
      if !skipped.contains(t) { lastUse[steps[t].output] = max(lastUse[steps[t].output] ?? t, t) }
      for r in reads(t) { lastUse[r] = max(lastUse[r] ?? t, t) }
    }
    var slotOf = [Int?](repeating: nil, count: values.count)
    var sizes: [Int] = []
    var free: [Int] = []
    for (t, step) in steps.enumerated() where !skipped.contains(t) {
      let out = step.output, need = values[out].perImage
      var inPlace: Int?
      switch step {
      case .gelu(_, let input, _), .add(_, let input, _):
        if values[input].root == input, input != 0, lastUse[input] == t, values[input].layout == values[out].layout,
          step.inputs.filter({ values[$0].root == input }).count == 1
        {
          inPlace = slotOf[input]
        }
      default: break
      }
      if let slot = inPlace {
        slotOf[out] = slot
      } else if let best = free.filter({ sizes[$0] >= need }).min(by: { sizes[$0] < sizes[$1] }) ?? free.max(by: { sizes[$0] < sizes[$1] }) {
        free.removeAll { $0 == best }
        sizes[best] = max(sizes[best], need)
        slotOf[out] = best
      } else {
        sizes.append(need)
        slotOf[out] = sizes.count - 1
      }
      for r in Set(reads(t)) where r != 0 && lastUse[r] == t && slotOf[r] != slotOf[out] {
        if let slot = slotOf[r] { free.append(slot) }
      }
      if lastUse[out] == t, let slot = slotOf[out] { free.append(slot) }  // written, never read
    }
    for i in values.indices where values[i].root != i { slotOf[i] = slotOf[values[i].root] }
    self.slotOfValue = slotOf
    self.slotSizes = sizes

    // shared scratch
    var normRows = 1, normChannels = 1, hidden = 1, quantized = 1, probabilities = 1
    for step in steps {
      switch step {
      case .layerNorm(_, let input, _, _):
        normRows = max(normRows, values[input].rows)
        normChannels = max(normChannels, values[input].width)
      case .mlp(_, let input, let first, _, _):
        let rows = values[input].rows
        hidden = max(hidden, rows * kernels[first].outputs)
        quantized = max(quantized, values[input].perImage)
      case .attention(_, let qkv, let heads):
        probabilities = max(probabilities, heads * values[qkv].dims[0] * values[qkv].dims[0])
      default: break
      }
    }
    (self.normRows, self.normChannels, self.mlpHidden) = (normRows, normChannels, hidden)
    (self.quantizedInputs, self.attentionProbabilities) = (quantized, probabilities)
  }

  /// The plan with every product in `precision` (int8 needs `inputs`, each layer's range).
  public convenience init(model: MixerModel, precision: Precision, inputs: [String: ActivationQuantization] = [:]) throws {
    var settings: [String: LayerSetting] = [:]
    for layer in model.config.productLayers {
      settings[layer.name] = LayerSetting(precision: precision, input: inputs[layer.name])
    }
    try self.init(model: model, settings: settings)
  }

  /// "fp32", "int8", or a mix such as "int8 (3 of 18 products bf16; attention scores and softmax fp32)".
  public var precisionSummary: String {
    var counts: [Precision: Int] = [:]
    for p in precisions.values { counts[p, default: 0] += 1 }
    let main = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }!.key
    var notes = counts.filter { $0.key != main }.sorted { $0.key.rawValue < $1.key.rawValue }
      .map { "\($0.value) of \(precisions.count) products \($0.key.rawValue)" }
    if main != .fp32 || notes.count > 0, !fp32Parts.isEmpty { notes.append(fp32Parts.joined(separator: ", ") + " fp32") }
    return notes.isEmpty ? main.rawValue : "\(main.rawValue) (\(notes.joined(separator: "; ")))"
  }

  /// Runs the network on `images` `[B, H, W, 3]`; returns the outputs `[B, outputsPerImage]`
  /// (valid until the next call with the same B).
  @discardableResult
  public func forward(images: UnsafePointer<Float>, batch b: Int) -> UnsafeMutablePointer<Float> {
    run(steps: steps.indices, images: images, batch: b)
  }

  /// The buffers of batch size b (made on first use).
  private func buffers(_ b: Int) -> PlanBuffers {
    if let made = buffersByBatch[b] { return made }
    let made = PlanBuffers(plan: self, batch: b)
    buffersByBatch[b] = made
    return made
  }

  // MARK: Partial forwards (quantize's sensitivity pass)

  /// The number of steps of the forward.
  public var stepCount: Int { steps.count }

  /// The step that runs product `kernel` (an MLP step runs two).
  public func step(ofKernel kernel: Int) -> Int {
    steps.firstIndex { step in
      switch step {
      case .product(_, _, let k): return k == kernel
      case .mlp(_, _, let first, let second, _): return first == kernel || second == kernel
      default: return false
      }
    }!
  }

  /// Copies of batch b's value buffers: what the steps run so far left for the ones after.
  public func savedValues(batch b: Int) -> [[Float]] {
    let buffers = buffers(b)
    return slotSizes.indices.map { Array(UnsafeBufferPointer(start: buffers.slots[$0], count: slotSizes[$0] * b)) }
  }

  /// Puts back what `savedValues` copied.
  public func restoreValues(_ saved: [[Float]], batch b: Int) {
    let buffers = buffers(b)
    for (slot, values) in saved.enumerated() { buffers.slots[slot].update(from: values, count: values.count) }
  }

  /// Runs `body` with product `k` computed by `kernel` instead of its own (in a plan without
  /// fused int8 MLPs, whose fusion was decided for the kernels it was built with).
  public func replacingKernel<R>(_ k: Int, with kernel: any ProductKernel, _ body: () throws -> R) rethrows -> R {
    precondition(fusedNorms.isEmpty && kernel.inputs == kernels[k].inputs && kernel.outputs == kernels[k].outputs)
    let own = kernels[k]
    kernels[k] = kernel
    defer { kernels[k] = own }
    return try body()
  }

  /// Runs the steps in `range` of the forward on batch b's buffers, which hold what the steps
  /// before `range` left (from a previous call, or `restoreValues`); returns the output buffer
  /// (meaningful when the range ends at the last step).
  @discardableResult
  public func run(steps range: Range<Int>, images: UnsafePointer<Float>, batch b: Int) -> UnsafeMutablePointer<Float> {
    let cfg = model.config
    let buffers = buffers(b)
    scratch.reserve(elements: b * kernels.indices.map { layers[$0].rowsPerImage * layers[$0].inputs }.max()!)
    let w = model.parameters.pointer
    func at(_ value: Int) -> UnsafeMutablePointer<Float> {
      guard let slot = slotOfValue[value] else { return UnsafeMutablePointer(mutating: images) }
      return buffers.slots[slot]
    }
    /// out = x · W + b with X `[M×K]`, or stored `[K×M]` for a transposedToken value.
    func product(_ kernel: Int, _ out: UnsafeMutablePointer<Float>, _ x: Int, _ xp: UnsafePointer<Float>) {
      let v = values[x], m = b * v.rows
      observer?(kernel, xp, m * kernels[kernel].inputs)
      kernels[kernel].run(out: out, x: xp, transposed: v.layout == .transposedToken, rows: m, scratch: scratch)
    }
    for t in range where !skippedSteps.contains(t) {
      let step = steps[t], out = at(step.output)
      switch step {
      case .patches(_, let patch):
        patchifyForward(patches: out, images: images, batch: b, height: cfg.imageHeight, width: cfg.imageWidth, patch: patch)
      case .product(_, let input, let kernel):
        product(kernel, out, input, at(input))
      case .columns(_, let input, let kernel, let stride, let grid):
        let v = values[input]
        if let grid {
          tokenIm2col(
            columns: out, inp: at(input), gridHeight: grid.height, gridWidth: grid.width, batch: b, inChannels: v.width,
            kernel: kernel)
        } else {
          imageIm2col(
            columns: out, inp: at(input), batch: b, height: v.dims[0], width: v.dims[1], inChannels: v.dims[2],
            kernel: kernel, stride: stride)
        }
      case .layerNorm(_, let input, let scope, let epsilon):
        let v = values[input]
        layerNormForward(
          out: out, mean: buffers.mean, rstd: buffers.rstd, inp: at(input), weight: w + model.table.offset(scope + "/scale"),
          bias: w + model.table.offset(scope + "/bias"), rows: b * v.rows, channels: v.width, epsilon: epsilon)
      case .gelu(_, let input, let kind):
        parallelGELU(out: out, inp: at(input), count: b * values[input].perImage, kind: kind)
      case .mlp(_, let input, let first, let second, let kind):
        let v = values[input], m = b * v.rows
        if let dense0 = kernels[first] as? Int8Product, let dense1 = kernels[second] as? Int8Product {
          if let fused = fusedNorms[t] {
            var layout = fused.layout
            if case .transposed(let tokens, _) = layout { layout = .transposed(tokens: tokens, batch: b) }
            let source = values[fused.source]
            layerNormQuantizeForward(
              q: buffers.quantizedInput, staging: buffers.normStaging, inp: at(fused.source),
              weight: w + model.table.offset(fused.scope + "/scale"), bias: w + model.table.offset(fused.scope + "/bias"),
              rows: b * source.rows, channels: source.width, epsilon: fused.epsilon, quantization: dense0.input, layout: layout)
          } else if v.layout == .transposedToken {
            quantizeU8Transposed(buffers.quantizedInput, at(input), rows: m, cols: v.width, dense0.input)
          } else {
            quantizeU8(buffers.quantizedInput, at(input), count: m * v.width, dense0.input)
          }
          dense0.runQuantized(
            dst: UnsafeMutableRawPointer(buffers.quantizedHidden), q: buffers.quantizedInput, rows: m,
            epilogue: dense1.inputEpilogue(gelu: kind))
          dense1.runQuantized(dst: UnsafeMutableRawPointer(out), q: buffers.quantizedHidden, rows: m, epilogue: .float)
        } else {
          let hidden = buffers.hidden, d = kernels[first].outputs
          product(first, hidden, input, at(input))
          parallelGELU(out: hidden, inp: hidden, count: m * d, kind: kind)
          observer?(second, hidden, m * d)
          kernels[second].run(out: out, x: hidden, transposed: false, rows: m, scratch: scratch)
        }
      case .add(let o, let a, let bValue):
        add(out: out, outValue: values[o], a: at(a), values[a], at(bValue), values[bValue], batch: b)
      case .relayout(let o, let input):
        let (from, to) = (values[input], values[o]), src = at(input)
        for image in 0..<b {
          for i in 0..<from.perImage {
            out[to.offset(image: image, index: i, batch: b)] = src[from.offset(image: image, index: i, batch: b)]
          }
        }
      case .attention(_, let qkv, let heads):
        let v = values[qkv]
        attentionCoreForward(
          attention: out, probabilities: buffers.probabilities, qkv: at(qkv), tokens: v.dims[0], batch: b,
          channels: v.width / 3, heads: heads)
      case .mapToTokens(_, let input, let grid):
        imageToTokens(
          tokens: out, map: at(input), batch: b, gridHeight: grid.height, gridWidth: grid.width, channels: values[input].width)
      case .mean(_, let input):
        let v = values[input]
        tokenMeanForward(out: out, inp: at(input), tokens: v.dims[0], batch: b, channels: v.width)
      case .pixels(_, let input, let patch, let classes):
        tokensToPixelsForward(
          pixels: out, tokens: at(input), batch: b, height: cfg.imageHeight, width: cfg.imageWidth, patch: patch,
          channels: classes)
      }
    }
    return at(output)
  }

  /// out = a + b elementwise; out is laid out as a when a is batch- or token-major (and may be a).
  private func add(
    out: UnsafeMutablePointer<Float>, outValue o: PlanValue, a: UnsafeMutablePointer<Float>, _ va: PlanValue,
    _ bp: UnsafeMutablePointer<Float>, _ vb: PlanValue, batch: Int
  ) {
    let n = batch * o.perImage
    if va.layout == o.layout && vb.layout == o.layout {
      parallelElements(n) { range in
        for i in range { out[i] = a[i] + bp[i] }
      }
    } else if va.layout == o.layout && o.layout == .tokenMajor && vb.layout == .transposedBatch {
      // the token-mixing MLP's output [B·C, S] into the stream [S, B·C]
      if out != a { copyStream(out: out, inp: a, count: n) }
      addTransposed(out, bp, rows: batch * o.width, cols: o.rows)
    } else {
      for image in 0..<batch {
        for i in 0..<o.perImage {
          out[o.offset(image: image, index: i, batch: batch)] =
            a[va.offset(image: image, index: i, batch: batch)] + bp[vb.offset(image: image, index: i, batch: batch)]
        }
      }
    }
  }
}

/// x[s, r] += t[r, s] for x `[cols, rows]` and t `[rows, cols]` (blocks of 16 rows for locality,
/// split over the kernel threads: each element is its own, so the same bits on any count).
func addTransposed(_ x: UnsafeMutablePointer<Float>, _ t: UnsafePointer<Float>, rows: Int, cols: Int) {
  KernelProfile.measure("add transposed") {
    let tile = 16
    parallelRows((rows + tile - 1) / tile, elementsPerRow: tile * cols) { _, tiles in
      for r0 in stride(from: tiles.lowerBound * tile, to: min(rows, tiles.upperBound * tile), by: tile) {
        let r1 = min(r0 + tile, rows)
        for s in 0..<cols {
          let xs = x + s * rows
          for r in r0..<r1 { xs[r] += t[r * cols + s] }
        }
      }
    }
  }
}

/// out = gelu(inp) over `count` values, split over the kernel threads in blocks of 4096 (a
/// multiple of `geluForward`'s 16 lanes, so every value takes the path it takes in one call).
func parallelGELU(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, kind: GELUKind) {
  parallelElements(count, block: 4096) { range in
    geluForward(out: out + range.lowerBound, inp: inp + range.lowerBound, count: range.count, kind: kind)
  }
}
