// Ctrl-C, SIGTERM and SIGUSR1 (Slurm's warning before a time limit or preemption, asked for with
// `--signal=B:USR1@...`): the first one asks the job to finish its current step, save a
// checkpoint and exit with `Interruption.exitCode`, which `launch/resilient` reads as "resume
// me"; a second Ctrl-C ends the process at once. Ranks agree on the step to stop after through
// the step's own scalar all-reduce, so whichever rank got the signal, every rank stops together.

import Foundation

/// Signal-driven stop requests of this process.
public enum Interruption {
  /// The exit status of a job that stopped on a signal after saving: "resume me".
  public static let exitCode: Int32 = 75
  /// The signal received first (0: none yet). Written by the signal handler only.
  nonisolated(unsafe) static let received: UnsafeMutablePointer<Int32> = {
    let p = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    p.initialize(to: 0)
    return p
  }()

  /// True once SIGINT, SIGTERM or SIGUSR1 arrived.
  public static var requested: Bool { received.pointee != 0 }
  /// The name of the signal that arrived ("SIGTERM"), if any.
  public static var signalName: String? {
    switch received.pointee {
    case SIGINT: return "SIGINT"
    case SIGTERM: return "SIGTERM"
    case SIGUSR1: return "SIGUSR1"
    case 0: return nil
    default: return "signal \(received.pointee)"
    }
  }

  /// Installs the handlers (idempotent).
  public static func install() {
    _ = received
    for sig in [SIGINT, SIGTERM, SIGUSR1] {
      signal(sig) { number in
        if Interruption.received.pointee != 0 && number == SIGINT { _exit(130) }  // a second Ctrl-C
        if Interruption.received.pointee == 0 { Interruption.received.pointee = number }
      }
    }
  }

  /// Gives the three signals their default action back (a stopped job that has saved: mpirun's
  /// clean-up SIGTERM must end it at once, not be taken for another stop request).
  public static func uninstall() {
    for sig in [SIGINT, SIGTERM, SIGUSR1] { signal(sig, SIG_DFL) }
  }

  /// Forgets a received signal (tests run several trainers in one process).
  static func reset() { received.pointee = 0 }

  /// Sends `signal` to this process (tests).
  static func raise(_ number: Int32) { Foundation.raise(number) }
}

/// A run that stopped on a signal after saving its checkpoint.
public struct InterruptedRun: Error, CustomStringConvertible {
  public let signal: String
  public let step: Int
  public let checkpoint: String
  public var description: String {
    "\(signal): stopped after step \(step), checkpoint \(checkpoint); continue with --resume auto (exit status \(Interruption.exitCode))"
  }
}
