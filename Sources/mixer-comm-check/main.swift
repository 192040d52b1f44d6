// mixer-comm-check: checks and times MixerDistributed's collectives across the ranks of a job,
// like nccl-tests. Checks all-reduce, reduce-scatter, all-gather, broadcast, the metric
// reductions and the gradient bucketer exactly (integers in floats), then prints a bus-bandwidth
// table on rank 0. Exits 1 naming the ranks on a mismatch. Fault injection, for the tests:
// `--fail-rank R` (rank R fails: the job must abort at once, naming rank R) and
// `--stall-rank R --timeout S` (rank R sleeps before a collective: the others' watchdog aborts
// the job naming the collective).
//
//   mpirun --oversubscribe -n 4 .build/release/mixer-comm-check --sizes 1K,64K,1M,4M

import ArgumentParser
import Foundation
import MixerDistributed
import MixerTrain

/// A buffer size in floats: "1000", "1K" (1024), "4M" (4 << 20).
struct Size: ExpressibleByArgument {
  let floats: Int

  init?(argument text: String) {
    let multipliers: [Character: Int] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20]
    var digits = Substring(text), multiplier = 1
    if let last = text.last, let m = multipliers[last] { (digits, multiplier) = (text.dropLast(), m) }
    guard let value = Int(digits), value >= 0 else { return nil }
    floats = value * multiplier
  }
}

struct CommCheck: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mixer-comm-check",
    abstract: "Check and time the collectives across the ranks of a job (under mpirun, or alone as one rank).")

  @Option(help: "Buffer sizes in floats for the bandwidth table, comma-separated, K/M suffixes allowed.")
  var sizes = "1K,64K,1M,4M"
  @Option(help: "Timed calls per size and operation.") var iterations = 20
  @Option(name: .customLong("overlap-ms"), help: "Simulated backward per step for the overlap measurement, ms (0 skips it); the gradient is the largest size, in buckets of 1/8.")
  var overlapMilliseconds = 20.0
  @Flag(name: .customLong("no-bench"), help: "Only check results, no bandwidth table.") var noBench = false
  @Flag(name: .customLong("no-check"), help: "Only the bandwidth table.") var noCheck = false
  @Option(help: "Watchdog timeout per collective, seconds.") var timeout = 60.0
  @Option(help: "Rank R fails before its first collective (the job must abort).") var failRank: Int?
  @Option(help: "Rank R sleeps before its first collective (the watchdog must abort).") var stallRank: Int?
  @Option(help: "How long the stalled rank sleeps (default 10 × timeout).") var stallSeconds: Double?

  var bench: Bool { !noBench }
  var check: Bool { !noCheck }
  /// The sizes in floats.
  var floats: [Int] { sizes.split(separator: ",").compactMap { Size(argument: String($0))?.floats } }

  func validate() throws {
    guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    for text in sizes.split(separator: ",") where Size(argument: String(text)) == nil {
      throw ValidationError("--sizes: '\(text)' is not a size")
    }
  }

  func run() throws {
    let status = try Job.run { communicator in
      let watchdog = Watchdog(communicator: communicator, timeout: timeout)
      defer { watchdog.stop() }
      let status = try runChecks(self, communicator, watchdog)
      fflush(stdout)
      return status
    }
    if status != 0 { throw ExitCode(status) }
  }
}

struct InjectedFailure: Error, CustomStringConvertible {
  var description: String
}

func runChecks(_ options: CommCheck, _ communicator: Communicator, _ watchdog: Watchdog) throws -> Int32 {
  let rank = communicator.rank
  if rank == 0 {
    let level = (communicator as? MPICommunicator).map { "\($0.threadLevel)" } ?? "none (single process)"
    let ranks = "\(communicator.size) rank(s), \(communicator.localSize) on this node"
    print("mixer-comm-check: \(ranks), MPI thread level \(level)")
  }
  if communicator.localRank == 0 {
    let environment = LaunchEnvironment.current(ranksOnNode: communicator.localSize, threadsPerRank: 1)
    for issue in checkLaunch(environment) { print("mixer-comm-check: rank \(rank): \(issue)") }
  }

  // Fault injection, before the first collective.
  if rank == options.failRank {
    throw InjectedFailure(description: "injected failure (--fail-rank \(rank))")
  }
  if rank == options.stallRank {
    let seconds = options.stallSeconds ?? options.timeout * 10
    fputs(
      "mixer-comm-check: rank \(rank): stalling \(seconds) s before the first collective (--stall-rank)\n",
      stderr)
    Thread.sleep(forTimeInterval: seconds)
  }
  var warmUp = [Float](repeating: 1, count: 1024)
  try watchdog.watch("allReduceSum of 1024 floats (warm-up)") { try communicator.allReduceSum(&warmUp) }

  if options.check {
    let start = Date()
    let failures = try CollectiveCheck().run(on: communicator, watchdog: watchdog)
    for failure in failures { fputs("mixer-comm-check: rank \(rank): MISMATCH \(failure)\n", stderr) }
    let agreement = try watchdog.watch("allAgree on the check results") {
      try communicator.allAgree(failures.isEmpty)
    }
    guard agreement.allSucceeded else {
      if rank == 0 { print("mixer-comm-check: FAILED: results wrong on rank(s) \(agreement.failedRanks)") }
      return 1
    }
    let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
    if rank == 0 { print("mixer-comm-check: collectives and gradient bucketer exact, bf16 within \(CollectiveCheck.bfloat16Tolerance(ranks: communicator.size)) ulp (\(seconds) s)") }
  }

  if options.bench && !options.floats.isEmpty {
    let rows = try CollectiveBenchmark.run(
      on: communicator, sizes: options.floats, iterations: options.iterations, watchdog: watchdog)
    if rank == 0 { print(CollectiveBenchmark.table(rows)) }
    let floats = options.floats.max()!
    if options.overlapMilliseconds > 0 && floats > 0 {
      let bucketSize = max(1, floats / 8)
      let overlap = try CollectiveBenchmark.overlap(
        on: communicator, floats: floats, bucketSize: bucketSize,
        computeSeconds: options.overlapMilliseconds / 1000, watchdog: watchdog)
      func milliseconds(_ seconds: Double) -> String { String(format: "%.2f ms", seconds * 1000) }
      if rank == 0 {
        print("overlap of backward and gradient all-reduce (\(floats) floats, buckets of \(bucketSize)), per step:")
        print("  backward alone                      \(milliseconds(overlap.computeSeconds))")
        print("  backward, then one all-reduce       \(milliseconds(overlap.sequentialSeconds))")
        print("  backward, then buckets (no overlap) \(milliseconds(overlap.inlineSeconds))")
        print(
          "  bucketer overlapped                 \(milliseconds(overlap.overlappedSeconds)) "
            + "(communication \(milliseconds(overlap.communicationSeconds)), "
            + "exposed \(milliseconds(overlap.exposedSeconds)))")
      }
    }
  }
  if rank == 0 { print("mixer-comm-check: OK") }
  return 0
}

CommCheck.main()
