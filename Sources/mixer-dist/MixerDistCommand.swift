// The root command and the helpers every subcommand shares.

import ArgumentParser
import Foundation
import MixerCheckpoint
import MixerKernels
import MixerModel
import MixerTrain

struct MixerDistCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mixer-dist",
    abstract: "Data-parallel MLP-Mixer training on OpenBLAS and OpenMPI.",
    version: "mixer-dist \(mixerDistVersion) (commit \(buildCommit))",
    subcommands: [Train.self, Bench.self, Describe.self, VerifyReference.self, Inspect.self, Eval.self, Predict.self, Report.self, Import.self, Export.self, Study.self, Shard.self, Quantize.self, Trace.self], defaultSubcommand: nil)
}

/// The version this source tree calls itself; the commit it was built from is `buildCommit`
/// (BuildInfo.swift, written before each build by tools/build-info.sh).
let mixerDistVersion = "0.1.0"

/// `--precision fp32|bf16|int8` (train, bench).
extension Precision: ExpressibleByArgument {}
extension SaveMode: ExpressibleByArgument {}
/// `--gelu tanh|erf`, `--stem linear|cnn`, `--optimizer adamw|sgd`, `--task classification|segmentation`:
/// parsed by their raw values, the spelling config.json and the manifests keep.
extension GELUKind: ExpressibleByArgument {}
extension StemKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension MixerTask: ExpressibleByArgument {}
extension HeadLoss: ExpressibleByArgument {}
/// `--weights raw|ema` (eval, predict, export, quantize).
extension WeightsChoice: ExpressibleByArgument {}

/// Runs `body`; any error becomes one line on stderr and exit code 1. After a success, the
/// start-up's notes on the kernels follow (`BLASStartup.writePendingNotes`).
func runReportingErrors(_ body: () throws -> Void) throws {
  do {
    try body()
    BLASStartup.writePendingNotes()
  } catch let error as ExitCode {
    throw error
  } catch {
    FileHandle.standardError.write(Data("mixer-dist: error: \(describeError(error))\n".utf8))
    throw ExitCode((error as? ExitStatusError)?.exitStatus ?? 1)
  }
}

/// Model-shape flags: a preset and per-field overrides.
struct ModelOptions: ParsableArguments {
  @Option(help: "Model preset: S/32 S/16 B/32 B/16 L/32 L/16 H/14 cifar tiny.")
  var preset: String = "tiny"
  @Option(help: "Image size (square), overrides the preset.") var imageSize: Int?
  @Option(help: "Image height, overrides the preset.") var imageHeight: Int?
  @Option(help: "Image width, overrides the preset.") var imageWidth: Int?
  @Option(help: "Patch size P.") var patch: Int?
  @Option(help: "Channels C (hidden_dim).") var hidden: Int?
  @Option(help: "Number of Mixer blocks.") var blocks: Int?
  @Option(help: "Token-mixing MLP width D_S.") var tokensMlp: Int?
  @Option(help: "Channel-mixing MLP width D_C.") var channelsMlp: Int?
  @Option(help: "Number of classes K.") var classes: Int?
  @Option(help: "GELU form: tanh (official) or erf (exact).") var gelu: GELUKind?
  @Option(help: "Block kinds: mixer (the paper's), attention, conv, mixer+attention; one kind, a list per block, alternate:K1,K2 or every:K:KIND.") var blockPattern: String?
  @Option(help: "Attention heads of attention blocks (default C/64).") var heads: Int?
  @Option(help: "Kernel size of conv blocks (odd; default 3).") var convKernel: Int?
  @Option(help: "Task: classification (a class per image, the paper's head) or segmentation (a class per pixel: each token projected to its PxPxK patch of logits).") var task: MixerTask?
  @Option(help: "Stem: linear (the paper's patch projection) or cnn (stride-2 3x3 convolutions up to C channels; total stride = --patch).") var stem: StemKind?

  /// The model these flags describe.
  func config() throws -> MixerConfig { try overrides.config() }

  /// The flags as the library's overrides (nil: not given).
  var overrides: ModelOverrides {
    var o = ModelOverrides()
    o.preset = preset
    o.imageSize = imageSize
    o.imageHeight = imageHeight
    o.imageWidth = imageWidth
    o.patch = patch
    o.hidden = hidden
    o.blocks = blocks
    o.tokensMLP = tokensMlp
    o.channelsMLP = channelsMlp
    o.classes = classes
    o.gelu = gelu
    o.blockPattern = blockPattern
    o.heads = heads
    o.convKernel = convKernel
    o.task = task
    o.stem = stem
    return o
  }
}
