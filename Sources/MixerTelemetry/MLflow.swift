// MLflow tracking over the tracking server's REST API (`/api/2.0/mlflow/...`), from rank 0: the
// settings as params, every metrics record as metrics with their step, tags, the run's status, and
// small run files as artifacts where the server proxies them (`mlflow-artifacts:`).
//
// Training never waits for the server and never stops because of it. Records go into a queue
// that a background thread sends in `runs/log-batch` requests (at most 1,000 metrics and 100
// params or tags each, MLflow's limits). When the server does not answer, the thread keeps the
// queue (at most `maximumPending` metrics; older ones are dropped beyond that and counted),
// retries with a growing pause (1 s to 30 s), and the log says so once; `finish` waits a bounded
// time for the queue to drain and says what could not be sent.
//
// HTTP goes through Foundation's URLSession (libcurl on Linux).

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where and as what a run is tracked.
public struct MLflowSettings {
  /// the tracking server, `http://host:port` (a path prefix is kept)
  public var uri: URL
  public var experiment: String
  public var runName: String
  /// continue this MLflow run (a resumed training run) instead of creating one
  public var runID: String?
  public var params: [(String, String)]
  public var tags: [(String, String)]

  public init(
    uri: URL, experiment: String, runName: String, runID: String? = nil, params: [(String, String)] = [],
    tags: [(String, String)] = []
  ) {
    self.uri = uri
    self.experiment = experiment
    self.runName = runName
    self.runID = runID
    self.params = params
    self.tags = tags
  }

  /// `text` as a tracking URI: http(s) only (MLflow's `file:` and `databricks` stores need its
  /// Python client).
  public static func trackingURI(_ text: String) throws -> URL {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
      url.host != nil
    else {
      throw TelemetryError("--mlflow \(text): not an http(s) tracking server URI (e.g. http://127.0.0.1:5000)")
    }
    return url
  }
}

/// How a tracked run ended (MLflow's RunStatus).
public enum MLflowRunStatus: String {
  case finished = "FINISHED", failed = "FAILED", killed = "KILLED"
}

/// An MLflow tracking server that does not answer, or refuses a request.
public struct MLflowError: Error, CustomStringConvertible {
  public let description: String
  /// the server refused the request itself (HTTP 4xx but 408/429): sending it again cannot help
  public let refused: Bool
  init(_ description: String, refused: Bool = false) {
    self.description = description
    self.refused = refused
  }
}

/// A key MLflow accepts: letters, digits, `_ - . / space`; anything else becomes `_` (class names
/// from folder names may hold other characters). At most 250 characters.
func mlflowKey(_ key: String) -> String {
  let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ ")
  return String(String(key.map { allowed.contains($0) ? $0 : "_" }).prefix(250))
}

/// A URLSession answer, written by its completion handler before the semaphore it waits on.
private final class AnswerBox: @unchecked Sendable {
  var answer: (Data?, URLResponse?, Error?) = (nil, nil, nil)
}

/// The REST calls, synchronous (each bounded by `timeout` seconds).
struct MLflowClient {
  let base: URL
  let timeout: Double
  let session: URLSession
  /// `Authorization` header from MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME/PASSWORD
  let authorization: String?

  init(base: URL, timeout: Double, environment: [String: String] = ProcessInfo.processInfo.environment) {
    self.base = base
    self.timeout = timeout
    let configuration = URLSessionConfiguration.ephemeral
    configuration.timeoutIntervalForRequest = timeout
    configuration.timeoutIntervalForResource = timeout
    session = URLSession(configuration: configuration)
    if let token = environment["MLFLOW_TRACKING_TOKEN"], !token.isEmpty {
      authorization = "Bearer \(token)"
    } else if let user = environment["MLFLOW_TRACKING_USERNAME"], let password = environment["MLFLOW_TRACKING_PASSWORD"] {
      authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    } else {
      authorization = nil
    }
  }

