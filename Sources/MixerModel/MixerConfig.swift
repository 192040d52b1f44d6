// The shape of an MLP-Mixer (Tolstikhin et al. 2021, Table 1) and its presets.
//
// Legend used throughout the project: B batch, H×W image, P patch, S = (H/P)·(W/P) tokens,
// C channels (hidden_dim), D_S token-mixing hidden width (tokens_mlp_dim), D_C channel-mixing
// hidden width (channels_mlp_dim), L blocks, K classes.

import Foundation
import MixerKernels

/// A configuration error, printed as one line.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// What mixes the tokens in one block. Every kind is pre-norm and followed by the channel MLP;
/// `mixer` is the paper's block, the others are the hybrids of the architecture study.
public enum BlockKind: String, Codable, Sendable, CaseIterable {
  /// the paper's token-mixing MLP
  case mixer
  /// ViT multi-head self-attention
  case attention
  /// a K×K convolution over the (H/P)×(W/P) token grid
  case conv
  /// the token-mixing MLP and self-attention summed, both from the same normalised input
  case mixerAttention = "mixer+attention"

  /// Parameter-name prefix of block i.
  func scope(_ i: Int) -> String {
    switch self {
    case .mixer: return OfficialName.mixerBlock(i)
    case .attention: return "AttentionBlock_\(i)"
    case .conv: return "ConvBlock_\(i)"
    case .mixerAttention: return "MixerAttentionBlock_\(i)"
    }
  }
}

/// What the network predicts; each task is one `Head` (Head.swift), registered here.
public enum MixerTask: String, Codable, Sendable, CaseIterable {
  /// one class per image: pre-head LayerNorm, mean over tokens, `head` Dense to K (the paper)
  case classification
  /// one class per pixel: pre-head LayerNorm, then `segmentation_head` projects every token to its
  /// P×P×K patch of logits, reassembled to `[B, H, W, K]`
  case segmentation

  /// The head that implements this task (the one registration point of the model side).
  public var head: any Head {
    switch self {
    case .classification: return ClassificationHead()
    case .segmentation: return SegmentationHead()
    }
  }
}

/// The loss the head trains with (and evaluation reports), against the same `[B, K]` targets
/// (one-hot, label-smoothed or mixed by mixup).
public enum HeadLoss: String, Codable, Sendable, CaseIterable {
  /// softmax cross-entropy: one distribution over the K classes (the default)
  case softmax
  /// sigmoid cross-entropy summed over the K classes, each its own binary problem, averaged over
  /// the batch: big_vision's `sigmoid_xent`, the loss of its Mixer ImageNet recipe
  case sigmoid

  /// The probability of each class from its logit, `[K]`: the softmax of the row, or each
  /// logit's sigmoid (which need not sum to 1).
  public func probabilities(_ logits: [Double]) -> [Double] {
    switch self {
    case .softmax:
      let top = logits.max() ?? 0
      let exps = logits.map { Foundation.exp($0 - top) }
      let total = exps.reduce(0, +)
      return exps.map { $0 / total }
    case .sigmoid:
      return logits.map { 1 / (1 + Foundation.exp(-$0)) }
    }
  }
}

/// How images become the first tokens x_0; each kind is one `Stem` (Stem.swift), registered here.
public enum StemKind: String, Codable, Sendable, CaseIterable {
  /// the paper's: non-overlapping P×P patches, one linear projection to C channels
  case linear
  /// log2(P) stride-2 3×3 convolutions with GELU between them, channels doubling up to C
  case cnn

  /// The stem that implements this kind.
  public var stem: any Stem {
    switch self {
    case .linear: return LinearStem()
    case .cnn: return CNNStem()
    }
  }
}

/// The kind of every block, as the user says it: one kind for all, an explicit list, a cycle,
/// or every k-th block of a kind (the paper's block elsewhere). Encoded as its text form
/// (`mixer`, `mixer,attention,conv`, `alternate:mixer,attention`, `every:3:attention`).
public enum BlockPattern: Equatable, Sendable, Codable, CustomStringConvertible {
  case uniform(BlockKind)
  case list([BlockKind])
  case alternate([BlockKind])
  case every(Int, BlockKind)

