// mixer-comm-check: checks and times MixerDistributed's collectives across the ranks of a job,
// like nccl-tests. Checks all-reduce, reduce-scatter, all-gather, broadcast, the metric
// reductions and the gradient bucketer exactly (integers in floats), then prints a bus-bandwidth
// table on rank 0. Exits 1 naming the ranks on a mismatch. Fault injection, for the tests:
// `--fail-rank R` (rank R fails: the job must abort at once, naming rank R) and
// `--stall-rank R --timeout S` (rank R sleeps before a collective: the others' watchdog aborts
// the job naming the collective).
//
//   mpirun --oversubscribe -n 4 .build/release/mixer-comm-check --sizes 1K,64K,1M,4M

import Foundation
import MixerDistributed

let usage = """
  usage: mixer-comm-check [options]     (under mpirun, or alone as one rank)
    --sizes LIST        buffer sizes in floats for the bandwidth table, K/M suffixes allowed
                        (default 1K,64K,1M,4M)
    --iterations N      timed calls per size and operation (default 20)
    --overlap-ms MS     simulated backward per step for the overlap measurement (default 20;
                        0 skips it); the gradient is the largest size, in buckets of 1/8
    --no-bench          only check results, no bandwidth table
    --no-check          only the bandwidth table
    --timeout S         watchdog timeout per collective, seconds (default 60)
    --fail-rank R       rank R fails before its first collective (the job must abort)
    --stall-rank R      rank R sleeps before its first collective (the watchdog must abort)
    --stall-seconds S   how long the stalled rank sleeps (default 10 × timeout)
    --help
  """

struct Options {
  var sizes = [1 << 10, 64 << 10, 1 << 20, 4 << 20]
  var iterations = 20
  var overlapMilliseconds = 20.0
  var bench = true
  var check = true
  var timeout = 60.0
  var failRank: Int?
  var stallRank: Int?
  var stallSeconds: Double?
}

struct UsageError: Error, CustomStringConvertible {
  var description: String
}

/// "1K" = 1024, "4M" = 4 << 20, "1000" = 1000.
func parseSize(_ text: String) -> Int? {
  let multipliers: [Character: Int] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20]
  if let last = text.last, let multiplier = multipliers[last] {
    return Int(text.dropLast()).map { $0 * multiplier }
  }
  return Int(text)
}

func parseOptions(_ arguments: [String]) throws -> Options {
  var options = Options()
  var remaining = arguments[...]
  func value(_ flag: String) throws -> String {
    guard let next = remaining.popFirst() else { throw UsageError(description: "\(flag) needs a value") }
    return next
  }
  func number<T: LosslessStringConvertible>(_ flag: String) throws -> T {
    let text = try value(flag)
    guard let parsed = T(text) else { throw UsageError(description: "\(flag): '\(text)' is not a number") }
    return parsed
  }
  while let flag = remaining.popFirst() {
    switch flag {
    case "--sizes":
      let list = try value(flag)
      options.sizes = try list.split(separator: ",").map {
        guard let size = parseSize(String($0)), size >= 0 else {
          throw UsageError(description: "--sizes: '\($0)' is not a size")
        }
        return size
      }
    case "--iterations": options.iterations = try number(flag)
    case "--overlap-ms": options.overlapMilliseconds = try number(flag)
    case "--no-bench": options.bench = false
    case "--no-check": options.check = false
    case "--timeout": options.timeout = try number(flag)
    case "--fail-rank": options.failRank = try number(flag)
    case "--stall-rank": options.stallRank = try number(flag)
    case "--stall-seconds": options.stallSeconds = try number(flag)
    case "--help", "-h":
      print(usage)
      exit(0)
    default: throw UsageError(description: "unknown option '\(flag)'")
    }
  }
  guard options.timeout > 0 else { throw UsageError(description: "--timeout must be positive") }
  return options
}

struct InjectedFailure: Error, CustomStringConvertible {
  var description: String
}

func run(_ options: Options, _ communicator: Communicator, _ watchdog: Watchdog) throws -> Int32 {
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

  if options.bench && !options.sizes.isEmpty {
    let rows = try CollectiveBenchmark.run(
      on: communicator, sizes: options.sizes, iterations: options.iterations, watchdog: watchdog)
    if rank == 0 { print(CollectiveBenchmark.table(rows)) }
    let floats = options.sizes.max()!
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

let options: Options
do {
  options = try parseOptions(Array(CommandLine.arguments.dropFirst()))
} catch {
  fputs("mixer-comm-check: \(error)\n\(usage)\n", stderr)
  exit(2)
}
let communicator: Communicator
do {
  communicator = try MPICommunicator.makeDefault()
} catch {
  fputs("mixer-comm-check: cannot start MPI: \(error)\n", stderr)
  exit(1)
}
let watchdog = Watchdog(communicator: communicator, timeout: options.timeout)
do {
  let status = try run(options, communicator, watchdog)
  fflush(stdout)
  watchdog.stop()
  try communicator.finalize()
  exit(status)
} catch {
  fflush(stdout)
  communicator.abort(message: "mixer-comm-check: \(error)", code: 1)
}