  /// Sends one request; returns the status code and the decoded JSON object of the answer.
  func call(_ method: String, _ path: String, query: [URLQueryItem] = [], json: Any? = nil, body: Data? = nil)
    throws -> (Int, [String: Any])
  {
    var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
    if !query.isEmpty { components.queryItems = query }
    var request = URLRequest(url: components.url!, timeoutInterval: timeout)
    request.httpMethod = method
    if let authorization { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
    if let json {
      request.httpBody = try JSONSerialization.data(withJSONObject: json)
      request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    } else if let body {
      request.httpBody = body
      request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
    }
    let done = DispatchSemaphore(value: 0)
    let box = AnswerBox()
    session.dataTask(with: request) { data, response, error in
      box.answer = (data, response, error)
      done.signal()
    }.resume()
    if done.wait(timeout: .now() + timeout + 5) == .timedOut {
      throw MLflowError("\(base.absoluteString): no answer within \(Int(timeout)) s")
    }
    let answer = box.answer
    if let error = answer.2 {
      throw MLflowError("\(base.absoluteString): \(error.localizedDescription)")
    }
    let status = (answer.1 as? HTTPURLResponse)?.statusCode ?? 0
    let object = answer.0.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any] ?? [:]
    return (status, object)
  }

  /// `call`, failing on anything but 200 with the server's own message.
  func ok(_ method: String, _ path: String, query: [URLQueryItem] = [], json: Any? = nil, body: Data? = nil)
    throws -> [String: Any]
  {
    let (status, object) = try call(method, path, query: query, json: json, body: body)
    guard status == 200 else {
      let message = object["message"] as? String ?? "HTTP status \(status)"
      throw MLflowError("\(path): \(message)", refused: (400..<500).contains(status) && status != 408 && status != 429)
    }
    return object
  }

  /// The id of experiment `name`, created when it does not exist.
  func experimentID(_ name: String) throws -> String {
    let (status, found) = try call(
      "GET", "api/2.0/mlflow/experiments/get-by-name", query: [URLQueryItem(name: "experiment_name", value: name)])
    if status == 200, let experiment = found["experiment"] as? [String: Any], let id = experiment["experiment_id"] as? String {
      return id
    }
    let created = try ok("POST", "api/2.0/mlflow/experiments/create", json: ["name": name])
    guard let id = created["experiment_id"] as? String else { throw MLflowError("experiments/create: no experiment_id") }
    return id
  }

  /// A new run: (run id, artifact URI).
  func createRun(experiment: String, name: String, tags: [(String, String)]) throws -> (String, String?) {
    let object = try ok("POST", "api/2.0/mlflow/runs/create", json: [
      "experiment_id": experiment, "run_name": name, "start_time": Self.milliseconds(),
      "tags": tags.map { ["key": mlflowKey($0.0), "value": $0.1] },
    ])
    guard let info = (object["run"] as? [String: Any])?["info"] as? [String: Any], let id = info["run_id"] as? String else {
      throw MLflowError("runs/create: no run_id in the answer")
    }
    return (id, info["artifact_uri"] as? String)
  }

  /// An existing run's artifact URI and params (to continue it), or nil when the server does not know it.
  func existingRun(_ id: String) throws -> (artifactURI: String?, params: [String: String])? {
    let (status, object) = try call("GET", "api/2.0/mlflow/runs/get", query: [URLQueryItem(name: "run_id", value: id)])
    guard status == 200, let run = object["run"] as? [String: Any], let info = run["info"] as? [String: Any] else { return nil }
    var params: [String: String] = [:]
    for param in (run["data"] as? [String: Any])?["params"] as? [[String: Any]] ?? [] {
      if let key = param["key"] as? String, let value = param["value"] as? String { params[key] = value }
    }
    return (info["artifact_uri"] as? String, params)
  }

  static func milliseconds() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

/// Tracks one training run in MLflow (rank 0 only); all public methods are called from the
/// training thread and return at once, except `finish`.
public final class MLflowTracker {
  struct Metric {
    var key: String
    var value: Double
    var step: Int
    var timestamp: Int64
  }

  public let settings: MLflowSettings
  /// metrics kept while the server does not answer; the oldest are dropped beyond this
  public let maximumPending: Int
  let client: MLflowClient
  let condition = NSCondition()
  // guarded by `condition`
  var metrics: [Metric] = []
  var params: [(String, String)]
  var tags: [(String, String)] = []
  var artifacts: [(String, URL)] = []
  var status: MLflowRunStatus?
  var finishing = false
  var stopped = false
  var warnings: [String] = []
  var dropped = 0
  var failing: String?
  // the run, once created (worker thread only until `finish` returns)
  var runID: String?
  var artifactURI: String?
  var worker: Thread?
  /// called on the sender thread with the run's id once the server has created (or continued) it
  let onRunCreated: (String) -> Void

