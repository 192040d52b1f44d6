// `mixer-dist describe`: print a model's parameter table and total count.

import ArgumentParser
import MixerTrain

struct Describe: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Print the parameter table (official names, shapes) and the total count.")

  @OptionGroup var model: ModelOptions

  func run() throws {
    try runReportingErrors {
      print(describeModel(try model.config(), name: model.preset))
    }
  }
}
