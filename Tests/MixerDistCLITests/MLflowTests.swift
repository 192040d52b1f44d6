// `train --mlflow URI` against a real MLflow tracking server (`mlflow server` on a loopback port,
// a SQLite store and an artifact folder in a temporary folder; launch/test installs mlflow from
// PyPI), read back through MLflow's own Python client: params, the metric history, tags, status
// and artifacts. A resumed run continues the same MLflow run. A server that stops answering
// mid-run gets every record once it answers again; one that never answers does not stop
// training. The server is stopped in a teardown block, also when a test fails.

import Foundation
import MixerTestSupport
import XCTest

/// One `mlflow server` for the length of a test.
final class MLflowServer {
  let process = Process()
  let port: Int
  /// the server's process group (it and its uvicorn and job-runner children)
  var group: pid_t { -process.processIdentifier }
  let folder: URL
  var uri: String { "http://127.0.0.1:\(port)" }

  init(_ test: XCTestCase) throws {
    try requirePython(["mlflow"])
    folder = try makeTemporaryDirectory(test)
    port = try MLflowServer.freePort()
    guard let mlflow = which("mlflow") else {
      throw MissingTestDependency("the mlflow command is not on the PATH (launch/test installs it: pip install mlflow)")
    }
    process.executableURL = URL(fileURLWithPath: mlflow)
    process.arguments = [
      "server", "--host", "127.0.0.1", "--port", "\(port)", "--workers", "1",
      "--backend-store-uri", "sqlite:///\(folder.path)/mlflow.db",
      "--artifacts-destination", folder.appendingPathComponent("artifacts").path,
    ]
    process.standardOutput = try FileHandle(forWritingTo: Self.file(folder, "server.out"))
    process.standardError = try FileHandle(forWritingTo: Self.file(folder, "server.err"))
    try process.run()
    // Foundation starts the server as the leader of its own process group
    let group = -process.processIdentifier
    XCTAssertEqual(getpgid(process.processIdentifier), process.processIdentifier)
    test.addTeardownBlock {
      // the whole group: the server's uvicorn and job-runner children too
      kill(group, SIGTERM)
      for _ in 0..<50 where kill(group, 0) == 0 { Thread.sleep(forTimeInterval: 0.1) }
      if kill(group, 0) == 0 { kill(group, SIGKILL) }
    }
    // ready when /health answers (bounded: 90 s, on a loaded 2-core machine it takes ~20 s)
    let deadline = Date().addingTimeInterval(90)
    while Date() < deadline {
      if !process.isRunning {
        throw MissingTestDependency("mlflow server exited: \((try? String(contentsOf: folder.appendingPathComponent("server.err"))) ?? "")")
      }
      let health = try runPython(["-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)", "\(uri)/health"])
      if health.status == 0 { return }
      Thread.sleep(forTimeInterval: 0.5)
    }
    throw ClusterError(message: "mlflow server on port \(port) did not answer /health within 90 s")
  }

  static func file(_ folder: URL, _ name: String) -> URL {
    let url = folder.appendingPathComponent(name)
    FileManager.default.createFile(atPath: url.path, contents: nil)
    return url
  }

  /// A loopback port nobody listens on (the kernel's choice for port 0).
  static func freePort() throws -> Int {
    let probe = try runPython(["-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
    guard let port = Int(probe.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      throw MissingTestDependency("no free port: \(probe.errors)")
    }
    return port
  }

  /// The runs of `experiment` as MLflow's Python client sees them: per run its id, status,
  /// params, tags, every metric's history (step, value) and the artifact names.
  func runs(experiment: String) throws -> [[String: Any]] {
    let script = """
      import json, sys
      from mlflow.tracking import MlflowClient
      client = MlflowClient(sys.argv[1])
      experiment = client.get_experiment_by_name(sys.argv[2])
      out = []
      for run in client.search_runs([experiment.experiment_id]):
          metrics = {key: [[m.step, m.value] for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))]
                     for key in run.data.metrics}
          out.append({"id": run.info.run_id, "status": run.info.status, "name": run.info.run_name,
                      "params": run.data.params, "tags": run.data.tags, "metrics": metrics,
                      "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id))})
      print(json.dumps(out))
      """
    let result = try runPython(["-c", script, uri, experiment])
    guard result.status == 0,
      let runs = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]]
    else { throw MissingTestDependency("the MLflow client failed: \(result.errors)") }
    return runs
  }
}

