// Running the mixer-dist binary from tests: locating it, running it (optionally under mpirun)
// with a deadline, and capturing its output.

import Foundation
import MixerTestSupport
import XCTest

/// The package root (this file is Tests/MixerDistCLITests/CLISupport.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

/// The binary under test: $MIXER_DIST_BIN (launch/test sets it to the release build), else the
/// one built next to this test bundle.
func mixerDistBinary() throws -> String {
  if let path = ProcessInfo.processInfo.environment["MIXER_DIST_BIN"],
    FileManager.default.isExecutableFile(atPath: path)
  {
    return path
  }
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  for _ in 0..<4 {
    let candidate = dir.appendingPathComponent("mixer-dist").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    dir = dir.deletingLastPathComponent()
  }
  throw MissingTestDependency("mixer-dist binary not found: run through launch/test or set MIXER_DIST_BIN")
}

struct RunResult {
  var status: Int32
  var stdout: String
  var stderr: String
  var seconds: Double
  var timedOut: Bool
}

/// Runs `executable arguments` with extra environment, killing it after `timeout` seconds.
/// `signals` are sent to the process at the given seconds after its start (with `toGroup`, to its
/// process group, as a terminal's Ctrl-C is: Foundation's Process starts the child as the leader
/// of a session and group of its own).
func run(
  _ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120,
  signals: [(seconds: Double, number: Int32)] = [], toGroup: Bool = false
) throws -> RunResult {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  process.environment = childEnvironment(environment)
  let out = Pipe(), err = Pipe()
  process.standardOutput = out
  process.standardError = err
  let start = Date()
  try process.run()
  // read both pipes concurrently so a chatty child never blocks on a full pipe
  var outData = Data(), errData = Data()
  let group = DispatchGroup()
  group.enter()
  DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
  group.enter()
  DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
  var timedOut = false
  var pending = signals.sorted { $0.seconds < $1.seconds }
  while process.isRunning {
    if let next = pending.first, Date().timeIntervalSince(start) >= next.seconds {
      kill(toGroup ? -process.processIdentifier : process.processIdentifier, next.number)
      pending.removeFirst()
    }
    if Date().timeIntervalSince(start) > timeout {
      timedOut = true
      process.terminate()
      Thread.sleep(forTimeInterval: 1)
      if process.isRunning { kill(process.processIdentifier, SIGKILL) }
      break
    }
    Thread.sleep(forTimeInterval: 0.05)
  }
  process.waitUntilExit()
  group.wait()
  return RunResult(
    status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
    stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(start),
    timedOut: timedOut)
}

/// Runs mixer-dist directly.
func mixerDist(_ arguments: [String], timeout: Double = 120, signals: [(seconds: Double, number: Int32)] = []) throws -> RunResult {
  try run(try mixerDistBinary(), arguments, timeout: timeout, signals: signals)
}

/// Runs `mpirun -n ranks --oversubscribe mixer-dist arguments` with one OpenBLAS thread per rank.
func mpirunMixerDist(ranks: Int, _ arguments: [String], timeout: Double = 180) throws -> RunResult {
  guard let mpirun = which("mpirun") else { throw MissingTestDependency("mpirun is not on the PATH (launch/setup --deps)") }
  return try run(
    mpirun, ["-n", "\(ranks)", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1", try mixerDistBinary()] + arguments,
    environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: timeout)
}

/// The flags of a one-block model small enough to train in a fraction of a second.
let tinyModelFlags = ["--hidden", "32", "--blocks", "1", "--tokens-mlp", "8", "--channels-mlp", "32", "--patch", "8"]

/// Trains that tiny model for `steps` steps on the shapes data with a checkpoint at the end.
func trainTinyCheckpoint(run: URL, checkpoint: URL, steps: Int, validationExamples: Int) throws -> RunResult {
  try mixerDist(["train"] + tinyModelFlags + [
    "--train-examples", "128", "--val-examples", "\(validationExamples)", "--batch", "16", "--steps", "\(steps)",
    "--threads", "1", "--run-dir", run.path, "--checkpoint-dir", checkpoint.path,
  ])
}

/// This process's environment for a child, with OpenMPI allowed to run as root (CI is root) and
/// `extra` on top.
func childEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
  var env = ProcessInfo.processInfo.environment
  env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
  env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
  for (k, v) in extra { env[k] = v }
  return env
}