  /// Starts the background sender; the run is created (or continued) on its first pass.
  public init(
    _ settings: MLflowSettings, maximumPending: Int = 100_000, requestTimeout: Double = 10,
    onRunCreated: @escaping (String) -> Void = { _ in }
  ) {
    self.settings = settings
    self.maximumPending = maximumPending
    self.onRunCreated = onRunCreated
    client = MLflowClient(base: settings.uri, timeout: requestTimeout)
    params = settings.params
    let thread = Thread { [weak self] in self?.send() }
    thread.name = "mlflow"
    worker = thread
    thread.start()
  }

  /// The MLflow run id, once the server has given one (nil before, or while it does not answer).
  public var currentRunID: String? {
    condition.lock()
    defer { condition.unlock() }
    return runID
  }

  /// Queues every finite value of a metrics record, with its step.
  public func log(_ record: MetricRecord) {
    let now = MLflowClient.milliseconds()
    condition.lock()
    for (key, value) in record.values where value.isFinite {
      metrics.append(Metric(key: mlflowKey(key), value: value, step: record.step, timestamp: now))
    }
    if metrics.count > maximumPending {
      dropped += metrics.count - maximumPending
      metrics.removeFirst(metrics.count - maximumPending)
    }
    condition.signal()
    condition.unlock()
  }

  /// Uploads `file` as artifact `name` when the server proxies artifacts (else it is named in a tag).
  public func artifact(_ name: String, file: URL) {
    condition.lock()
    artifacts.append((name, file))
    condition.signal()
    condition.unlock()
  }

  /// Warnings about the server since the last call (printed by the training thread).
  public func takeWarnings() -> [String] {
    condition.lock()
    defer { condition.unlock() }
    let taken = warnings
    warnings = []
    return taken
  }

  /// Sets the run's status and waits at most `seconds` for everything queued to be sent; returns
  /// lines to print (what could not be sent, when the server did not answer).
  public func finish(_ status: MLflowRunStatus, seconds: Double = 15) -> [String] {
    condition.lock()
    self.status = status
    finishing = true
    condition.broadcast()
    let deadline = Date().addingTimeInterval(seconds)
    while !stopped && condition.wait(until: deadline) {}
    var lines = warnings
    warnings = []
    if !stopped {
      lines.append(
        "warning: MLflow: \(settings.uri.absoluteString) did not take the run's last records within \(Int(seconds)) s: "
          + "\(metrics.count) metric value(s) not logged\(failing.map { " (\($0))" } ?? ""); metrics.jsonl has them all")
      stopped = true
    }
    if dropped > 0 {
      lines.append("warning: MLflow: \(dropped) metric value(s) were dropped while the server did not answer")
    }
    condition.broadcast()
    condition.unlock()
    return lines
  }

  // MARK: the background sender

  /// The worker: creates the run, then sends what is queued until `finish`.
  func send() {
    var pause = 1.0
    while true {
      condition.lock()
      while !finishing && !stopped && runID != nil && metrics.isEmpty && params.isEmpty && tags.isEmpty {
        condition.wait()
      }
      let final = finishing
      condition.unlock()
      var batch: (metrics: Int, params: Int, tags: Int) = (0, 0, 0)
      do {
        let id = try ensureRun()
        condition.lock()
        if stopped { condition.unlock(); return }
        let batchMetrics = Array(metrics.prefix(1000))
        let batchParams = Array(params.prefix(100))
        let batchTags = Array(tags.prefix(100))
        batch = (batchMetrics.count, batchParams.count, batchTags.count)
        condition.unlock()
        if batch != (0, 0, 0) {
          _ = try client.ok("POST", "api/2.0/mlflow/runs/log-batch", json: [
            "run_id": id,
            "metrics": batchMetrics.map { ["key": $0.key, "value": $0.value, "step": $0.step, "timestamp": $0.timestamp] },
            "params": batchParams.map { ["key": mlflowKey($0.0), "value": String($0.1.prefix(6000))] },
            "tags": batchTags.map { ["key": mlflowKey($0.0), "value": String($0.1.prefix(5000))] },
          ])
        }
        condition.lock()
        removeSent(batch)
        if failing != nil {
          warnings.append("MLflow: \(settings.uri.absoluteString) answers again; the queued records were sent")
          failing = nil
        }
        let drained = metrics.isEmpty && params.isEmpty && tags.isEmpty
        let uploads = drained && final ? artifacts : []
        if drained && final { artifacts = [] }
        let status = self.status
        condition.unlock()
        pause = 1
        guard drained && final else { continue }
        for (name, file) in uploads { upload(name, file: file, run: id) }
        if let status {
          _ = try client.ok("POST", "api/2.0/mlflow/runs/update", json: [
            "run_id": id, "status": status.rawValue, "end_time": MLflowClient.milliseconds(),
          ])
        }
        end()
        return
      } catch let error as MLflowError where error.refused {
        condition.lock()
        if runID == nil || batch == (0, 0, 0) {
          // the run itself is refused (its creation, a permission, the status): tracking ends
          warnings.append("warning: MLflow: \(error); tracking of this run ends")
          condition.unlock()
          end()
          return
        }
        // records refused, not lost in transit: dropped, so that the rest goes through
        warnings.append(
          "warning: MLflow: \(error); \(batch.metrics) metric value(s), \(batch.params) param(s) and \(batch.tags) tag(s) not logged")
        removeSent(batch)
        condition.unlock()
      } catch {
        condition.lock()
        if failing == nil {
          warnings.append(
            "warning: MLflow: \(error); training goes on, metrics are kept (at most \(maximumPending)) and sent when it answers")
        }
        failing = "\(error)"
        // (a `finish` during the pause retries at once)
        let deadline = Date().addingTimeInterval(pause)
        while !stopped && (final || !finishing) && condition.wait(until: deadline) {}
        if stopped { condition.unlock(); return }
        condition.unlock()
        pause = min(pause * 2, 30)
      }
    }
  }