/// metrics.jsonl's train records: step → loss.
func trainLosses(_ run: URL) throws -> [Int: Double] {
  var losses: [Int: Double] = [:]
  for line in try String(contentsOf: run.appendingPathComponent("metrics.jsonl")).split(separator: "\n") {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      object["kind"] as? String == "train", let step = object["step"] as? Int, let loss = object["loss"] as? Double
    else { continue }
    losses[step] = loss
  }
  return losses
}

final class MLflowTests: XCTestCase {
  let model = ["train"] + tinyModelFlags + [
    "--train-examples", "128", "--val-examples", "32", "--batch", "16", "--threads", "1", "--log-every", "5",
    "--eval-every", "10",
  ]

  /// A 20-step run logs its settings, every metrics record, tags, artifacts and FINISHED; a resumed
  /// run (20 more steps) continues the same MLflow run.
  func testRunIsLoggedAndAResumedRunContinuesIt() throws {
    let server = try MLflowServer(self)
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("tracked")
    let args = model + ["--run-dir", run.path, "--mlflow", server.uri, "--mlflow-experiment", "mixer-test"]
    let first = try mixerDist(args + ["--steps", "20"], timeout: 180)
    XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
    XCTAssertTrue(first.stdout.contains("mlflow: tracking the run at \(server.uri), experiment 'mixer-test'"), first.stdout)
    XCTAssertFalse(first.stdout.contains("warning: MLflow"), first.stdout)
    var runs = try server.runs(experiment: "mixer-test")
    XCTAssertEqual(runs.count, 1)
    guard let logged = runs.first else { return }
    XCTAssertEqual(logged["status"] as? String, "FINISHED")
    XCTAssertEqual(logged["name"] as? String, "tracked")
    let params = logged["params"] as? [String: String] ?? [:]
    XCTAssertEqual(params["steps"], "20")
    XCTAssertEqual(params["batch"], "16")
    XCTAssertEqual(params["hidden"], "32")
    XCTAssertEqual(params["optimizer"], "adamw")
    XCTAssertEqual(params["run-dir"], run.path)
    let tags = logged["tags"] as? [String: String] ?? [:]
    XCTAssertEqual(tags["mixer.world_size"], "1")
    XCTAssertEqual(tags["mixer.hosts"], "\(ProcessInfo.processInfo.hostName) (1)")
    XCTAssertEqual(tags["mlflow.source.git.commit"]?.isEmpty, false, "\(tags)")
    XCTAssertEqual(tags["mixer.run_dir"], run.path)
    // every train record of metrics.jsonl, with its step and value (MLflow stores doubles)
    let metrics = logged["metrics"] as? [String: [[Double]]] ?? [:]
    let losses = try trainLosses(run)
    XCTAssertEqual(losses.keys.sorted(), [5, 10, 15, 20])
    XCTAssertEqual(metrics["loss"]?.map { Int($0[0]) }, [5, 10, 15, 20])
    for pair in metrics["loss"] ?? [] { XCTAssertEqual(pair[1], losses[Int(pair[0])]) }
    XCTAssertEqual(metrics["val_top1"]?.map { Int($0[0]) }, [10, 20])
    XCTAssertNotNil(metrics["lr"])
    XCTAssertEqual(logged["artifacts"] as? [String], ["config.json", "confusion.json", "metrics.jsonl"])
    let id = logged["id"] as? String ?? "?"
    XCTAssertTrue(first.stdout.contains("mlflow: run \(id) finished"), first.stdout)

    // resumed to 40 steps on 2 ranks: the same MLflow run, its history continued, every rank's host
    let second = try mpirunMixerDist(ranks: 2, args + ["--steps", "40", "--resume", "auto"], timeout: 180)
    XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
    XCTAssertTrue(second.stdout.contains("continuing run \(id)"), second.stdout)
    runs = try server.runs(experiment: "mixer-test")
    XCTAssertEqual(runs.count, 1, "a resumed run is the same MLflow run")
    let resumedTags = runs.first?["tags"] as? [String: String] ?? [:]
    XCTAssertEqual(resumedTags["mixer.world_size"], "2")
    XCTAssertEqual(resumedTags["mixer.hosts"], "\(ProcessInfo.processInfo.hostName) (2)")
    let resumed = runs.first?["metrics"] as? [String: [[Double]]] ?? [:]
    XCTAssertEqual(resumed["loss"]?.map { Int($0[0]) }, [5, 10, 15, 20, 25, 30, 35, 40])
    XCTAssertEqual(runs.first?["status"] as? String, "FINISHED")
  }

