// Launch-environment checks: the mistakes that make a distributed run refuse to start or run
// several times slower than it should, each reported with the exact fix. Also the default number
// of OpenBLAS threads per rank (docs/architecture.md: cores per node / ranks per node).
//
// What OpenMPI 4.1 does here (verified): mpirun refuses to run as root unless both
// OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set (or --allow-run-as-root
// is given), so inside a rank that check has already passed and only matters before a launch;
// mpirun refuses more ranks than cores without --oversubscribe; with at most 2 ranks it binds
// each rank to one core (sched_getaffinity then reports 1 CPU), with more it binds to sockets
// or not at all; `--bind-to none` lifts the binding.

import Foundation

/// The facts the checks look at; `current(...)` reads them from this process.
public struct LaunchEnvironment: Sendable {
  /// A launch about to happen: `mpirun -n ranks` (with or without --oversubscribe).
  public struct Plan: Sendable {
    public var ranks: Int
    public var oversubscribe: Bool
    public init(ranks: Int, oversubscribe: Bool) {
      self.ranks = ranks
      self.oversubscribe = oversubscribe
    }
  }

  /// Environment variables.
  public var variables: [String: String]
  /// Effective user is root.
  public var isRoot: Bool
  /// CPUs online on this node.
  public var coresOnNode: Int
  /// CPUs this process may run on (its affinity mask): 1 when mpirun bound the rank to a core.
  public var allowedCPUs: Int
  /// Ranks on this node (`Communicator.localSize`; 1 outside mpirun).
  public var ranksOnNode: Int
  /// OpenBLAS threads each rank uses.
  public var threadsPerRank: Int
  /// Set by launch scripts before starting mpirun; nil inside a rank.
  public var plan: Plan?

  public init(
    variables: [String: String], isRoot: Bool, coresOnNode: Int, allowedCPUs: Int,
    ranksOnNode: Int, threadsPerRank: Int, plan: Plan? = nil
  ) {
    self.variables = variables
    self.isRoot = isRoot
    self.coresOnNode = coresOnNode
    self.allowedCPUs = allowedCPUs
    self.ranksOnNode = ranksOnNode
    self.threadsPerRank = threadsPerRank
    self.plan = plan
  }

  /// This process's environment, user, CPUs and affinity.
  public static func current(ranksOnNode: Int, threadsPerRank: Int, plan: Plan? = nil) -> LaunchEnvironment {
    LaunchEnvironment(
      variables: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0,
      coresOnNode: onlineCPUCount(), allowedCPUs: affinityCPUCount() ?? onlineCPUCount(),
      ranksOnNode: ranksOnNode, threadsPerRank: threadsPerRank, plan: plan)
  }

  /// True inside a rank started by mpirun (or a PMIx launcher).
  public var isUnderMPILauncher: Bool {
    variables["OMPI_COMM_WORLD_SIZE"] != nil || variables["PMIX_RANK"] != nil
  }
}

/// One problem found by `checkLaunch`, with the fix.
public struct LaunchIssue: Equatable, Sendable, CustomStringConvertible {
  public enum Severity: String, Sendable {
    /// The run will not start (or must not).
    case error
    /// The run works but slower than it should.
    case warning
  }

  public var severity: Severity
  /// What is wrong.
  public var problem: String
  /// The exact command or setting that fixes it.
  public var fix: String

  public var description: String { "\(severity.rawValue): \(problem)\n  fix: \(fix)" }
}

/// CPUs online on this node.
public func onlineCPUCount() -> Int {
  max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
}

/// CPUs this process may run on (its affinity mask, as sched_getaffinity reports it), read from
/// `Cpus_allowed_list` in /proc/self/status (glibc's sched_getaffinity needs _GNU_SOURCE, which
/// Swift's Glibc module does not define); nil when it cannot be read.
public func affinityCPUCount() -> Int? {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
    let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
  else { return nil }
  return cpuListCount(String(line.dropFirst("Cpus_allowed_list:".count)))
}