  /// The kind of block i.
  public func kind(ofBlock i: Int) -> BlockKind {
    switch self {
    case .uniform(let kind): return kind
    case .list(let kinds): return i < kinds.count ? kinds[i] : .mixer
    case .alternate(let cycle): return cycle.isEmpty ? .mixer : cycle[i % cycle.count]
    case .every(let k, let kind): return k > 0 && (i + 1) % k == 0 ? kind : .mixer
    }
  }

  public var description: String {
    func names(_ kinds: [BlockKind]) -> String { kinds.map(\.rawValue).joined(separator: ",") }
    switch self {
    case .uniform(let kind): return kind.rawValue
    case .list(let kinds): return names(kinds)
    case .alternate(let cycle): return "alternate:" + names(cycle)
    case .every(let k, let kind): return "every:\(k):\(kind.rawValue)"
    }
  }

  /// Parses the text form; throws a one-line error naming the known kinds.
  public init(parsing spec: String) throws {
    func kinds(_ list: Substring) throws -> [BlockKind] {
      try list.split(separator: ",").map { name in
        guard let kind = BlockKind(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
          throw ConfigError("unknown block kind '\(name)' (known: mixer, attention, conv, mixer+attention)")
        }
        return kind
      }
    }
    let parts = spec.split(separator: ":", maxSplits: 2)
    switch parts.first {
    case "alternate" where parts.count == 2:
      let cycle = try kinds(parts[1])
      guard !cycle.isEmpty else { throw ConfigError("alternate: needs at least one block kind") }
      self = .alternate(cycle)
    case "every" where parts.count == 3:
      guard let k = Int(parts[1]), k > 0 else { throw ConfigError("every:K:KIND needs a positive K, got '\(parts[1])'") }
      let kind = try kinds(parts[2])
      guard kind.count == 1 else { throw ConfigError("every:K:KIND takes one block kind") }
      self = .every(k, kind[0])
    default:
      let list = try kinds(Substring(spec))
      guard !list.isEmpty else { throw ConfigError("the block pattern names no block kind") }
      self = list.count == 1 ? .uniform(list[0]) : .list(list)
    }
  }

  public init(from decoder: Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let kinds = try? container.decode([BlockKind].self) {  // manifests before the pattern type
      self = kinds.count == 1 ? .uniform(kinds[0]) : .list(kinds)
      return
    }
    let text = try container.decode(String.self)
    do {
      self = try BlockPattern(parsing: text)
    } catch {
      throw DecodingError.dataCorruptedError(in: container, debugDescription: "\(error)")
    }
  }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

/// Everything that fixes the shapes and numerics of a Mixer.
public struct MixerConfig: Codable, Equatable, Sendable {
  public var imageHeight: Int
  public var imageWidth: Int
  public var patch: Int
  public var hidden: Int  // C
  public var blocks: Int  // L
  public var tokensMLP: Int  // D_S
  public var channelsMLP: Int  // D_C
  public var classes: Int  // K
  public var gelu: GELUKind
  public var layerNormEpsilon: Float
  /// the kind of each block (the paper's MixerBlock everywhere by default)
  public var blockPattern: BlockPattern = .uniform(.mixer)
  /// attention heads of attention blocks (default C / 64, at least 1: `defaultHeads(hidden:)`)
  public var attentionHeads: Int
  /// kernel size of conv blocks
  public var convKernel: Int = 3
  /// how images become tokens
  public var stem: StemKind = .linear
  /// what the network predicts
  public var task: MixerTask = .classification
  /// the head's loss (absent in older manifests: softmax)
  public var loss: HeadLoss = .softmax

  /// The head of this config's task.
  public var head: any Head { task.head }
  /// Outputs of the head per token (K for one class per image, P·P·K for one per pixel).
  public var headOutputs: Int { head.outputsPerToken(self) }

