// The parameters' names as the official Mixer code spells them (vit_jax `models_mixer.py` and
// big_vision `models/mlp_mixer.py`: flax module scopes joined by "/"), the one file that does.
// The parameter table, the network description, the training layers, checkpoint import and the
// reference check all name parameters through these, so a checkpoint saved here is read by the
// official code and the official `.npz` files load here unchanged. Our additions (attention and
// conv blocks, the CNN stem, the segmentation head) take names of the same form.
//
//   stem/kernel [P, P, 3, C], stem/bias
//   MixerBlock_i/LayerNorm_0/{scale,bias}
//   MixerBlock_i/token_mixing/Dense_0/{kernel,bias}, .../Dense_1/...
//   MixerBlock_i/LayerNorm_1/{scale,bias}
//   MixerBlock_i/channel_mixing/Dense_0/{kernel,bias}, .../Dense_1/...
//   pre_head_layer_norm/{scale,bias}
//   head/kernel [C, K], head/bias

/// Official parameter scopes and the helpers that join them.
public enum OfficialName {
  /// the patch projection (a P×P stride-P convolution)
  public static let stem = "stem"
  /// block i of the paper's kind
  public static func mixerBlock(_ i: Int) -> String { "MixerBlock_\(i)" }
  /// a block's first and second LayerNorm (before token and channel mixing)
  public static let layerNorm0 = "LayerNorm_0", layerNorm1 = "LayerNorm_1"
  /// the two MLPs of a block
  public static let tokenMixing = "token_mixing", channelMixing = "channel_mixing"
  /// an MLP's first and second Dense layer
  public static let dense0 = "Dense_0", dense1 = "Dense_1"
  /// the LayerNorm after the last block
  public static let preHeadLayerNorm = "pre_head_layer_norm"
  /// the classifier
  public static let head = "head"

  /// `scope/a/b…`
  public static func join(_ parts: String...) -> String { parts.joined(separator: "/") }
  /// The kernel, bias and LayerNorm scale of a scope.
  public static func kernel(_ scope: String) -> String { scope + "/kernel" }
  public static func bias(_ scope: String) -> String { scope + "/bias" }
  public static func scale(_ scope: String) -> String { scope + "/scale" }
}
