// Training across several hosts: launch/local-cluster makes N network namespaces joined by a
// bridge (tbf-shaped links), and the same `launch/mpirun -n N --hostfile H -- train ...` line a
// user runs on a real cluster runs one rank per host, over TCP on those links. Checked: OpenMPI
// counts each namespace as its own node; the per-host link carries at least the ring all-reduce
// volume; 2 and 4 hosts give the 1-rank parameters; ZeRO-1 across hosts; a checkpoint of 4 hosts
// resumes on 2; eval across hosts equals 1 rank; `--exact` on 2 hosts x 2 ranks, and through an
// elastic shrink from 4 hosts to 3, gives the bytes of one plain process.
//
// Needs root (ip netns, veth, tc): skipped otherwise. Every cluster has a unique name and is
// removed by a teardown block, also when the test fails.

import Foundation
import MixerTestSupport
import XCTest

struct ClusterError: Error, CustomStringConvertible {
  var message: String
  var description: String { message }
}

/// One launch/local-cluster for the length of a test.
final class LocalCluster {
  let name: String
  let hosts: Int
  let hostfile: String
  static var script: String { packageRoot.appendingPathComponent("launch/local-cluster").path }

  /// Makes `hosts` hosts; `down` runs in a teardown block of `test` whatever the outcome.
  init(_ test: XCTestCase, hosts: Int, rate: String = "1gbit", slots: Int = 1) throws {
    guard getuid() == 0 else { throw XCTSkip("launch/local-cluster needs root") }
    guard which("mpirun") != nil else { throw XCTSkip("mpirun is not on the PATH") }
    let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    let name = "t" + String((0..<7).map { _ in letters.randomElement()! })
    self.name = name
    self.hosts = hosts
    test.addTeardownBlock {
      _ = try? run(LocalCluster.script, ["down", name], timeout: 60)
    }
    let up = try run(Self.script, ["up", "\(hosts)", "--name", name, "--rate", rate, "--slots", "\(slots)"], timeout: 60)
    // as root this must work (CI runs as root): a failure here fails the test, it does not skip
    guard up.status == 0, let path = up.stdout.split(separator: "\n").last.map(String.init) else {
      throw ClusterError(message: "launch/local-cluster up \(hosts) failed: \(up.stdout)\n\(up.stderr)")
    }
    hostfile = path
  }

  /// Bytes sent and received by each host on its link, host 1 first.
  func bytes() throws -> [(sent: Int, received: Int)] {
    let result = try run(Self.script, ["bytes", name], timeout: 30)
    return result.stdout.split(separator: "\n").map { line in
      let fields = line.split(separator: " ").compactMap { Int($0) }
      return (fields[1], fields[2])
    }
  }

  /// The PIDs of the processes still running in each host's namespace.
  func processes() -> [[Int32]] {
    (1...hosts).map { host in
      let result = try? run(which("ip") ?? "/usr/sbin/ip", ["netns", "pids", "mxc-\(name)-\(host)"], timeout: 30)
      return (result?.stdout ?? "").split(separator: "\n").compactMap { Int32($0) }
    }
  }

  /// Waits up to `seconds` for every host to have no process left; returns what is left.
  func waitUntilEmpty(seconds: Double = 10) -> [[Int32]] {
    let deadline = Date().addingTimeInterval(seconds)
    var left = processes()
    while left.contains(where: { !$0.isEmpty }) && Date() < deadline {
      Thread.sleep(forTimeInterval: 0.2)
      left = processes()
    }
    return left
  }

  /// Runs `launch/mpirun -n ranks --hostfile H -- arguments`.
  func mpirun(
    ranks: Int, _ arguments: [String], binary: String? = nil, environment: [String: String] = [:], timeout: Double = 180
  ) throws -> RunResult {
    try run(
      packageRoot.appendingPathComponent("launch/mpirun").path,
      ["-n", "\(ranks)", "--hostfile", hostfile, "--"] + arguments,
      environment: environment.merging(["MIXER_DIST_BIN": try binary ?? mixerDistBinary()]) { $1 }, timeout: timeout)
  }
}