  /// The CNN stem's layers: log2(P) stride-2 3×3 convolutions, channels doubling up to C
  /// (e.g. P 4, C 128: 3→64→128); empty for the linear stem.
  public var cnnStemLayers: [(inChannels: Int, outChannels: Int, height: Int, width: Int)] {
    guard stem == .cnn else { return [] }
    var layers: [(Int, Int, Int, Int)] = []
    var stride = 1, cin = 3, h = imageHeight, w = imageWidth
    var count = 0
    while stride < patch { stride *= 2; count += 1 }
    for j in 0..<count {
      let cout = max(1, hidden >> (count - 1 - j))
      layers.append((cin, cout, h, w))
      cin = cout; h /= 2; w /= 2
    }
    return layers
  }

  /// The kind of block i.
  public func kind(ofBlock i: Int) -> BlockKind { blockPattern.kind(ofBlock: i) }
  /// Every block's kind; setting it gives an explicit per-block list.
  public var blockKinds: [BlockKind] {
    get { (0..<blocks).map(kind(ofBlock:)) }
    set { blockPattern = newValue.count == 1 ? .uniform(newValue[0]) : .list(newValue) }
  }
  /// Heads of the attention blocks.
  public var heads: Int { attentionHeads }
  /// Kernel size of the conv blocks.
  public var kernel: Int { convKernel }
  /// The default number of attention heads for width C: C / 64, at least 1.
  public static func defaultHeads(hidden: Int) -> Int { max(1, hidden / 64) }

  public init(
    imageHeight: Int, imageWidth: Int, patch: Int, hidden: Int, blocks: Int, tokensMLP: Int,
    channelsMLP: Int, classes: Int, gelu: GELUKind = .tanh, layerNormEpsilon: Float = 1e-6
  ) {
    self.imageHeight = imageHeight
    self.imageWidth = imageWidth
    self.patch = patch
    self.hidden = hidden
    self.blocks = blocks
    self.tokensMLP = tokensMLP
    self.channelsMLP = channelsMLP
    self.classes = classes
    self.gelu = gelu
    self.layerNormEpsilon = layerNormEpsilon
    self.attentionHeads = Self.defaultHeads(hidden: hidden)
  }

  enum CodingKeys: String, CodingKey {
    case imageHeight, imageWidth, patch, hidden, blocks, tokensMLP, channelsMLP, classes, gelu
    case layerNormEpsilon, blockPattern, attentionHeads, convKernel, stem, task, loss
    case blockKinds  // the name of the pattern in manifests written before it had a type
  }

