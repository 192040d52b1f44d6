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

  /// The parameters the network's description names (NetworkDescription.swift), in forward order.
  public init(config: MixerConfig) {
    self.init(describing: config)
  }

  /// The table of views laid out one after another.
  init(views: [ParameterView]) {
    self.views = views
    self.count = views.last.map { $0.offset + $0.count } ?? 0
    var index: [String: Int] = [:]
    for (i, view) in views.enumerated() { index[view.name] = i }
    self.index = index
  }

  /// The view with this official name, if any.
  public subscript(name: String) -> ParameterView? {
    index[name].map { views[$0] }
  }

  /// The offset of a view that must exist (names are built by this table).
  public func offset(_ name: String) -> Int { self[name]!.offset }
}

/// Lays out views one after another, in the order they are added (the forward order).
public struct ParameterTableBuilder {
  public private(set) var views: [ParameterView] = []
  public private(set) var count = 0

  /// Appends a tensor; `fanIn` for kernels (lecun-normal init).
  public mutating func add(_ name: String, _ shape: [Int], _ role: ParameterRole, fanIn: Int = 0) {
    views.append(ParameterView(name: name, shape: shape, offset: count, role: role, fanIn: fanIn))
    count += shape.reduce(1, *)
  }
}