func readFloats(_ url: URL) throws -> [Float] {
  let data = try Data(contentsOf: url)
  return data.withUnsafeBytes { raw in
    (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
  }
}

final class ClusterTests: XCTestCase {
  /// 16,298 float parameters: the gradient all-reduced every step.
  static let gradientBytes = 16_298 * 4

  /// Trains MPITrainTests' small run (20 steps, global batch 16) with `extra` arguments: on the
  /// cluster with `ranks` ranks, or as one plain process; returns the final parameters.
  func train(
    _ cluster: LocalCluster?, ranks: Int = 1, _ extra: [String] = [], run dir: URL? = nil,
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> [Float] {
    let dir = try dir ?? makeTemporaryDirectory(self)
    let arguments = MPITrainTests.smallArguments + extra + ["--run-dir", dir.path]
    let result = try cluster.map { try $0.mpirun(ranks: ranks, arguments) } ?? mixerDist(arguments)
    let label = "\(cluster == nil ? "plain" : "\(ranks) hosts") \(extra)"
    XCTAssertEqual(result.status, 0, "\(label): \(result.stdout)\n\(result.stderr)", file: file, line: line)
    XCTAssertFalse(result.timedOut, label, file: file, line: line)
    XCTAssertTrue(result.stdout.contains("\(ranks) rank(s)"), "\(label): \(result.stdout)", file: file, line: line)
    if cluster != nil {
      XCTAssertTrue(
        result.stderr.contains("\(ranks) rank(s) on \(cluster!.hosts) node(s), 1 per node"), "\(label): \(result.stderr)",
        file: file, line: line)
    }
    return try readFloats(dir.appendingPathComponent("final-parameters.f32"))
  }

  /// launch/mpirun adds a hostfile's `# launch/mpirun-options:` words to the mpirun line and takes
  /// its cores per node from `# launch/mpirun-cores-per-node:` (no cluster needed).
  func testWrapperTakesOptionsFromTheHostfile() throws {
    let hostfile = try makeTemporaryDirectory(self).appendingPathComponent("hosts")
    try """
      # launch/mpirun-options: --mca rtc ^hwloc --bind-to none
      # launch/mpirun-cores-per-node: 4
      # launch/mpirun-options: --mca btl tcp,self
      10.9.9.1 slots=1
      10.9.9.2 slots=1
      """.write(to: hostfile, atomically: true, encoding: .utf8)
    let result = try MixerDistCLITests.run(
      packageRoot.appendingPathComponent("launch/mpirun").path, ["--dry-run", "-n", "2", "--hostfile", hostfile.path, "--", "train"],
      environment: ["MIXER_DIST_BIN": try mixerDistBinary(), "MIXER_CORES_PER_NODE": ""], timeout: 30)
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stderr.contains("2 rank(s) on 2 node(s), 1 per node, 4 OpenBLAS thread(s) per rank"), result.stderr)
    XCTAssertTrue(result.stderr.contains("--mca rtc \\^hwloc --bind-to none --mca btl tcp\\,self "), result.stderr)
    XCTAssertEqual(result.stderr.components(separatedBy: "--bind-to").count, 2, "one --bind-to only: \(result.stderr)")
  }

  /// OpenMPI sees one node per namespace (its own hostname, local size 1) and the ranks run in
  /// their host's namespace, on its address.
  func testEveryHostIsItsOwnNode() throws {
    let cluster = try LocalCluster(self, hosts: 3)
    let result = try cluster.mpirun(
      ranks: 3,
      ["sh", "-c", "echo rank=$OMPI_COMM_WORLD_RANK host=$(hostname) local=$OMPI_COMM_WORLD_LOCAL_SIZE addr=$(ip -o -4 addr show eth0 | awk '{print $4}')"],
      binary: "/usr/bin/env", timeout: 60)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    let lines = Set(result.stdout.split(separator: "\n").map(String.init))
    let subnet = try String(contentsOfFile: cluster.hostfile, encoding: .utf8)
      .split(separator: "\n").first { !$0.hasPrefix("#") }!.split(separator: ".").prefix(3).joined(separator: ".")
    for rank in 0..<3 {
      XCTAssertTrue(
        lines.contains("rank=\(rank) host=\(cluster.name)-host\(rank + 1) local=1 addr=\(subnet).\(rank + 1)/24"),
        "rank \(rank): \(result.stdout)\n\(result.stderr)")
    }
    let left = cluster.waitUntilEmpty()
    XCTAssertTrue(left.allSatisfy(\.isEmpty), "processes left after the job: \(left)")
  }

  /// 1, 2 and 4 hosts (1 rank each): the same parameters; each host of the 4 sends at least the
  /// ring all-reduce's 2(N-1)/N × gradient bytes per step over its link.
  func testTwoAndFourHostsMatchOneRank() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let one = try train(nil)
    let two = try train(cluster, ranks: 2)
    let before = try cluster.bytes()
    let four = try train(cluster, ranks: 4)
    let after = try cluster.bytes()
    assertTensorsClose(one, two, layout: MPITrainTests.layout(), tolerance: 1e-5, skipping: MPITrainTests.isZeroGradientTensor, "AdamW 1 rank vs 2 hosts")
    assertTensorsClose(one, four, layout: MPITrainTests.layout(), tolerance: 1e-5, skipping: MPITrainTests.isZeroGradientTensor, "AdamW 1 rank vs 4 hosts")
    let steps = 20
    let ring = Double(2 * (4 - 1)) / 4 * Double(Self.gradientBytes) * Double(steps)
    for host in 0..<4 {
      let sent = Double(after[host].sent - before[host].sent)
      print("ClusterTests: host \(host + 1) sent \(Int(sent)) bytes in \(steps) steps (\(Int(sent) / steps) per step; ring all-reduce \(Int(ring) / steps))")
      XCTAssertGreaterThanOrEqual(sent, ring, "host \(host + 1) sent less than the ring all-reduce volume: not over its link?")
    }
    // SGD: scale-sensitive, every tensor compared
    let oneSGD = try train(nil, MPITrainTests.sgd)
    let fourSGD = try train(cluster, ranks: 4, MPITrainTests.sgd)
    assertTensorsClose(oneSGD, fourSGD, layout: MPITrainTests.layout(), tolerance: 1e-5, "SGD 1 rank vs 4 hosts")
  }

  /// 2 hosts of 2 slots, 4 ranks: shared memory inside a host, TCP between them; SGD as 1 rank.
  /// Then `down` leaves no namespace, link or state behind.
  func testTwoRanksPerHost() throws {
    let cluster = try LocalCluster(self, hosts: 2, rate: "none", slots: 2)
    let before = try cluster.bytes()
    let dir = try makeTemporaryDirectory(self)
    let result = try cluster.mpirun(ranks: 4, MPITrainTests.smallArguments + MPITrainTests.sgd + ["--run-dir", dir.path])
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    XCTAssertTrue(result.stderr.contains("4 rank(s) on 2 node(s), 2 per node"), result.stderr)
    let after = try cluster.bytes()
    XCTAssertGreaterThan(after[0].sent - before[0].sent, 20 * Self.gradientBytes / 2, "hosts must exchange gradients over the link")
    assertTensorsClose(
      try train(nil, MPITrainTests.sgd), try readFloats(dir.appendingPathComponent("final-parameters.f32")), layout: MPITrainTests.layout(), tolerance: 1e-5,
      "SGD 1 rank vs 2 hosts x 2 ranks")
    let down = try MixerDistCLITests.run(LocalCluster.script, ["down", cluster.name], timeout: 60)
    XCTAssertEqual(down.status, 0, down.stderr)
    let namespaces = try MixerDistCLITests.run(which("ip") ?? "/usr/sbin/ip", ["netns", "list"], timeout: 30).stdout
    XCTAssertFalse(namespaces.contains("mxc-\(cluster.name)-"), namespaces)
    let links = try MixerDistCLITests.run(which("ip") ?? "/usr/sbin/ip", ["-o", "link", "show"], timeout: 30).stdout
    XCTAssertFalse(links.contains("-\(cluster.name)"), links)
    XCTAssertFalse(FileManager.default.fileExists(atPath: URL(fileURLWithPath: cluster.hostfile).deletingLastPathComponent().path))
  }

  /// `--exact` on 2 hosts x 2 ranks (TCP between the hosts, shared memory within each): the
  /// final parameters are the bytes of one plain process (ExactMPITests' run).
  func testExactOnTwoHostsOfTwoRanksGivesOneProcessBits() throws {
    let cluster = try LocalCluster(self, hosts: 2, rate: "none", slots: 2)
    let plain = try makeTemporaryDirectory(self), spread = try makeTemporaryDirectory(self)
    let arguments = ExactMPITests.arguments + ["--threads", "1"]
    let one = try mixerDist(arguments + ["--run-dir", plain.path], timeout: 180)
    XCTAssertEqual(one.status, 0, one.stderr)
    let four = try cluster.mpirun(ranks: 4, arguments + ["--run-dir", spread.path])
    XCTAssertEqual(four.status, 0, four.stdout + four.stderr)
    XCTAssertTrue(four.stderr.contains("4 rank(s) on 2 node(s), 2 per node"), four.stderr)
    XCTAssertEqual(
      try Data(contentsOf: spread.appendingPathComponent("final-parameters.f32")),
      try Data(contentsOf: plain.appendingPathComponent("final-parameters.f32")),
      "--exact: 2 hosts x 2 ranks differ from one process")
  }

  func testZeroOneAcrossFourHosts() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let one = try train(nil)
    let sharded = try train(cluster, ranks: 4, ["--zero", "1"])
    assertTensorsClose(one, sharded, layout: MPITrainTests.layout(), tolerance: 1e-5, skipping: MPITrainTests.isZeroGradientTensor, "AdamW 1 rank vs 4 hosts --zero 1")
    let oneSGD = try train(nil, MPITrainTests.sgd)
    let shardedSGD = try train(cluster, ranks: 4, MPITrainTests.sgd + ["--zero", "1"])
    assertTensorsClose(oneSGD, shardedSGD, layout: MPITrainTests.layout(), tolerance: 1e-5, "SGD 1 rank vs 4 hosts --zero 1")
  }

  /// Saved by 4 hosts under ZeRO-1 at step 10, resumed on 2 hosts to step 20: the parameters of
  /// 20 steps on 1 rank.
  func testCheckpointOfFourHostsResumesOnTwo() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck").path
    let run = dir.appendingPathComponent("run")
    _ = try train(cluster, ranks: 4, ["--zero", "1", "--steps", "10", "--checkpoint-dir", ck], run: run)
    let inspect = try mixerDist(["inspect", ck])
    XCTAssertTrue(inspect.stdout.contains("saved by 4 rank(s), ZeRO stage 1"), inspect.stdout)
    let resumedDir = dir.appendingPathComponent("resumed")
    let result = try cluster.mpirun(
      ranks: 2, MPITrainTests.smallArguments + ["--checkpoint-dir", ck, "--resume", "auto", "--run-dir", resumedDir.path])
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    XCTAssertTrue(result.stdout.contains("(step 10, saved by 4 rank(s))"), result.stdout)
    let resumed = try readFloats(resumedDir.appendingPathComponent("final-parameters.f32"))
    assertTensorsClose(try train(nil), resumed, layout: MPITrainTests.layout(), tolerance: 1e-5, skipping: MPITrainTests.isZeroGradientTensor, "AdamW: 4 hosts to step 10, 2 hosts to 20, vs 1 rank")
  }

  /// `eval` over 3 hosts counts every validation image once and gives the 1-rank figures.
  func testEvalAcrossHostsEqualsOneRank() throws {
    let cluster = try LocalCluster(self, hosts: 3)
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    let trained = try trainTinyCheckpoint(run: dir, checkpoint: ck, steps: 8, validationExamples: 67)
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let alone = try mixerDist(["eval", ck.path, "--json", "--batch", "10"])
    XCTAssertEqual(alone.status, 0, alone.stderr)
    let spread = try cluster.mpirun(ranks: 3, ["eval", ck.path, "--json", "--batch", "10", "--threads", "1"])
    XCTAssertEqual(spread.status, 0, spread.stdout + spread.stderr)
    XCTAssertTrue(spread.stderr.contains("3 rank(s) on 3 node(s)"), spread.stderr)
    func parse(_ text: String) throws -> [String: Double] {
      guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else { return [:] }
      return (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]).compactMapValues { $0 as? Double }
    }
    let a = try parse(alone.stdout), b = try parse(spread.stdout)
    XCTAssertEqual(a["count"], 67)
    XCTAssertEqual(b["count"], 67, spread.stdout)
    XCTAssertEqual(a["top1"], b["top1"])
    XCTAssertEqual(a["top5"], b["top5"])
    // equal to fp32 rounding of the logits (OpenBLAS's bits depend on the batch rows and threads)
    XCTAssertEqual(a["loss"] ?? -1, b["loss"] ?? 1, accuracy: 1e-6 * (a["loss"] ?? 1))
  }
}

