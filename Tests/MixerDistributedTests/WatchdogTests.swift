// Tests of the Watchdog in-process: it fires once for an operation that overruns, naming the
// operation, the step and the rank; it stays silent for operations that end in time; with a
// LocalGroup, only the ranks waiting for a stalled rank fire, and the default handler aborts
// the group.

import XCTest

@testable import MixerDistributed

/// Collects timeout messages from any thread.
private final class Messages {
  private let lock = NSLock()
  private var items: [String] = []
  func append(_ message: String) {
    lock.lock()
    items.append(message)
    lock.unlock()
  }
  var all: [String] {
    lock.lock()
    defer { lock.unlock() }
    return items
  }
}

final class WatchdogTests: XCTestCase {
  func testFiresOnceNamingOperationStepAndRank() {
    let messages = Messages()
    let watchdog = Watchdog(
      communicator: SingleProcessCommunicator(), timeout: 0.2, onTimeout: messages.append)
    defer { watchdog.stop() }
    watchdog.step = 12
    watchdog.watch("allreduce of bucket 3") { Thread.sleep(forTimeInterval: 0.7) }
    XCTAssertEqual(messages.all.count, 1)
    let message = messages.all.first ?? ""
    XCTAssertTrue(message.contains("'allreduce of bucket 3' at step 12"), message)
    XCTAssertTrue(message.contains("rank 0 is still waiting"), message)
  }

  func testSilentForOperationsThatEndInTime() {
    let messages = Messages()
    let watchdog = Watchdog(
      communicator: SingleProcessCommunicator(), timeout: 0.3, onTimeout: messages.append)
    defer { watchdog.stop() }
    for index in 0..<10_000 { watchdog.watch("op \(index)") {} }
    let token = watchdog.begin("explicit begin/end")
    Thread.sleep(forTimeInterval: 0.1)
    watchdog.end(token)
    Thread.sleep(forTimeInterval: 0.4)
    XCTAssertEqual(messages.all, [])
  }

  func testShortTimeoutFiresWhileLongOperationIsFine() {
    let messages = Messages()
    let watchdog = Watchdog(communicator: SingleProcessCommunicator(), timeout: 5, onTimeout: messages.append)
    defer { watchdog.stop() }
    let long = watchdog.begin("whole step")
    let short = watchdog.begin("barrier", timeout: 0.1)
    Thread.sleep(forTimeInterval: 0.5)
    watchdog.end(short)
    watchdog.end(long)
    XCTAssertEqual(messages.all.count, 1)
    XCTAssertTrue(messages.all.first?.contains("'barrier'") == true)
  }

  func testWaitingRanksFireForAStalledRank() throws {
    let messages = Messages()
    _ = try LocalGroup.run(size: 3) { communicator in
      let watchdog = Watchdog(communicator: communicator, timeout: 0.3, onTimeout: messages.append)
      defer { watchdog.stop() }
      watchdog.step = 7
      if communicator.rank == 2 { Thread.sleep(forTimeInterval: 1.0) }
      try watchdog.watch("barrier before the optimizer") { try communicator.barrier() }
    }
    let all = messages.all.sorted()
    XCTAssertEqual(all.count, 2, "\(all)")
    XCTAssertTrue(all.allSatisfy { $0.contains("'barrier before the optimizer' at step 7") }, "\(all)")
    XCTAssertTrue(all[0].contains("rank 0 is still waiting"))
    XCTAssertTrue(all[1].contains("rank 1 is still waiting"))
  }

  func testDefaultHandlerAbortsTheGroup() {
    let start = Date()
    XCTAssertThrowsError(
      try LocalGroup.run(size: 2) { communicator in
        let watchdog = Watchdog(communicator: communicator, timeout: 0.3)
        if communicator.rank == 1 { Thread.sleep(forTimeInterval: 1.0) }
        try watchdog.watch("all-reduce of bucket 1/4") { try communicator.barrier() }
        watchdog.stop()
      }
    ) { error in
      guard case CommunicatorError.aborted(let rank, let message, let code)? = error as? CommunicatorError
      else {
        return XCTFail("expected an abort, got \(error)")
      }
      XCTAssertEqual(rank, 0)
      XCTAssertEqual(code, 3)
      XCTAssertTrue(message.contains("'all-reduce of bucket 1/4'"), message)
    }
    XCTAssertLessThan(Date().timeIntervalSince(start), 5)
  }
}