  /// Decodes this and earlier manifests, where a missing block pattern, heads, kernel, stem,
  /// task or loss meant the default.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      imageHeight: try c.decode(Int.self, forKey: .imageHeight), imageWidth: try c.decode(Int.self, forKey: .imageWidth),
      patch: try c.decode(Int.self, forKey: .patch), hidden: try c.decode(Int.self, forKey: .hidden),
      blocks: try c.decode(Int.self, forKey: .blocks), tokensMLP: try c.decode(Int.self, forKey: .tokensMLP),
      channelsMLP: try c.decode(Int.self, forKey: .channelsMLP), classes: try c.decode(Int.self, forKey: .classes),
      gelu: try c.decode(GELUKind.self, forKey: .gelu),
      layerNormEpsilon: try c.decode(Float.self, forKey: .layerNormEpsilon))
    blockPattern = try c.decodeIfPresent(BlockPattern.self, forKey: .blockPattern)
      ?? c.decodeIfPresent(BlockPattern.self, forKey: .blockKinds) ?? .uniform(.mixer)
    attentionHeads = try c.decodeIfPresent(Int.self, forKey: .attentionHeads) ?? Self.defaultHeads(hidden: hidden)
    convKernel = try c.decodeIfPresent(Int.self, forKey: .convKernel) ?? 3
    stem = try c.decodeIfPresent(StemKind.self, forKey: .stem) ?? .linear
    task = try c.decodeIfPresent(MixerTask.self, forKey: .task) ?? .classification
    loss = try c.decodeIfPresent(HeadLoss.self, forKey: .loss) ?? .softmax
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(imageHeight, forKey: .imageHeight)
    try c.encode(imageWidth, forKey: .imageWidth)
    try c.encode(patch, forKey: .patch)
    try c.encode(hidden, forKey: .hidden)
    try c.encode(blocks, forKey: .blocks)
    try c.encode(tokensMLP, forKey: .tokensMLP)
    try c.encode(channelsMLP, forKey: .channelsMLP)
    try c.encode(classes, forKey: .classes)
    try c.encode(gelu, forKey: .gelu)
    try c.encode(layerNormEpsilon, forKey: .layerNormEpsilon)
    try c.encode(blockPattern, forKey: .blockPattern)
    try c.encode(attentionHeads, forKey: .attentionHeads)
    try c.encode(convKernel, forKey: .convKernel)
    try c.encode(stem, forKey: .stem)
    try c.encode(task, forKey: .task)
    try c.encode(loss, forKey: .loss)
  }

  public var gridHeight: Int { imageHeight / patch }
  public var gridWidth: Int { imageWidth / patch }
  /// S, the number of tokens (patches).
  public var tokens: Int { gridHeight * gridWidth }
  /// P·P·3, the length of one flattened patch.
  public var patchLength: Int { patch * patch * 3 }

  /// Throws a one-line error for any shape that cannot be built.
  public func validate() throws {
    let positives: [(String, Int)] = [
      ("image height", imageHeight), ("image width", imageWidth), ("patch", patch),
      ("hidden width", hidden), ("blocks", blocks), ("token-mixing width", tokensMLP),
      ("channel-mixing width", channelsMLP), ("classes", classes),
    ]
    for (name, value) in positives where value <= 0 {
      throw ConfigError("\(name) must be positive, got \(value)")
    }
    if imageHeight % patch != 0 || imageWidth % patch != 0 {
      throw ConfigError(
        "image size \(imageHeight)x\(imageWidth) is not divisible by the patch size \(patch)")
    }
    // untrusted configs (manifests, flags) must not overflow or exhaust memory when built
    guard blocks <= 1 << 16, let count = checkedParameterCount, count <= 1 << 40 else {
      throw ConfigError(
        "a model of \(imageHeight)x\(imageWidth) px, patch \(patch), C \(hidden), \(blocks) blocks, "
          + "D_S \(tokensMLP), D_C \(channelsMLP), \(classes) classes is too large to build "
          + "(over 2^16 blocks or 2^40 parameters)")
    }
    if case .list(let kinds) = blockPattern, kinds.count != blocks {
      throw ConfigError("the block list names \(kinds.count) blocks but the model has \(blocks): give one kind per block, or alternate:/every:")
    }
    var validated: Set<BlockKind> = []
    for kind in blockKinds where validated.insert(kind).inserted {
      for mixer in kind.tokenMixers { try mixer.validate(self) }
    }
    try stem.stem.validate(self)
    if !head.losses.contains(loss) {
      throw ConfigError(
        "--loss \(loss.rawValue) is not available for --task \(task.rawValue) (its head trains with: "
          + head.losses.map(\.rawValue).joined(separator: ", ") + ")")
    }
    if !(layerNormEpsilon > 0) {
      throw ConfigError("LayerNorm epsilon must be positive, got \(layerNormEpsilon)")
    }
  }

  /// The parameter count computed with overflow checks (nil on overflow).
  var checkedParameterCount: Int? {
    func sumOfProducts(_ terms: [[Int]]) -> Int? {
      var total = 0
      for factors in terms {
        var term = 1
        for factor in factors {
          guard case (let next, false) = term.multipliedReportingOverflow(by: factor) else { return nil }
          term = next
        }
        guard case (let next, false) = total.addingReportingOverflow(term) else { return nil }
        total = next
      }
      return total
    }
    let p = patch, c = hidden, l = blocks, ds = tokensMLP, dc = channelsMLP, k = classes
    let gh = gridHeight, gw = gridWidth
    return sumOfProducts([
      [p, p, 3, c], [c], [l, 5, c], [l, 2, gh, gw, ds], [l, ds], [l, gh, gw], [l, 2, c, dc], [l, dc],
      [2, c], [c, k], [k], [c, p, p, k], [p, p, k],
    ])
  }

  /// The paper's parameter count formula (PAPER.md): stem, blocks, pre-head LayerNorm, head.
  public var parameterCount: Int {
    let c = hidden, s = tokens
    let stem = patchLength * c + c
    let block = 4 * c + 2 * s * tokensMLP + tokensMLP + s + 2 * c * channelsMLP + channelsMLP + c
    return stem + blocks * block + 2 * c + head.parameterCount(self)
  }

  /// Forward multiply-adds ×2 (FLOPs) for one image, counting only the matrix products.
  public var forwardFLOPsPerImage: Double {
    let s = Double(tokens), c = Double(hidden)
    let channel = 2 * 2 * s * c * Double(channelsMLP)
    var body = 0.0
    for i in 0..<blocks {
      var block = channel
      for mixer in kind(ofBlock: i).tokenMixers { block += mixer.forwardFLOPsPerImage(self) }
      body += block
    }
    return stem.stem.forwardFLOPsPerImage(self) + body + head.forwardFLOPsPerImage(self)
  }

  /// Training FLOPs per image: forward plus backward (two products per forward product, except
  /// the stem's products whose input gradient is not needed).
  public var trainingFLOPsPerImage: Double {
    3 * forwardFLOPsPerImage - stem.stem.unneededInputGradientFLOPsPerImage(self)
  }
}

