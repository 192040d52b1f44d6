// The precisions of the matrix products, one type each: the registry. Everything that differs
// between fp32, bf16 and int8 is answered here, by the precision's `PrecisionFormat`:
//   what CPU its fast kernels need, and whether this CPU has it (else: the portable kernels);
//   how an fp32 operand becomes one of its operands (`OperandRounding`: as is, rounded to
//     bfloat16, or quantized to u8 with a calibrated scale), which the ONNX writer and the
//     quantized checkpoint follow;
//   its training products (`MatrixProducts`), or a one-line refusal when it does not train;
//   its inference kernel for one product layer (`ProductKernel`, InferenceKernels.swift).
// The trainer, the inference plan, the ONNX writer and the CLI ask a precision these questions and
// never branch on which one it is. A new precision (fp8, int4 weights) is a case of `Precision`
// (its name in flags and JSON), a `PrecisionFormat`, its kernels, and an `OperandRounding` if it
// rounds operands in a new way (docs/architecture.md lists the files).

/// The number format of the matrix products: fp32 on OpenBLAS; bf16 and int8 on oneDNN.
public enum Precision: String, CaseIterable, Codable, Sendable {
  case fp32, bf16, int8

  /// This precision's answers (the one switch over the cases).
  public var format: any PrecisionFormat {
    switch self {
    case .fp32: return FP32Format()
    case .bf16: return BF16Format()
    case .int8: return Int8Format()
    }
  }

  /// The instruction set this precision needs to run at its speed, as oneDNN names it.
  public var requiredISA: String? { format.requiredISA }

  /// Whether oneDNN runs this precision's products on native instructions here.
  public var runsNatively: Bool { format.hasNativeKernels }

  /// Whether this precision's products run on the portable kernels (PortableLowPrecision.swift):
  /// where oneDNN has no kernel for this CPU, or when tests ask for them (`DNNL.forcePortable`).
  public var usesPortableKernels: Bool { format.hasPortableKernels && (DNNL.forcePortable || !runsNatively) }

  /// What a run at this precision should tell its user about the kernels, or nil when they are
  /// the fast ones: on a CPU without the instructions the precision needs, its products run on
  /// the portable kernels, with the same numbers and slower than fp32.
  public var kernelNote: String? {
    guard usesPortableKernels, let needed = requiredISA else { return nil }
    return "\(rawValue) products run on portable kernels: this CPU lacks \(needed) "
      + "(oneDNN \(DNNL.version) finds \(DNNL.effectiveISA)), so they give the same numbers but run slower than fp32"
  }

  /// The products of this precision for training. Throws a one-line error when the precision
  /// does not train (int8 is inference only).
  public func makeProducts() throws -> any MatrixProducts {
    try requireTraining()
    let format = format
    // the elementwise kernels run on the threads the products leave awake
    KernelThreads.team = format.elementwiseTeam
    return format.makeTrainingProducts()
  }

  /// Throws the one-line error of `makeProducts` without making them (for a config's check).
  public func requireTraining() throws {
    if let refusal = format.trainingRefusal { throw DNNLError(refusal) }
  }

  /// The inference kernel of one product layer `out = x · W + bias` (W `[inputs × outputs]`),
  /// with the layer's calibration when the precision needs one. `dequantized`: int8 computed in
  /// fp32 on the dequantized operands (the QDQ reference of tests).
  public func makeKernel(
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int, setting: LayerSetting,
    dequantized: Bool = false
  ) throws -> any ProductKernel {
    try format.makeKernel(
      weight: weight, bias: bias, inputs: inputs, outputs: outputs, setting: setting, dequantized: dequantized)
  }
}

/// How an fp32 operand of a product becomes one of the precision's operands; what the ONNX export
/// writes in front of a product and how a quantized checkpoint stores its kernel.
public enum OperandRounding: Sendable, Equatable {
  /// used as it is (fp32)
  case none
  /// rounded to the nearest bfloat16 (`bf16Bits`); weights likewise
  case bfloat16
  /// quantized to u8 with the layer's calibrated scale and zero point (`ActivationQuantization`);
  /// weights to s8 with a scale per output column (`QuantizedWeights`)
  case affineU8
}

