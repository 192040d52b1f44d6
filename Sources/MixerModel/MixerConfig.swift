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
      [2, c], [c, k], [k],
    ])
  }

  /// The paper's parameter count formula (PAPER.md): stem, blocks, pre-head LayerNorm, head.
  public var parameterCount: Int {
    let c = hidden, s = tokens
    let stem = patchLength * c + c
    let block = 4 * c + 2 * s * tokensMLP + tokensMLP + s + 2 * c * channelsMLP + channelsMLP + c
    return stem + blocks * block + 2 * c + (c * classes + classes)
  }

  /// Forward multiply-adds ×2 (FLOPs) for one image, counting only the matrix products.
  public var forwardFLOPsPerImage: Double {
    let s = Double(tokens), c = Double(hidden)
    let stem = 2 * s * Double(patchLength) * c
    let token = 2 * 2 * s * Double(tokensMLP) * c
    let channel = 2 * 2 * s * c * Double(channelsMLP)
    let head = 2 * c * Double(classes)
    return stem + Double(blocks) * (token + channel) + head
  }

  /// Training FLOPs per image: forward plus backward (two products per forward product, except
  /// the stem, whose input gradient is not needed).
  public var trainingFLOPsPerImage: Double {
    let stem = 2 * Double(tokens) * Double(patchLength) * Double(hidden)
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
