// Growth (issue 27): a host that launch/resilient --elastic dropped is taken back when it answers
// again, by --grow-every-minutes while the job runs (a SIGUSR1 stop: every rank saves the same
// step and exits 75, then the job restarts on the grown hostfile), or at the next restart after a
// failure. The job trains with `--exact`, so through the shrink and the growth its final
// parameters stay the bytes of one plain process.
//
// Needs root (launch/local-cluster): skipped otherwise. The cluster is removed by LocalCluster's
// teardown block and the job is ended by another, also when a test fails.

import Foundation
import MixerTestSupport
import XCTest

final class GrowthTests: XCTestCase {
  /// The tiny model, `--exact` in micro-batches of 2, global batch 24 (a multiple of 2 x 1, 2 and
  /// 3 ranks), log every step, a checkpoint every 10 steps, watchdog 8 s.
  func arguments(_ dir: URL, steps: Int, run: String = "run", ck: String = "ck") -> [String] {
    ["train"] + tinyModelFlags + [
      "--train-examples", "512", "--val-examples", "32", "--batch", "24", "--threads", "1", "--log-every", "1",
      "--eval-every", "0", "--steps", "\(steps)", "--save-every", "10", "--timeout", "8", "--resume", "auto",
      "--exact", "--micro-batch", "2",
      "--checkpoint-dir", dir.appendingPathComponent(ck).path, "--run-dir", dir.appendingPathComponent(run).path,
    ]
  }

  /// Steps paced to 100 ms by rank 0 (a hidden straggler flag; it changes no bit), so the job is
  /// still running when the host comes back.
  let paced = ["--slow-rank", "0", "--slow-ms", "100"]

  var resilient: String { packageRoot.appendingPathComponent("launch/resilient").path }
  var wrapper: String { packageRoot.appendingPathComponent("launch/mpirun").path }

  /// The job in the background; ended (SIGTERM, then SIGKILL) by a teardown block if still running.
  func start(_ arguments: [String], in dir: URL) throws -> LostNodeTests.Background {
    let job = try LostNodeTests.Background(
      resilient, arguments, environment: ["MIXER_DIST_BIN": try mixerDistBinary(), "MIXER_ABORT_GRACE": "8"], folder: dir)
    addTeardownBlock { _ = job.wait(seconds: 0) }
    return job
  }

  /// Waits up to `seconds` while `job` runs until `condition` holds; false if it never does.
  func waitUntil(_ job: LostNodeTests.Background, seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline && job.process.isRunning {
      if condition() { return true }
      Thread.sleep(forTimeInterval: 0.1)
    }
    return condition()
  }

