// A preset with per-field overrides: what `--preset` and the model flags say, applied in one
// place so that every command builds its model the same way. A nil field was not given.

import MixerKernels

/// Model settings given on a command line (nil: the preset's value).
public struct ModelOverrides: Sendable {
  public var preset = "tiny"
  public var imageSize: Int?
  public var imageHeight: Int?
  public var imageWidth: Int?
  public var patch: Int?
  public var hidden: Int?
  public var blocks: Int?
  public var tokensMLP: Int?
  public var channelsMLP: Int?
  public var classes: Int?
  public var gelu: GELUKind?
  public var blockPattern: String?
  public var heads: Int?
  public var convKernel: Int?
  public var task: MixerTask?
  public var stem: StemKind?

  public init() {}

  /// The preset with every given override applied, validated.
  public func config() throws -> MixerConfig {
    var c = try MixerPreset.config(named: preset)
    if let v = imageSize { c.imageHeight = v; c.imageWidth = v }
    if let v = imageHeight { c.imageHeight = v }
    if let v = imageWidth { c.imageWidth = v }
    if let v = patch { c.patch = v }
    if let v = hidden { c.hidden = v }
    if let v = blocks { c.blocks = v }
    if let v = tokensMLP { c.tokensMLP = v }
    if let v = channelsMLP { c.channelsMLP = v }
    if let v = classes { c.classes = v }
    if let v = gelu { c.gelu = v }
    c.attentionHeads = heads ?? MixerConfig.defaultHeads(hidden: c.hidden)
    if let v = convKernel { c.convKernel = v }
    if let v = stem { c.stem = v }
    if let v = task { c.task = v }
    if let spec = blockPattern {
      let pattern = try BlockPattern(parsing: spec)
      if case .list(let kinds) = pattern, kinds.count != c.blocks {
        throw ConfigError("the block list names \(kinds.count) blocks but the model has \(c.blocks): give one kind per block, or alternate:/every:")
      }
      c.blockPattern = c.blockKinds.allSatisfy { $0 == .mixer } && pattern.kind(ofBlock: 0) == .mixer
        && (0..<c.blocks).allSatisfy { pattern.kind(ofBlock: $0) == .mixer } ? .uniform(.mixer) : pattern
    }
    try c.validate()
    return c
  }
}
