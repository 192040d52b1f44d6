// Watchdog: one thread that ends the job when a named operation (a collective, a gradient bucket,
// a whole step) runs longer than its timeout, so a hung or dead rank never leaves the others
// waiting forever. The operation is named in the abort message with the step and this rank: the
// ranks that abort are the ones still waiting; a rank that never reached the operation is the
// one stalled or dead.
//
// Cost per watched operation: one lock and one dictionary insert/remove; the thread is woken
// only when a new deadline is earlier than the one it sleeps towards. No thread per operation.

import Foundation

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// Aborts the job when a watched operation exceeds its timeout.
public final class Watchdog {
  /// Receives the message of an expired operation. The default aborts the job through the
  /// communicator; tests inject a handler that records the message.
  public typealias TimeoutHandler = (String) -> Void

  /// A watched operation in progress, returned by `begin` and passed to `end`.
  public struct Token: Hashable, Sendable {
    fileprivate let id: Int
  }

  /// Default timeout in seconds for operations that do not give their own.
  public let timeout: Double
  private let monitor: WatchdogMonitor

  /// A watchdog for `communicator`'s rank. With no `onTimeout`, an expired operation calls
  /// `communicator.abort(message:code:)` with code 3.
  public init(communicator: Communicator, timeout: Double, onTimeout: TimeoutHandler? = nil) {
    precondition(timeout > 0, "Watchdog timeout must be positive")
    self.timeout = timeout
    let handler = onTimeout ?? { [communicator] message in communicator.abort(message: message, code: 3) }
    monitor = WatchdogMonitor(rank: communicator.rank, handler: handler)
    let thread = Thread { [monitor] in monitor.loop() }
    thread.name = "mixer-dist watchdog"
    thread.stackSize = 1 << 20
    thread.start()
  }

  deinit { monitor.stop() }

  /// The training step named in messages (none until set); the training loop sets it each step.
  public var step: Int? {
    get { monitor.currentStep() }
    set { monitor.setStep(newValue) }
  }

  /// Starts watching `operation`, which must end within `timeout` (default: `self.timeout`).
  public func begin(_ operation: String, timeout: Double? = nil) -> Token {
    Token(id: monitor.begin(operation, seconds: timeout ?? self.timeout))
  }

  /// Stops watching the operation of `token`.
  public func end(_ token: Token) {
    monitor.end(token.id)
  }

  /// Runs `body` watched as `operation`.
  public func watch<T>(_ operation: String, timeout: Double? = nil, _ body: () throws -> T) rethrows -> T {
    let token = begin(operation, timeout: timeout)
    defer { end(token) }
    return try body()
  }

  /// Stops the thread; operations are no longer watched.
  public func stop() { monitor.stop() }
}

/// The state shared by a Watchdog and its thread (separate so the thread does not keep the
/// Watchdog alive).
private final class WatchdogMonitor {
  private struct Entry {
    var operation: String
    var step: Int?
    var started: Double
    var deadline: Double
  }

  private let rank: Int
  private let handler: Watchdog.TimeoutHandler
  private let condition = NSCondition()
  private var entries: [Int: Entry] = [:]
  private var nextID = 0
  private var step: Int?
  private var wakeAt = Double.infinity
  private var stopped = false

  init(rank: Int, handler: @escaping Watchdog.TimeoutHandler) {
    self.rank = rank
    self.handler = handler
  }

  func currentStep() -> Int? {
    condition.lock()
    defer { condition.unlock() }
    return step
  }

  func setStep(_ value: Int?) {
    condition.lock()
    step = value
    condition.unlock()
  }

  func begin(_ operation: String, seconds: Double) -> Int {
    let now = monotonicSeconds()
    condition.lock()
    defer { condition.unlock() }
    nextID += 1
    let entry = Entry(operation: operation, step: step, started: now, deadline: now + seconds)
    entries[nextID] = entry
    if entry.deadline < wakeAt { condition.signal() }
    return nextID
  }

  func end(_ id: Int) {
    condition.lock()
    entries[id] = nil
    condition.unlock()
  }

  func stop() {
    condition.lock()
    stopped = true
    condition.signal()
    condition.unlock()
  }

  func loop() {
    condition.lock()
    while !stopped {
      let now = monotonicSeconds()
      if let (id, entry) = entries.filter({ $0.value.deadline <= now }).min(by: { $0.key < $1.key }) {
        entries[id] = nil  // Fire once per operation.
        condition.unlock()
        let waited = String(format: "%.1f", now - entry.started)
        let step = entry.step.map { " at step \($0)" } ?? ""
        handler(
          "watchdog: '\(entry.operation)'\(step) has not completed after \(waited) s; "
            + "rank \(rank) is still waiting in it (a rank that never reached it is stalled or dead)")
        condition.lock()
        continue
      }
      wakeAt = entries.values.map(\.deadline).min() ?? .infinity
      if wakeAt.isFinite {
        _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, wakeAt - now) + 0.001))
      } else {
        condition.wait()
      }
      wakeAt = .infinity
    }
    condition.unlock()
  }
}
