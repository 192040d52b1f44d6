// Tests of the launch-environment checks: each mistake is reported with its fix, a correct
// launch reports nothing, and the default OpenBLAS threads per rank.

import XCTest

@testable import MixerDistributed

final class LaunchEnvironmentTests: XCTestCase {
  private func environment(
    variables: [String: String] = [:], isRoot: Bool = false, cores: Int = 2, allowed: Int = 2,
    ranks: Int = 1, threads: Int = 1, plan: LaunchEnvironment.Plan? = nil
  ) -> LaunchEnvironment {
    LaunchEnvironment(
      variables: variables, isRoot: isRoot, coresOnNode: cores, allowedCPUs: allowed, ranksOnNode: ranks,
      threadsPerRank: threads, plan: plan)
  }

  func testDefaultThreadsPerRank() {
    XCTAssertEqual(defaultThreadsPerRank(coresPerNode: 2, localSize: 1), 2)
    XCTAssertEqual(defaultThreadsPerRank(coresPerNode: 2, localSize: 2), 1)
    XCTAssertEqual(defaultThreadsPerRank(coresPerNode: 2, localSize: 8), 1)
    XCTAssertEqual(defaultThreadsPerRank(coresPerNode: 64, localSize: 6), 10)
    XCTAssertEqual(defaultThreadsPerRank(coresPerNode: 8, localSize: 0), 8)
  }

  func testCorrectLaunchesReportNothing() {
    XCTAssertEqual(checkLaunch(environment(threads: 2)), [])
    XCTAssertEqual(checkLaunch(environment(allowed: 1, ranks: 2, threads: 1)), [])
    let rootOK = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
    XCTAssertEqual(
      checkLaunch(environment(variables: rootOK, isRoot: true, plan: .init(ranks: 4, oversubscribe: true))),
      [])
  }

  func testRootWithoutOpenMPIVariables() {
    let issues = checkLaunch(environment(isRoot: true, plan: .init(ranks: 2, oversubscribe: false)))
    XCTAssertEqual(issues.map(\.severity), [.error])
    XCTAssertTrue(issues[0].fix.contains("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"))
  }

  func testMoreRanksThanCoresWithoutOversubscribe() {
    let issues = checkLaunch(environment(plan: .init(ranks: 4, oversubscribe: false)))
    XCTAssertEqual(issues.map(\.severity), [.error])
    XCTAssertTrue(issues[0].fix.contains("--oversubscribe -n 4"), issues[0].fix)
    XCTAssertEqual(
      checkLaunch(
        environment(
          variables: ["OMPI_MCA_rmaps_base_oversubscribe": "1"], plan: .init(ranks: 4, oversubscribe: false))),
      [])
  }

  func testBoundRankAskingForSeveralThreads() {
    let issues = checkLaunch(environment(allowed: 1, ranks: 1, threads: 2))
    XCTAssertEqual(issues.count, 1)
    XCTAssertTrue(issues[0].problem.contains("bound to 1 CPU(s)"), issues[0].problem)
    XCTAssertTrue(issues[0].fix.contains("--bind-to none"))
    let policy = checkLaunch(
      environment(variables: ["OMPI_MCA_hwloc_base_binding_policy": "core"], cores: 8, allowed: 8, threads: 4)
    )
    XCTAssertEqual(policy.count, 1)
    XCTAssertTrue(policy[0].problem.contains("binding policy 'core'"))
  }

  func testOversubscribedRanksAndThreads() {
    let issues = checkLaunch(environment(cores: 2, allowed: 2, ranks: 4, threads: 2))
    XCTAssertEqual(issues.count, 2, "\(issues)")
    XCTAssertTrue(issues.contains { $0.problem.contains("4 ranks share 2 cores") })
    XCTAssertTrue(issues.contains { $0.fix.contains("use 1 thread(s) per rank") })
  }

  func testCPUListParsing() {
    XCTAssertEqual(cpuListCount("0-1"), 2)
    XCTAssertEqual(cpuListCount("0"), 1)
    XCTAssertEqual(cpuListCount(" 0-3,8,10-11"), 7)
    XCTAssertNil(cpuListCount("x"))
    XCTAssertNotNil(affinityCPUCount())
    XCTAssertGreaterThanOrEqual(onlineCPUCount(), affinityCPUCount() ?? 1)
  }
}
