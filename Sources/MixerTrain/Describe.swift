// `mixer-dist describe`: the parameter table of a config (official names, shapes, counts).


import MixerModel

/// A human-readable parameter table, one row per tensor, and the total.
public func describeModel(_ config: MixerConfig, name: String) -> String {
  let table = ParameterTable(config: config)
  var lines: [String] = []
  let headNote = config.head.note.map { " — \($0)" } ?? ""
  lines.append(
    "\(name): \(config.imageHeight)x\(config.imageWidth) px, patch \(config.patch), S \(config.tokens), "
      + "C \(config.hidden), D_S \(config.tokensMLP), D_C \(config.channelsMLP), "
      + "\(config.blocks) blocks, \(config.classes) classes, GELU \(config.gelu.rawValue)"
      + (config.blockPattern == .uniform(.mixer) ? "" : " — blocks: " + config.blockKinds.map(\.rawValue).joined(separator: ", "))
      + (config.stem == .linear ? "" : " — \(config.stem.rawValue.uppercased()) stem")
      + headNote)
  let width = table.views.map(\.name.count).max() ?? 10
  for view in table.views {
    let shape = "[" + view.shape.map(String.init).joined(separator: ", ") + "]"
    lines.append(
      view.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
        + shape.padding(toLength: 22, withPad: " ", startingAt: 0) + grouped(view.count))
  }
  lines.append("total parameters: \(grouped(table.count))")
  lines.append(
    String(format: "forward GFLOPs/image: %.3f, training GFLOPs/image: %.3f",
           config.forwardFLOPsPerImage / 1e9, config.trainingFLOPsPerImage / 1e9))
  return lines.joined(separator: "\n")
}

/// 19104624 → "19,104,624"
public func grouped(_ n: Int) -> String {
  let digits = String(n)
  var out = ""
  for (i, ch) in digits.enumerated() {
    if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
    out.append(ch)
  }
  return out
}
