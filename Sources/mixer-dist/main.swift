// mixer-dist: the command line. Each subcommand parses its flags and calls the MixerTrain library.
import Foundation

BLASStartup.prepare(arguments: Array(CommandLine.arguments.dropFirst()))
do {
  MixerDistCommand.main(try ConfigFile.expand(Array(CommandLine.arguments.dropFirst())))
} catch {
  FileHandle.standardError.write(Data("mixer-dist: error: \(error)\n".utf8))
  exit(1)
}