/// The number of CPUs in a Linux CPU list such as "0-3,8,10-11"; nil when malformed.
public func cpuListCount(_ list: String) -> Int? {
  var count = 0
  for item in list.split(separator: ",") {
    let bounds = item.trimmingCharacters(in: .whitespaces).split(separator: "-").map { Int($0) }
    switch bounds.count {
    case 1:
      guard bounds[0] != nil else { return nil }
      count += 1
    case 2:
      guard let low = bounds[0], let high = bounds[1], low <= high else { return nil }
      count += high - low + 1
    default:
      return nil
    }
  }
  return count > 0 ? count : nil
}

/// OpenBLAS threads per rank so the ranks of a node share its cores: max(1, cores / ranks).
public func defaultThreadsPerRank(coresPerNode: Int, localSize: Int) -> Int {
  max(1, coresPerNode / max(1, localSize))
}

/// Problems with how this run is (or is about to be) launched, each with its fix.
public func checkLaunch(_ environment: LaunchEnvironment) -> [LaunchIssue] {
  var issues: [LaunchIssue] = []
  let variables = environment.variables
  let cores = environment.coresOnNode

  if let plan = environment.plan {
    let rootAllowed =
      variables["OMPI_ALLOW_RUN_AS_ROOT"] == "1" && variables["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    if environment.isRoot && !rootAllowed {
      issues.append(
        LaunchIssue(
          severity: .error,
          problem: "running as root: mpirun refuses to start ranks as root",
          fix:
            "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (or pass --allow-run-as-root to mpirun)"
        ))
    }
    let oversubscribeSet = ["1", "true", "yes"].contains(
      variables["OMPI_MCA_rmaps_base_oversubscribe"]?.lowercased() ?? "")
    if plan.ranks > cores && !plan.oversubscribe && !oversubscribeSet {
      issues.append(
        LaunchIssue(
          severity: .error,
          problem: "\(plan.ranks) ranks on \(cores) cores: mpirun refuses to start more ranks than cores",
          fix: "mpirun --oversubscribe -n \(plan.ranks) ... (or export OMPI_MCA_rmaps_base_oversubscribe=1); "
            + "use 1 BLAS thread per rank"))
    }
  }

  let ranks = environment.plan?.ranks ?? environment.ranksOnNode
  let threads = environment.threadsPerRank
  if environment.plan == nil && ranks > cores {
    issues.append(
      LaunchIssue(
        severity: .warning,
        problem: "\(ranks) ranks share \(cores) cores (oversubscribed): they time-share, each step is slower",
        fix: "start at most \(cores) ranks per node (mpirun -n \(cores)), or keep 1 BLAS thread per rank"))
  }

  let bindingPolicy = variables["OMPI_MCA_hwloc_base_binding_policy"]?.lowercased()
  let boundToCore = bindingPolicy?.hasPrefix("core") == true || bindingPolicy?.hasPrefix("hwthread") == true
  if environment.plan == nil && threads > 1 && (environment.allowedCPUs < threads || boundToCore) {
    let bound =
      boundToCore
      ? "bound by binding policy '\(bindingPolicy!)'" : "bound to \(environment.allowedCPUs) CPU(s)"
    issues.append(
      LaunchIssue(
        severity: .warning,
        problem: "this rank is \(bound) but runs \(threads) BLAS threads: they time-share one core",
        fix: "mpirun --bind-to none ... (or --map-by slot:PE=\(threads) --bind-to core), "
          + "or use \(min(threads, environment.allowedCPUs)) thread(s) per rank"))
  }

  if threads > 1 && threads * ranks > cores {
    let suggested = defaultThreadsPerRank(coresPerNode: cores, localSize: ranks)
    issues.append(
      LaunchIssue(
        severity: .warning,
        problem: "\(ranks) rank(s) × \(threads) BLAS threads = \(threads * ranks) threads on \(cores) cores",
        fix: "use \(suggested) thread(s) per rank (cores / ranks per node; OPENBLAS_NUM_THREADS=\(suggested))"
      ))
  }
  return issues
}