/// A lost node: every rank of one host SIGKILLed, or one host's link taken down for good. The job
/// ends within --timeout plus a minute (mpirun included) naming the rank and host, nothing is
/// left on the other hosts, launch/resilient restarts it, and `--elastic` carries on without the
/// host, exactly as a run resumed from the same checkpoint on the smaller world.
final class LostNodeTests: XCTestCase {
  /// A tiny model, log every step, one thread, `--resume auto` under a checkpoint folder.
  func arguments(_ dir: URL, steps: Int, batch: Int = 16, timeout: Int, run: String = "run", ck: String = "ck") -> [String] {
    ["train"] + tinyModelFlags + [
      "--train-examples", "512", "--val-examples", "32", "--batch", "\(batch)", "--threads", "1", "--log-every", "1",
      "--steps", "\(steps)", "--save-every", "10", "--timeout", "\(timeout)", "--resume", "auto",
      "--checkpoint-dir", dir.appendingPathComponent(ck).path, "--run-dir", dir.appendingPathComponent(run).path,
    ]
  }

  /// A command running in the background with its output in files.
  final class Background {
    let process = Process()
    let stdout: URL, stderr: URL
    let started = Date()
    init(_ executable: String, _ arguments: [String], environment: [String: String], folder: URL) throws {
      stdout = folder.appendingPathComponent("stdout-\(UUID().uuidString)")
      stderr = folder.appendingPathComponent("stderr-\(UUID().uuidString)")
      _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
      _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
      process.executableURL = URL(fileURLWithPath: executable)
      process.arguments = arguments
      process.environment = childEnvironment(environment)
      process.standardOutput = try FileHandle(forWritingTo: stdout)
      process.standardError = try FileHandle(forWritingTo: stderr)
      try process.run()
    }
    var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }
    /// Waits up to `seconds` for the end; kills it after that. True when it ended by itself.
    func wait(seconds: Double) -> Bool {
      let deadline = Date().addingTimeInterval(seconds)
      while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
      guard process.isRunning else { return true }
      process.terminate()
      Thread.sleep(forTimeInterval: 2)
      if process.isRunning { kill(process.processIdentifier, SIGKILL) }
      process.waitUntilExit()
      return false
    }
  }

  /// Waits (at most `seconds`) until the run folder's metrics reach `step`; false if they never do.
  func waitForStep(_ step: Int, run: URL, while job: Background, seconds: Double = 120) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline && job.process.isRunning {
      if let text = try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8),
        text.contains("\"step\":\(step),")
      {
        return true
      }
      Thread.sleep(forTimeInterval: 0.05)
    }
    return false
  }

  var resilient: String { packageRoot.appendingPathComponent("launch/resilient").path }
  var wrapper: String { packageRoot.appendingPathComponent("launch/mpirun").path }

  /// (a) Every rank of host 3 SIGKILLed mid-run: mpirun ends the job in seconds naming rank 2 on
  /// host 3, no process is left on any host, and launch/resilient's restart on the same 4 hosts
  /// ends bit-identical to an uninterrupted run.
  func testKilledHostRanksEndTheJobAndResilientRestarts() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let dir = try makeTemporaryDirectory(self)
    let binary = try mixerDistBinary()
    let reference = try cluster.mpirun(ranks: 4, arguments(dir, steps: 60, timeout: 30, run: "straight", ck: "straight-ck"))
    XCTAssertEqual(reference.status, 0, reference.stderr)

    let job = try Background(
      resilient, ["--max-restarts", "1", "--", wrapper, "-n", "4", "--hostfile", cluster.hostfile, "--"] + arguments(dir, steps: 60, timeout: 30),
      environment: ["MIXER_DIST_BIN": binary], folder: dir)
    XCTAssertTrue(waitForStep(25, run: dir.appendingPathComponent("run"), while: job), "never reached step 25: \(job.errors)")
    let kill = try MixerDistCLITests.run(LocalCluster.script, ["kill", cluster.name, "3"], timeout: 30)
    XCTAssertTrue(kill.stderr.contains("SIGKILLed 1 process(es)"), kill.stderr)
    let killed = Date()
    // the failure: the restart line appears within --timeout + 60 s
    var detected: Double?
    while detected == nil && Date().timeIntervalSince(killed) < 90 && job.process.isRunning {
      if job.errors.contains("restart 1 of 1") { detected = Date().timeIntervalSince(killed) }
      Thread.sleep(forTimeInterval: 0.05)
    }
    XCTAssertTrue(job.wait(seconds: 120), "the restarted job did not end: \(job.errors)")
    let errors = job.errors
    print("LostNodeTests: ranks of host 3 killed: job ended after \(detected.map { String(format: "%.1f", $0) } ?? "?") s, restart finished after \(String(format: "%.1f", Date().timeIntervalSince(killed))) s")
    XCTAssertLessThan(detected ?? 999, 30 + 60, errors)
    XCTAssertTrue(errors.contains("process rank 2") && errors.contains(".3 exited on signal 9"), errors)
    XCTAssertEqual(job.process.terminationStatus, 0, errors)
    XCTAssertTrue(job.output.contains("resumed from"), job.output)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("straight/final-parameters.f32")),
      "killed and restarted on the same 4 hosts: bit-identical to the uninterrupted run")
    let left = cluster.waitUntilEmpty()
    XCTAssertTrue(left.allSatisfy(\.isEmpty), "processes left: \(left)")
  }

  /// (b) Host 3's link down for good, --timeout 30: the job ends within --timeout + 60 s, mpirun
  /// included, naming host 3 (mpirun's keepalive on its daemons, or the watchdog and
  /// launch/mpirun's supervision), and nothing is left running on hosts 1, 2 and 4.
  func testLostLinkEndsTheJobInBoundedTime() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let dir = try makeTemporaryDirectory(self)
    let job = try Background(
      wrapper, ["-n", "4", "--hostfile", cluster.hostfile, "--"] + arguments(dir, steps: 100_000, timeout: 30),
      environment: ["MIXER_DIST_BIN": try mixerDistBinary()], folder: dir)
    XCTAssertTrue(waitForStep(20, run: dir.appendingPathComponent("run"), while: job), "never reached step 20: \(job.errors)")
    let down = try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "3", "down"], timeout: 30)
    XCTAssertEqual(down.status, 0, down.stderr)
    let cut = Date()
    let ended = job.wait(seconds: 30 + 60)
    let seconds = Date().timeIntervalSince(cut)
    let errors = job.errors
    print("LostNodeTests: link of host 3 down: job ended after \(String(format: "%.1f", seconds)) s (--timeout 30)")
    XCTAssertTrue(ended, "still running \(seconds) s after the link went down: \(errors)")
    XCTAssertNotEqual(job.process.terminationStatus, 0)
    let address = try String(contentsOfFile: cluster.hostfile, encoding: .utf8).split(separator: "\n")
      .filter { !$0.hasPrefix("#") }[2].split(separator: " ")[0]
    XCTAssertTrue(
      errors.contains("lost the daemon of host(s) \(address)") || errors.contains("not reporting: 2 (host \(address))"),
      errors)
    let left = cluster.waitUntilEmpty(seconds: 10)
    for host in [0, 1, 3] {
      XCTAssertEqual(left[host], [], "host \(host + 1) still runs processes: \(left)")
    }
  }

  /// A host that does not answer is found before mpirun starts (mpirun would wait for its daemon
  /// for good): launch/mpirun exits with 69 in seconds, naming it.
  func testUnreachableHostIsRefusedBeforeStarting() throws {
    let cluster = try LocalCluster(self, hosts: 3)
    XCTAssertEqual(try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "2", "down"], timeout: 30).status, 0)
    let result = try cluster.mpirun(ranks: 3, ["train", "--steps", "2", "--threads", "1", "--run-dir", try makeTemporaryDirectory(self).path], timeout: 60)
    XCTAssertEqual(result.status, 69, result.stderr)
    XCTAssertLessThan(result.seconds, 15)
    let address = try String(contentsOfFile: cluster.hostfile, encoding: .utf8).split(separator: "\n")
      .filter { !$0.hasPrefix("#") }[1].split(separator: " ")[0]
    XCTAssertTrue(result.stderr.contains("host(s) not answering (TCP port 22 within 3 s): \(address); not starting"), result.stderr)
  }

  /// A host lost after launch/mpirun's probe, before its daemon reported back (MIXER_PROBE=0
  /// stands for the race): mpirun would wait for that daemon for good, before any rank runs, so
  /// no watchdog can end it. launch/mpirun ends it after MIXER_STARTUP_TIMEOUT, in one line.
  func testHostLostBeforeItsDaemonStartsEndsTheLaunch() throws {
    let cluster = try LocalCluster(self, hosts: 2)
    XCTAssertEqual(try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "2", "down"], timeout: 30).status, 0)
    let result = try cluster.mpirun(
      ranks: 2, ["train", "--steps", "2", "--threads", "1", "--run-dir", try makeTemporaryDirectory(self).path],
      environment: ["MIXER_PROBE": "0", "MIXER_STARTUP_TIMEOUT": "10"], timeout: 90)
    XCTAssertNotEqual(result.status, 0, result.stderr)
    XCTAssertLessThan(result.seconds, 40, result.stderr)
    XCTAssertTrue(result.stderr.contains("no rank started within 10 s (MIXER_STARTUP_TIMEOUT)"), result.stderr)
  }

  /// A warning on stderr (`mixer-dist: rank 0: warning: ...`: here, a corrupt newest checkpoint
  /// skipped on resume) is not an abort: launch/mpirun's supervision leaves the job running (it
  /// used to end mpirun MIXER_ABORT_GRACE seconds after any `mixer-dist: rank R:` line), and its
  /// start-up line is not shown.
  func testWarningsDoNotEndTheJob() throws {
    let cluster = try LocalCluster(self, hosts: 2)
    let dir = try makeTemporaryDirectory(self)
    let ck = dir.appendingPathComponent("ck")
    func train(steps: Int) throws -> RunResult {
      try cluster.mpirun(
        ranks: 2, ["train"] + tinyModelFlags + [
          "--steps", "\(steps)", "--batch", "8", "--threads", "1", "--eval-every", "0", "--save-every", "5",
          "--checkpoint-dir", ck.path, "--resume", "auto", "--run-dir", dir.appendingPathComponent("run").path,
        ],
        environment: ["MIXER_ABORT_GRACE": "1"], timeout: 120)
    }
    let first = try train(steps: 10)
    XCTAssertEqual(first.status, 0, first.stderr)
    let params = ck.appendingPathComponent("step-00000010/params.safetensors")
    var bytes = try Data(contentsOf: params)
    bytes[bytes.count / 2] ^= 0xFF
    try bytes.write(to: params)
    let resumed = try train(steps: 150)
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stderr.contains("mixer-dist: rank 0: warning: mixer-dist: skipping checkpoint step-00000010"), resumed.stderr)
    XCTAssertTrue(resumed.stdout.contains("resumed from"), resumed.stdout)
    XCTAssertFalse(resumed.stderr.contains("after the job aborted"), resumed.stderr)
    XCTAssertFalse(resumed.stderr.contains("mixer-dist: launch:"), resumed.stderr)
  }

  /// `launch/resilient --elastic`: host 3's link goes down for good at step 25; the job ends
  /// (watchdog 8 s + supervision 8 s), host 3 does not come back within 5 s, the job resumes on
  /// hosts 1, 2 and 4 from the newest checkpoint and finishes, bit-identical to a 3-rank run
  /// resumed from that same checkpoint (global batch 24 on 4 ranks, then on 3).
  func testElasticContinuesOnTheHostsLeft() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let dir = try makeTemporaryDirectory(self)
    let binary = try mixerDistBinary()
    let job = try Background(
      resilient,
      ["--elastic", "--elastic-wait", "5", "--max-restarts", "2", "--", wrapper, "-n", "4", "--hostfile", cluster.hostfile, "--"]
        + arguments(dir, steps: 80, batch: 24, timeout: 8),
      environment: ["MIXER_DIST_BIN": binary, "MIXER_ABORT_GRACE": "8"], folder: dir)
    XCTAssertTrue(waitForStep(25, run: dir.appendingPathComponent("run"), while: job), "never reached step 25: \(job.errors)")
    XCTAssertEqual(try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "3", "down"], timeout: 30).status, 0)
    let cut = Date()
    XCTAssertTrue(job.wait(seconds: 150), "the elastic job did not end: \(job.errors)")
    print("LostNodeTests: elastic: link of host 3 down, finished on 3 hosts after \(String(format: "%.1f", Date().timeIntervalSince(cut))) s")
    let errors = job.errors, output = job.output
    XCTAssertEqual(job.process.terminationStatus, 0, errors)
    XCTAssertTrue(errors.contains("did not come back within 5 s; continuing on 3 host(s)"), errors)
    XCTAssertTrue(errors.contains("3 rank(s) on 3 node(s)"), errors)
    // the checkpoint the continuation resumed from
    guard let line = output.split(separator: "\n").last(where: { $0.contains("resumed from") }),
      let range = line.range(of: #"step-[0-9]+"#, options: .regularExpression)
    else { return XCTFail("no resume in: \(output)") }
    let checkpoint = String(line[range])
    XCTAssertTrue(line.contains("saved by 4 rank(s)"), String(line))
    // the reference: 3 ranks (hosts 1-3 once host 3 is back) resumed from a copy of it
    XCTAssertEqual(try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "3", "up"], timeout: 30).status, 0)
    let copy = dir.appendingPathComponent("ref-ck")
    try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: dir.appendingPathComponent("ck").appendingPathComponent(checkpoint), to: copy.appendingPathComponent(checkpoint))
    let reference = try cluster.mpirun(ranks: 3, arguments(dir, steps: 80, batch: 24, timeout: 8, run: "ref", ck: "ref-ck"))
    XCTAssertEqual(reference.status, 0, reference.stderr)
    XCTAssertTrue(reference.stdout.contains("resumed from \(copy.path)/\(checkpoint)"), reference.stdout)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("ref/final-parameters.f32")),
      "the elastic continuation differs from a 3-rank run resumed from \(checkpoint)")
  }

  /// `--exact` through an elastic shrink: host 3's link goes down for good at step 25, the job
  /// goes on with 3 hosts from its newest checkpoint, and its final parameters are the bytes of
  /// one plain process that trained the same 80 steps without a fault (global batch 24 in
  /// micro-batches of 2 on 4 ranks, then on 3).
  func testExactElasticShrinkEndsWithTheUninterruptedBits() throws {
    let cluster = try LocalCluster(self, hosts: 4)
    let dir = try makeTemporaryDirectory(self)
    let binary = try mixerDistBinary()
    let exact = ["--exact", "--micro-batch", "2"]
    let job = try Background(
      resilient,
      ["--elastic", "--elastic-wait", "5", "--max-restarts", "2", "--", wrapper, "-n", "4", "--hostfile", cluster.hostfile, "--"]
        + arguments(dir, steps: 80, batch: 24, timeout: 8) + exact,
      environment: ["MIXER_DIST_BIN": binary, "MIXER_ABORT_GRACE": "8"], folder: dir)
    XCTAssertTrue(waitForStep(25, run: dir.appendingPathComponent("run"), while: job), "never reached step 25: \(job.errors)")
    XCTAssertEqual(try MixerDistCLITests.run(LocalCluster.script, ["link", cluster.name, "3", "down"], timeout: 30).status, 0)
    XCTAssertTrue(job.wait(seconds: 150), "the elastic job did not end: \(job.errors)")
    XCTAssertEqual(job.process.terminationStatus, 0, job.errors)
    XCTAssertTrue(job.errors.contains("continuing on 3 host(s)"), job.errors)
    XCTAssertTrue(job.output.contains("resumed from"), job.output)
    let plain = try mixerDist(arguments(dir, steps: 80, batch: 24, timeout: 8, run: "plain", ck: "plain-ck") + exact, timeout: 180)
    XCTAssertEqual(plain.status, 0, plain.stderr)
    XCTAssertEqual(
      try Data(contentsOf: dir.appendingPathComponent("run/final-parameters.f32")),
      try Data(contentsOf: dir.appendingPathComponent("plain/final-parameters.f32")),
      "--exact: the run that shrank from 4 hosts to 3 differs from the uninterrupted one")
  }
}