  /// The server stops answering mid-run (SIGSTOP: connections hang until the 10 s request
  /// timeout) and answers again once the log has said so: training went on, and every record
  /// reaches MLflow in the end. The tiny run is paced to 250 ms a step (the hidden straggler
  /// option, which changes no bit), so it outlasts the outage by the same margin on any host: the
  /// 92 steps after the stop take 23 s, against the 10 s timeout.
  func testRecordsWaitForAServerThatStopsAnsweringAndAreSentWhenItAnswers() throws {
    let server = try MLflowServer(self)
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("outage")
    let job = try LostNodeTests.Background(
      try mixerDistBinary(),
      ["train"] + tinyModelFlags + [
        "--train-examples", "128", "--val-examples", "32", "--batch", "16", "--threads", "1", "--steps", "100",
        "--log-every", "4", "--eval-every", "0", "--slow-rank", "0", "--slow-ms", "250", "--run-dir", run.path,
        "--mlflow", server.uri, "--mlflow-experiment", "outage",
      ],
      environment: [:], folder: dir)
    defer { _ = job.wait(seconds: 0) }
    // stopped once the run has logged step 8, continued once the run says it is not answering
    var deadline = Date().addingTimeInterval(120)
    while Date() < deadline && job.process.isRunning && (try? trainLosses(run)[8]) == nil {
      Thread.sleep(forTimeInterval: 0.05)
    }
    XCTAssertEqual(kill(server.group, SIGSTOP), 0)
    deadline = Date().addingTimeInterval(120)
    while Date() < deadline && !job.output.contains("training goes on") { Thread.sleep(forTimeInterval: 0.2) }
    XCTAssertEqual(kill(server.group, SIGCONT), 0)
    XCTAssertTrue(job.output.contains("training goes on"), job.output)
    XCTAssertTrue(job.wait(seconds: 180), "the run did not end: \(job.output)")
    XCTAssertEqual(job.process.terminationStatus, 0, job.errors)
    XCTAssertTrue(job.output.contains("answers again"), job.output)
    let runs = try server.runs(experiment: "outage")
    let metrics = runs.first?["metrics"] as? [String: [[Double]]] ?? [:]
    XCTAssertEqual(metrics["loss"]?.map { Int($0[0]) }, Array(stride(from: 4, through: 100, by: 4)), job.output)
    XCTAssertEqual(runs.first?["status"] as? String, "FINISHED")
  }

  /// A server that does not answer: training goes on and ends with status 0 and every record in
  /// metrics.jsonl; the log says once that MLflow is not answering, and at the end what was not sent.
  func testServerThatDoesNotAnswerDoesNotStopTraining() throws {
    let dir = try makeTemporaryDirectory(self)
    let run = dir.appendingPathComponent("run")
    let port = try MLflowServer.freePort()
    let result = try mixerDist(model + ["--steps", "20", "--run-dir", run.path, "--mlflow", "http://127.0.0.1:\(port)"], timeout: 120)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
    XCTAssertEqual(result.stdout.components(separatedBy: "training goes on").count, 2, "said once: \(result.stdout)")
    XCTAssertTrue(result.stdout.contains("warning: MLflow: http://127.0.0.1:\(port)"), result.stdout)
    XCTAssertTrue(result.stdout.contains("metric value(s) not logged"), result.stdout)
    XCTAssertEqual(try trainLosses(run).keys.sorted(), [5, 10, 15, 20])
    XCTAssertLessThan(result.seconds, 60, "the end waits a bounded time for the server")
  }

  /// A tracking URI that is not an http(s) server is a settings error, said before training.
  func testNotAnHTTPURIIsRefused() throws {
    let dir = try makeTemporaryDirectory(self)
    let result = try mixerDist(model + ["--steps", "2", "--run-dir", dir.path, "--mlflow", "file:./mlruns"])
    XCTAssertEqual(result.status, 78, result.stderr)
    XCTAssertTrue(result.stderr.contains("--mlflow file:./mlruns: not an http(s) tracking server URI"), result.stderr)
    XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
  }
}