/// A named preset: the paper's Table 1 variants at 224 px, plus small models for 32 px inputs.
public enum MixerPreset {
  /// (name, patch, C, L, D_S, D_C, image size, classes)
  static let table: [(String, Int, Int, Int, Int, Int, Int, Int)] = [
    ("S/32", 32, 512, 8, 256, 2048, 224, 1000),
    ("S/16", 16, 512, 8, 256, 2048, 224, 1000),
    ("B/32", 32, 768, 12, 384, 3072, 224, 1000),
    ("B/16", 16, 768, 12, 384, 3072, 224, 1000),
    ("L/32", 32, 1024, 24, 512, 4096, 224, 1000),
    ("L/16", 16, 1024, 24, 512, 4096, 224, 1000),
    ("H/14", 14, 1280, 32, 640, 5120, 224, 1000),
    ("cifar", 4, 256, 8, 128, 1024, 32, 10),
    ("tiny", 4, 128, 4, 64, 512, 32, 10),
  ]

  /// Every preset name, in table order.
  public static var names: [String] { table.map { $0.0 } }

  /// The preset's config; throws for an unknown name, listing the known ones.
  public static func config(named name: String) throws -> MixerConfig {
    let key = name.replacingOccurrences(of: "_", with: "/")
    guard let row = table.first(where: { $0.0.lowercased() == key.lowercased() }) else {
      throw ConfigError(
        "unknown preset '\(name)' (known: \(names.joined(separator: ", ")))")
    }
    return MixerConfig(
      imageHeight: row.6, imageWidth: row.6, patch: row.1, hidden: row.2, blocks: row.3,
      tokensMLP: row.4, channelsMLP: row.5, classes: row.7)
  }
}

extension BlockKind {
  /// Every block's kind under a pattern (see `BlockPattern`), for `blocks` blocks.
  public static func pattern(_ spec: String, blocks: Int) throws -> [BlockKind] {
    let pattern = try BlockPattern(parsing: spec)
    if case .list(let kinds) = pattern, kinds.count != blocks {
      throw ConfigError("the block list names \(kinds.count) blocks but the model has \(blocks): give one kind per block, or alternate:/every:")
    }
    return (0..<blocks).map(pattern.kind(ofBlock:))
  }
}