  func lastStep(_ run: URL) -> Int {
    let text = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap { line -> Int? in
      guard let range = line.range(of: #""step":[0-9]+"#, options: .regularExpression) else { return nil }
      return Int(line[range].dropFirst(7))
    }.max() ?? 0
  }

  func link(_ cluster: LocalCluster, _ host: Int, _ state: String) throws {
    let result = try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "\(host)", state], timeout: 30)
    XCTAssertEqual(result.status, 0, result.stderr)
  }

  /// The headers of the job's attempts (`mixer-dist: ... N rank(s), ...`): their rank counts, in order.
  func rankCounts(_ output: String) -> [Int] {
    output.split(separator: "\n").filter { $0.hasPrefix("mixer-dist: ") && $0.contains(" parameters), ") }.compactMap { line in
      guard let range = line.range(of: #", [0-9]+ rank\(s\), "#, options: .regularExpression) else { return nil }
      return Int(line[range].dropFirst(2).prefix { $0.isNumber })
    }
  }

  /// The job's final parameters against one plain process that trained the same steps.
  func assertPlainBits(_ dir: URL, steps: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let plain = try mixerDist(arguments(dir, steps: steps, run: "plain", ck: "plain-ck"), timeout: 180)
    XCTAssertEqual(plain.status, 0, plain.stderr, file: file, line: line)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("plain/final-parameters.f32")),
      "--exact: the run that shrank and grew back differs from the uninterrupted one", file: file, line: line)
  }

  /// 3 hosts, `--grow-every-minutes 0.2`: host 2's link goes down at step 20; the job ends
  /// (watchdog 8 s, supervision 8 s), host 2 does not answer within 5 s, and the job goes on with
  /// 2 ranks. Then the link comes back: within 12 s the dropped host answers a probe, the job
  /// saves and stops (75), restarts on all 3 hosts with 3 ranks and finishes, byte for byte a
  /// plain process's run. Before growth existed, the host stayed dropped (and resilient did not
  /// know the flag).
  func testDroppedHostIsTakenBackWhileTheJobRuns() throws {
    let cluster = try LocalCluster(self, hosts: 3, rate: "none")
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("run")
    let steps = 400
    let job = try start(
      ["--elastic", "--elastic-wait", "5", "--max-restarts", "3", "--grow-every-minutes", "0.2", "--",
       wrapper, "-n", "3", "--hostfile", cluster.hostfile, "--"] + arguments(dir, steps: steps) + paced, in: dir)
    XCTAssertTrue(waitUntil(job, seconds: 120) { lastStep(run) >= 20 }, "never reached step 20: \(job.errors)")
    try link(cluster, 2, "down")
    XCTAssertTrue(
      waitUntil(job, seconds: 90) { job.errors.contains("did not come back within 5 s; continuing on 2 host(s)") },
      "the job did not go on without host 2: \(job.errors)")
    let shrunkAt = lastStep(run)
    try link(cluster, 2, "up")
    let back = Date()
    XCTAssertTrue(
      waitUntil(job, seconds: 12 + 60) { job.errors.contains("continuing on 3 host(s)") && rankCounts(job.output).last == 3 },
      "the job did not grow back onto host 2: \(job.errors)")
    let grown = Date().timeIntervalSince(back)
    let grownAt = lastStep(run)
    XCTAssertTrue(job.wait(seconds: 150), "the job did not end: \(job.errors)")
    let errors = job.errors, output = job.output
    print(
      "GrowthTests: host 2 dropped (2 ranks from step \(shrunkAt)), link up again: the job grew back to 3 ranks in "
        + String(format: "%.1f", grown) + " s (at step \(grownAt) of \(steps)), ended after "
        + String(format: "%.1f", Date().timeIntervalSince(job.started)) + " s")
    XCTAssertEqual(job.process.terminationStatus, 0, errors)
    XCTAssertLessThan(grown, 12 + 60, "growth took longer than --grow-every-minutes + 60 s")
    XCTAssertTrue(errors.contains("answer again: growing from 2 to 3 rank(s)"), errors)
    XCTAssertTrue(errors.contains("stopped to grow (status 75)"), errors)
    XCTAssertTrue(errors.contains("answer again (taken back); continuing on 3 host(s)"), errors)
    XCTAssertFalse(errors.contains("restart 2 of"), "growth must not count as a failure: \(errors)")
    XCTAssertEqual(rankCounts(output).first, 3, output)
    XCTAssertTrue(rankCounts(output).contains(2), output)
    XCTAssertEqual(rankCounts(output).last, 3, output)
    XCTAssertLessThan(grownAt, steps, "the job ended before it grew: nothing was tested")
    try assertPlainBits(dir, steps: steps)
  }

  /// Without --grow-every-minutes, a dropped host is taken back at the next restart: host 2 is
  /// dropped (2 ranks), its link comes back, then the ranks of host 1 are killed; the restart
  /// probes every host of the original hostfile and runs on all 3 again, bit-identical to a
  /// plain process. Before growth existed, the restart ran on the shrunk hostfile (2 ranks).
  func testDroppedHostIsTakenBackAtTheNextRestart() throws {
    let cluster = try LocalCluster(self, hosts: 3, rate: "none")
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("run")
    let steps = 300
    let job = try start(
      ["--elastic", "--elastic-wait", "5", "--max-restarts", "3", "--",
       wrapper, "-n", "3", "--hostfile", cluster.hostfile, "--"] + arguments(dir, steps: steps) + paced, in: dir)
    XCTAssertTrue(waitUntil(job, seconds: 120) { lastStep(run) >= 20 }, "never reached step 20: \(job.errors)")
    try link(cluster, 2, "down")
    XCTAssertTrue(
      waitUntil(job, seconds: 90) { job.errors.contains("continuing on 2 host(s)") },
      "the job did not go on without host 2: \(job.errors)")
    try link(cluster, 2, "up")
    let resumedOnTwo = lastStep(run)
    XCTAssertTrue(waitUntil(job, seconds: 60) { lastStep(run) >= resumedOnTwo + 15 }, "no progress on 2 hosts: \(job.errors)")
    let kill = try MixerDistCLITests.run(LocalCluster.script, ["kill", cluster.name, "1"], timeout: 30)
    XCTAssertTrue(kill.stderr.contains("SIGKILLed 1 process(es)"), kill.stderr)
    XCTAssertTrue(job.wait(seconds: 150), "the job did not end: \(job.errors)")
    let errors = job.errors, output = job.output
    XCTAssertEqual(job.process.terminationStatus, 0, errors)
    XCTAssertTrue(errors.contains("restart 2 of 3"), errors)
    XCTAssertTrue(errors.contains("answer again (taken back); continuing on 3 host(s)"), errors)
    XCTAssertEqual(rankCounts(output), [3, 2, 3], output)
    try assertPlainBits(dir, steps: steps)
  }
}