  /// Removes the first records, sent or refused (under `condition`; `log` only appends, and
  /// drops from the front only beyond `maximumPending`, counted in `dropped`).
  func removeSent(_ batch: (metrics: Int, params: Int, tags: Int)) {
    metrics.removeFirst(min(batch.metrics, metrics.count))
    params.removeFirst(min(batch.params, params.count))
    tags.removeFirst(min(batch.tags, tags.count))
  }

  /// The sender is done: `finish` returns.
  func end() {
    condition.lock()
    stopped = true
    condition.broadcast()
    condition.unlock()
  }

  /// The run's id: created on the first call (or the settings' run continued when the server knows it).
  func ensureRun() throws -> String {
    if let runID { return runID }
    var created: (String, String?)?
    if let id = settings.runID, let known = try client.existingRun(id) {
      _ = try client.ok("POST", "api/2.0/mlflow/runs/update", json: ["run_id": id, "status": "RUNNING"])
      created = (id, known.artifactURI)
      // params cannot change in MLflow: the ones logged stay; a setting the resumed run changed
      // (--steps, say) is logged as the tag `mixer.resumed.KEY`; tags are set again (the world
      // size and hosts of this segment)
      condition.lock()
      let changed = params.filter { key, value in known.params[mlflowKey(key)].map { $0 != value } ?? false }
      params.removeAll { key, _ in known.params[mlflowKey(key)] != nil }
      tags += settings.tags + changed.map { ("mixer.resumed.\($0.0)", $0.1) }
      condition.unlock()
    }
    if created == nil {
      let experiment = try client.experimentID(settings.experiment)
      created = try client.createRun(
        experiment: experiment, name: settings.runName,
        tags: [("mlflow.runName", settings.runName)] + settings.tags)
    }
    condition.lock()
    (runID, artifactURI) = created!
    condition.unlock()
    onRunCreated(created!.0)
    return created!.0
  }

  /// PUT to the server's artifact proxy (`mlflow-artifacts:/PATH` → `/api/2.0/mlflow-artifacts/artifacts/PATH/NAME`);
  /// other artifact stores (S3, a path on the server) are not reachable from here: the file's
  /// path becomes a tag instead.
  func upload(_ name: String, file: URL, run: String) {
    guard let data = try? Data(contentsOf: file) else { return }
    let prefix = "mlflow-artifacts:"
    guard let uri = artifactURI, uri.hasPrefix(prefix) else {
      _ = try? client.ok("POST", "api/2.0/mlflow/runs/log-batch", json: [
        "run_id": run, "tags": [["key": mlflowKey("mixer.file.\(name)"), "value": file.path]],
      ])
      return
    }
    let path = uri.dropFirst(prefix.count).drop { $0 == "/" }
    do {
      _ = try client.ok("PUT", "api/2.0/mlflow-artifacts/artifacts/\(path)/\(name)", body: data)
    } catch {
      condition.lock()
      warnings.append("warning: MLflow: artifact \(name) not uploaded: \(error)")
      condition.unlock()
    }
  }
}
