// mixer-dist: the command line. Each subcommand parses its flags and calls the MixerTrain library.
import Foundation
import MixerTrain

BLASStartup.prepare(arguments: Array(CommandLine.arguments.dropFirst()))
Job.announceStart()
do {
  MixerDistCommand.main(try ConfigFile.expand(Array(CommandLine.arguments.dropFirst())))
} catch {
  // a --config file that cannot be read or names a bad flag or value: a usage error, as the flag
  // itself would be (sysexits' EX_USAGE, which launch/resilient does not retry); every rank of an
  // mpirun job meets it alike, so the first says it
  let environment = ProcessInfo.processInfo.environment
  let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"].lazy.compactMap { environment[$0] }.first
  if rank == nil || rank == "0" { FileHandle.standardError.write(Data("mixer-dist: error: \(error)\n".utf8)) }
  exit(64)
}
