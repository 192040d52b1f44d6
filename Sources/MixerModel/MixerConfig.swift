// The shape of an MLP-Mixer (Tolstikhin et al. 2021, Table 1) and its presets.
//
// Legend used throughout the project: B batch, H×W image, P patch, S = (H/P)·(W/P) tokens,
// C channels (hidden_dim), D_S token-mixing hidden width (tokens_mlp_dim), D_C channel-mixing
// hidden width (channels_mlp_dim), L blocks, K classes.

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
    case .mixer: return "MixerBlock_\(i)"
    case .attention: return "AttentionBlock_\(i)"
    case .conv: return "ConvBlock_\(i)"
    case .mixerAttention: return "MixerAttentionBlock_\(i)"
    }
  }
  var usesMixer: Bool { self == .mixer || self == .mixerAttention }
  var usesAttention: Bool { self == .attention || self == .mixerAttention }
}

/// What the network predicts.
public enum MixerTask: String, Codable, Sendable, CaseIterable {
  /// one class per image: pre-head LayerNorm, mean over tokens, `head` Dense to K (the paper)
  case classification
  /// one class per pixel: pre-head LayerNorm, then `segmentation_head` projects every token to its
  /// P×P×K patch of logits, reassembled to `[B, H, W, K]`
  case segmentation
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
  /// the kind of each block (nil: every block is the paper's MixerBlock)
  public var blockKinds: [BlockKind]?
  /// attention heads of attention blocks (nil: C / 64, at least 1)
  public var attentionHeads: Int?
  /// kernel size of conv blocks (nil: 3)
  public var convKernel: Int?
  /// "cnn": a stack of strided 3×3 convolutions replaces the linear patch projection (nil: linear)
  public var stem: String?
  /// nil: classification
  public var task: MixerTask?

  /// True for a per-pixel (segmentation) head.
  public var isSegmentation: Bool { task == .segmentation }
  /// Outputs of the head per token: K, or P·P·K for segmentation.
  public var headOutputs: Int { isSegmentation ? patch * patch * classes : classes }

  /// The CNN stem's layers: log2(P) stride-2 3×3 convolutions, channels doubling up to C
  /// (e.g. P 4, C 128: 3→64→128); empty for the linear stem.
  public var cnnStemLayers: [(inChannels: Int, outChannels: Int, height: Int, width: Int)] {
    guard stem == "cnn" else { return [] }
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
  public func kind(ofBlock i: Int) -> BlockKind { blockKinds?[i] ?? .mixer }
  /// Heads of the attention blocks.
  public var heads: Int { attentionHeads ?? max(1, hidden / 64) }
  /// Kernel size of the conv blocks.
  public var kernel: Int { convKernel ?? 3 }

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
    if let kinds = blockKinds {
      if kinds.count != blocks {
        throw ConfigError("the block pattern names \(kinds.count) blocks but the model has \(blocks)")
      }
      if kinds.contains(where: \.usesAttention), heads <= 0 || hidden % heads != 0 {
        throw ConfigError("attention needs the width \(hidden) to divide into \(heads) heads: pass --heads")
      }
      if kinds.contains(.conv), kernel <= 0 || kernel % 2 == 0 {
        throw ConfigError("the conv kernel must be odd and positive, got \(kernel)")
      }
    }
    if let stem, stem != "linear" {
      guard stem == "cnn" else { throw ConfigError("unknown stem '\(stem)' (known: linear, cnn)") }
      guard patch >= 2, patch & (patch - 1) == 0 else {
        throw ConfigError("the CNN stem needs a power-of-two patch (total stride), got \(patch)")
      }
    }
    if !(layerNormEpsilon > 0) {
      throw ConfigError("LayerNorm epsilon must be positive, got \(layerNormEpsilon)")
    }
    // untrusted configs (manifests, flags) must not overflow or exhaust memory when built
    guard blocks <= 1 << 16, let count = checkedParameterCount, count <= 1 << 40 else {
      throw ConfigError(
        "a model of \(imageHeight)x\(imageWidth) px, patch \(patch), C \(hidden), \(blocks) blocks, "
          + "D_S \(tokensMLP), D_C \(channelsMLP), \(classes) classes is too large to build "
          + "(over 2^16 blocks or 2^40 parameters)")
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
    return stem + blocks * block + 2 * c + (c * headOutputs + headOutputs)
  }

  /// Forward multiply-adds ×2 (FLOPs) for one image, counting only the matrix products.
  public var forwardFLOPsPerImage: Double {
    let s = Double(tokens), c = Double(hidden)
    var stem = 2 * s * Double(patchLength) * c
    if !cnnStemLayers.isEmpty {
      stem = cnnStemLayers.reduce(0.0) { total, layer in
        total + 2 * Double(layer.height / 2 * (layer.width / 2)) * 9 * Double(layer.inChannels * layer.outChannels)
      }
    }
    let mixer = 2 * 2 * s * Double(tokensMLP) * c
    let attention = 2 * s * c * 3 * c + 2 * 2 * s * s * c + 2 * s * c * c
    let conv = 2 * s * Double(kernel * kernel) * c * c
    let channel = 2 * 2 * s * c * Double(channelsMLP)
    let head = isSegmentation ? 2 * s * c * Double(headOutputs) : 2 * c * Double(classes)
    var body = 0.0
    for i in 0..<blocks {
      let kind = kind(ofBlock: i)
      body += channel + (kind.usesMixer ? mixer : 0) + (kind.usesAttention ? attention : 0)
        + (kind == .conv ? conv : 0)
    }
    return stem + body + head
  }

  /// Training FLOPs per image: forward plus backward (two products per forward product, except
  /// the stem, whose input gradient is not needed).
  public var trainingFLOPsPerImage: Double {
    let stem = cnnStemLayers.isEmpty ? 2 * Double(tokens) * Double(patchLength) * Double(hidden) : 0
    return 3 * forwardFLOPsPerImage - stem
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
  /// Block kinds from a pattern: one kind for every block (`attention`), an explicit list
  /// (`mixer,attention,conv,mixer+attention`, one per block), a cycle (`alternate:mixer,attention`),
  /// or every k-th block of a kind and the paper's block elsewhere (`every:3:attention`).
  public static func pattern(_ spec: String, blocks: Int) throws -> [BlockKind] {
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
      return (0..<blocks).map { cycle[$0 % cycle.count] }
    case "every" where parts.count == 3:
      guard let k = Int(parts[1]), k > 0 else { throw ConfigError("every:K:KIND needs a positive K, got '\(parts[1])'") }
      let kind = try kinds(parts[2])
      guard kind.count == 1 else { throw ConfigError("every:K:KIND takes one block kind") }
      return (0..<blocks).map { ($0 + 1) % k == 0 ? kind[0] : .mixer }
    default:
      let list = try kinds(Substring(spec))
      if list.count == 1 { return Array(repeating: list[0], count: blocks) }
      guard list.count == blocks else {
        throw ConfigError("the block list names \(list.count) blocks but the model has \(blocks): give one kind per block, or alternate:/every:")
      }
      return list
    }
  }
}
