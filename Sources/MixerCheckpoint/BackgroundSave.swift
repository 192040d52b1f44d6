// Asynchronous checkpoints (`--save-mode async`, the default): at a step boundary every rank copies
// its part of the state (CheckpointSnapshot) and rank 0 prepares the `.partial` folder, as a
// synchronous save does; then a thread of each rank writes and hashes its files while training
// goes on, and rank 0's thread commits (manifest, rename, pruning) once every rank has written.
//
// The background threads make no MPI call: the ranks learn each other's progress at the step
// boundaries, from one small all-reduce per step while a save is pending (`poll`), in the training
// thread, so every rank sees the same states and decides the same thing at the same step:
//
//   rank state    writing → written → (rank 0) committing → committed      or  failed
//   all written           → rank 0's thread starts the commit
//   rank 0 committed      → every rank: the save is done (the checkpoint line is printed)
//   any failed            → every rank throws CheckpointSaveError (inBackground) at that step
//
// `finish` waits for the save at once (a second save, the end of the run, a signal's stop, the save
// after an error). The commit protocol is CheckpointStore's: a process killed meanwhile leaves a
// `.partial-*` folder, never a checkpoint that verifies; the previous one stays the newest.

import Foundation
import MixerTrace

/// One checkpoint being written in the background.
public final class BackgroundSave<Config: CheckpointConfig> {
  /// The step the checkpoint holds.
  public var step: Int { snapshot.step }
  /// What this rank wrote, for the next save to reuse its buffers once this one is done (and
  /// this object released: the buffers then have one owner and are overwritten in place).
  public var spareSnapshot: CheckpointSnapshot<Config> { snapshot }

  private enum State: Int {
    case writing = 1, written, committing, committed, failed
  }

  private let store: CheckpointStore<Config>
  private let snapshot: CheckpointSnapshot<Config>
  private let keep: Int
  private let protecting: Set<Int>
  private let condition = NSCondition()
  private var state = State.writing
  private var problem = ""

  /// Every rank, at the same step boundary: rank 0 prepares the folder (every rank learns its
  /// verdict and all throw together when it failed), then this rank's thread starts writing.
  /// `afterWrite` runs on that thread once its files are written (the tests' faults: a kill, or
  /// an error as from a disk that filled up).
  public init(
    store: CheckpointStore<Config>, snapshot: CheckpointSnapshot<Config>, keep: Int, protecting: Set<Int>,
    afterWrite: (() throws -> Void)? = nil
  ) throws {
    self.store = store
    self.snapshot = snapshot
    self.keep = keep
    self.protecting = protecting
    try Timeline.span("checkpoint prepare (step \(snapshot.step))", .checkpoint) { try store.begin(snapshot) }
    let thread = Thread { [self] in  // (self.snapshot: the closure holds no copy of its own)
      let written = Result {
        try Timeline.span("checkpoint write (step \(self.snapshot.step))", .checkpoint, thread: .checkpoint) {
          try store.write(self.snapshot)
        }
        try afterWrite?()
      }
      settle(written, next: .written)
    }
    thread.name = "mixer-dist checkpoint writer"
    thread.start()
  }

  /// Every rank, at each step boundary while the save is pending: one small all-reduce of every
  /// rank's state. Returns the committed folder once rank 0 committed it (on every rank at the
  /// same step), nil while it is pending; throws `CheckpointSaveError` on every rank when a rank's
  /// write or the commit failed.
  public func poll() throws -> URL? {
    let states = try exchange()
    if let failure = try failureIfAny(states) { throw failure }
    if states[0] == .committed { return store.folder(step: step) }
    if store.group.rank == 0, states.allSatisfy({ $0 == .written }) { startCommit() }
    return nil
  }

  /// Every rank: waits for this rank's write (and rank 0 for the commit, which it runs itself if
  /// it had not started) and returns the committed folder; throws as `poll`.
  public func finish() throws -> URL {
    waitWhile { $0 == .writing }
    let states = try exchange()
    if let failure = try failureIfAny(states) { throw failure }
    var verdict = ""
    if store.group.rank == 0 {
      if current == .written {
        settle(Result { try store.commitWritten(snapshot, keep: keep, protecting: protecting) }, next: .committed)
      }
      waitWhile { $0 == .committing }
      verdict = current == .committed ? "" : problem
    }
    verdict = try store.group.broadcast(verdict, root: 0)
    if !verdict.isEmpty { throw failure(verdict) }
    return store.folder(step: step)
  }

  // MARK: - The states

  private var current: State {
    condition.lock()
    defer { condition.unlock() }
    return state
  }

  private func settle(_ result: Result<Void, Error>, next: State) {
    condition.lock()
    switch result {
    case .success: state = next
    case .failure(let error): state = .failed; problem = describeError(error)
    }
    condition.broadcast()
    condition.unlock()
  }

  private func waitWhile(_ predicate: (State) -> Bool) {
    condition.lock()
    while predicate(state) { condition.wait() }
    condition.unlock()
  }

  /// Rank 0: the commit on a thread of its own.
  private func startCommit() {
    condition.lock()
    state = .committing
    condition.unlock()
    let thread = Thread { [self] in
      settle(
        Result {
          try Timeline.span("checkpoint commit (step \(step))", .checkpoint, thread: .checkpoint) {
            try store.commitWritten(snapshot, keep: keep, protecting: protecting)
          }
        }, next: .committed)
    }
    thread.name = "mixer-dist checkpoint commit"
    thread.start()
  }

  /// Every rank's state, from one all-reduce (each rank in its own slot).
  private func exchange() throws -> [State] {
    let group = store.group
    var slots = [Double](repeating: 0, count: group.size)
    slots[group.rank] = Double(current.rawValue)
    try group.allReduceSum(&slots)
    return slots.map { State(rawValue: Int($0)) ?? .failed }
  }

  /// The error every rank throws when some rank's state is failed (each rank first waits for its
  /// own thread, and rank 0 removes the `.partial` folder).
  private func failureIfAny(_ states: [State]) throws -> CheckpointSaveError? {
    guard let failed = states.firstIndex(of: .failed) else { return nil }
    waitWhile { $0 == .writing || $0 == .committing }
    if store.group.rank == 0 { try? FileManager.default.removeItem(at: store.partialFolder(step: step)) }
    if failed == store.group.rank || current == .failed { return failure(problem) }
    return failure(failed == 0 && states.dropFirst().allSatisfy { $0 == .written }
      ? "rank 0 could not commit it" : "rank \(failed) could not write its part")
  }

  private func failure(_ cause: String) -> CheckpointSaveError {
    var error = store.saveFailure(step: step, cause)
    error.inBackground = true
    return error
  }
}