/// One precision of the matrix products.
public protocol PrecisionFormat: Sendable {
  var precision: Precision { get }
  /// The instruction set its fast kernels need (nil: every CPU has them).
  var requiredISA: String? { get }
  /// Whether this CPU has `requiredISA`.
  var hasNativeKernels: Bool { get }
  /// Whether it has portable kernels for CPUs without it (PortableLowPrecision.swift).
  var hasPortableKernels: Bool { get }
  var operandRounding: OperandRounding { get }
  /// Why it does not train (a one-line error), or nil when it does.
  var trainingRefusal: String? { get }
  /// The threads the elementwise kernels between its training products run on.
  var elementwiseTeam: KernelThreads.Team { get }
  /// Its products for training (only called when `trainingRefusal` is nil).
  func makeTrainingProducts() -> any MatrixProducts
  /// Its inference kernel for one product layer (see `Precision.makeKernel`).
  func makeKernel(
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int, setting: LayerSetting,
    dequantized: Bool
  ) throws -> any ProductKernel
}

/// fp32: OpenBLAS sgemm, the reference every other precision is compared with.
public struct FP32Format: PrecisionFormat {
  public init() {}
  public var precision: Precision { .fp32 }
  public var requiredISA: String? { nil }
  public var hasNativeKernels: Bool { true }
  public var hasPortableKernels: Bool { false }
  public var operandRounding: OperandRounding { .none }
  public var trainingRefusal: String? { nil }
  public var elementwiseTeam: KernelThreads.Team { .dispatch }
  public func makeTrainingProducts() -> any MatrixProducts { FP32Products.shared }
  public func makeKernel(
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int, setting: LayerSetting,
    dequantized: Bool
  ) throws -> any ProductKernel {
    FP32Product(weight: weight, bias: bias, inputs: inputs, outputs: outputs)
  }
}

/// bf16: operands rounded to bfloat16, fp32 accumulation, on oneDNN (native with AVX512-BF16 or
/// AMX, portable kernels elsewhere).
public struct BF16Format: PrecisionFormat {
  public init() {}
  private static let native = DNNL.cpuHas(.avx512CoreBF16)
  public var precision: Precision { .bf16 }
  public var requiredISA: String? { "AVX512-BF16 (oneDNN avx512_core_bf16)" }
  public var hasNativeKernels: Bool { Self.native }
  public var hasPortableKernels: Bool { true }
  public var operandRounding: OperandRounding { .bfloat16 }
  public var trainingRefusal: String? { nil }
  public var elementwiseTeam: KernelThreads.Team { .openMP }
  public func makeTrainingProducts() -> any MatrixProducts { BF16Products() }
  public func makeKernel(
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int, setting: LayerSetting,
    dequantized: Bool
  ) throws -> any ProductKernel {
    BF16Product(weight: weight, bias: Array(UnsafeBufferPointer(start: bias, count: outputs)), inputs: inputs, outputs: outputs)
  }
}

/// int8: u8 inputs with a calibrated scale, s8 weights with a scale per output column, exact int32
/// sums, on oneDNN (native with AVX512-VNNI or AVX-VNNI, portable kernels elsewhere). Inference
/// only.
public struct Int8Format: PrecisionFormat {
  public init() {}
  private static let native = DNNL.cpuHas(.avx512CoreVNNI) || DNNL.cpuHas(.avx2VNNI)
  public var precision: Precision { .int8 }
  public var requiredISA: String? { "AVX512-VNNI or AVX-VNNI (oneDNN avx512_core_vnni / avx2_vnni)" }
  public var hasNativeKernels: Bool { Self.native }
  public var hasPortableKernels: Bool { true }
  public var operandRounding: OperandRounding { .affineU8 }
  public var trainingRefusal: String? { "--precision int8 is for inference only; train with fp32 or bf16" }
  public var elementwiseTeam: KernelThreads.Team { .dispatch }
  public func makeTrainingProducts() -> any MatrixProducts {
    preconditionFailure("int8 does not train (trainingRefusal)")
  }
  public func makeKernel(
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, inputs: Int, outputs: Int, setting: LayerSetting,
    dequantized: Bool
  ) throws -> any ProductKernel {
    guard let input = setting.input else {
      throw DNNLError(
        "is int8 but has no calibrated input range: run `mixer-dist quantize CHECKPOINT --calibration DATA --output DIR` "
          + "and use DIR")
    }
    let weights = setting.weights ?? QuantizedWeights(weight, inputs: inputs, outputs: outputs)
    let bias = Array(UnsafeBufferPointer(start: bias, count: outputs))
    return dequantized
      ? DequantizedInt8Product(weights: weights, bias: bias, input: input, inputs: inputs, outputs: outputs)
      : Int8Product(weights: weights, bias: bias, input: input, inputs: inputs, outputs: outputs)
  }
}
