// The errors of the training layer (settings that cannot run, data that does not fit the model, a
// diverging loss, a run that failed part-way), each printed as one line, and the exit status
// each asks for.

import Foundation
import MixerCheckpoint
import MixerDistributed

/// An error of training, evaluation or prediction, printed as one line.
public struct TrainError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// An error that tells the process which exit status to end with, so that a supervisor
/// (`launch/resilient`, a batch script) can tell what a rerun of the same command would do.
public protocol ExitStatusError: Error {
  var exitStatus: Int32 { get }
}

/// The exit statuses of `mixer-dist train` besides 0, 64 (a usage error) and 75 (stopped on a
/// signal after saving: `Interruption.exitCode`).
public enum ExitStatus {
  /// a failure a rerun may get past (a lost rank, a killed process, an I/O error)
  public static let failure: Int32 = 1
  /// the data or the numbers stopped the run (an unreadable image, a non-finite loss): a rerun
  /// with the same settings meets the same error at the same step (sysexits' EX_DATAERR)
  public static let dataError: Int32 = 65
  /// the settings or the folders' state were refused before training (sysexits' EX_CONFIG): a
  /// rerun of the same command is refused again
  public static let refused: Int32 = 78
}

/// A command refused before it trained: a rerun of the same command is refused again.
public struct Refusal: ExitStatusError, CustomStringConvertible {
  public let underlying: Error
  public var exitStatus: Int32 { ExitStatus.refused }
  public var description: String { describeError(underlying) }

  /// `error` as a refusal, unless it is a failure of the communication (a peer lost during
  /// start-up), which a rerun may get past.
  public static func wrapping(_ error: Error) -> Error {
    if error is ExitStatusError || error is MPIError || error is CommunicatorError { return error }
    return Refusal(underlying: error)
  }
}

/// The loss was NaN or infinite at `step` (every rank sees it after the loss all-reduce, so all
/// stop at the same step, before its update).
public struct NonFiniteLossError: ExitStatusError, CustomStringConvertible {
  public let loss: Double
  public let step: Int
  public init(loss: Double, step: Int) {
    self.loss = loss
    self.step = step
  }
  public var exitStatus: Int32 { ExitStatus.dataError }
  public var description: String { "the loss is \(loss) at step \(step): lower --lr or check the data" }
}

/// The loader could not make the batch of `step` (an unreadable image, a bad record).
public struct DataFailure: ExitStatusError, CustomStringConvertible {
  public let underlying: Error
  public let step: Int
  public var exitStatus: Int32 { ExitStatus.dataError }
  public var description: String { "at step \(step): \(describeError(underlying))" }
}

/// Why a rank could not make its batch, as the step's scalar all-reduce carries it.
public enum BatchFailureKind: Int, Sendable {
  case none = 0
  /// the data itself (an unreadable image, a bad record): `DataFailure`
  case data = 1
  /// anything else (a failing disk or network)
  case other = 2
}

/// Another rank could not make its batch of `step` (it says why on its own line): every rank
/// stops before the step's update, so all save the last completed step together.
public struct PeerBatchFailure: ExitStatusError, CustomStringConvertible {
  public let rank: Int
  public let kind: BatchFailureKind
  public let step: Int
  public var exitStatus: Int32 { kind == .data ? ExitStatus.dataError : ExitStatus.failure }
  public var description: String { "rank \(rank) could not make its batch of step \(step) (its own line says why)" }
}

/// A run that failed after training part of its steps: the cause, and the checkpoint it leaves
/// (saved just now for the last completed step, or the newest earlier one), in one line that
/// says how to continue.
public struct RunFailure: ExitStatusError, CustomStringConvertible {
  /// the error that ended the run
  public let cause: Error
  /// the last step whose update was applied
  public let completedStep: Int
  /// the checkpoint saved after the error (nil: none could be, or none was needed)
  public let savedNow: URL?
  /// the newest checkpoint left otherwise
  public let newest: (step: Int, url: URL)?
  /// why the save after the error did not happen, when it was tried
  public let saveProblem: String?

  public var exitStatus: Int32 { (cause as? ExitStatusError)?.exitStatus ?? ExitStatus.failure }

  public var description: String {
    var text = describeError(cause)
    if let saveProblem { text += "; saving step \(completedStep) failed too (\(saveProblem))" }
    if let savedNow {
      return text + "; saved the last completed step \(completedStep) as \(savedNow.path); continue with --resume auto"
    }
    if let failedSave = cause as? CheckpointSaveError {  // it names the checkpoint it left
      return text + (failedSave.kept != nil
        ? "; continue from it with --resume auto" : "; --resume auto starts this run again from step 0")
    }
    if let newest {
      return text + "; the newest checkpoint is \(newest.url.path) (step \(newest.step)); continue from it with --resume auto"
    }
    return text + "; no checkpoint was saved; --resume auto starts this run again from step 0"
  }
}
