// `mixer-dist verify-reference DIR`: compare forward and backward with the official model's tensors.

import ArgumentParser
import MixerCheckpoint
import MixerTrain

struct VerifyReference: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "verify-reference",
    abstract: "Compare logits, loss and every gradient with a reference folder; exit 1 above tolerance.")

  @Argument(help: "A folder with config.json, params.npz, batch.npz, grads.npz.") var directory: String

  func run() throws {
    try runReportingErrors {
      let report = try verifyReference(directory: directory)
      print(report.text)
      if !report.passed { throw ExitCode(1) }
    }
  }
}
