// The start-up of every subcommand that runs matrix products, before MPI or anything else starts:
// the OpenBLAS kernel the CPU calls for, then the sgemm self-test (the policy: `BLASCore`), and
// the instruction set of our own elementwise kernels: the best build that passes its self-check,
// or MIXER_ISA's (`KernelISA`).
//
// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so a better kernel needs a new process
// image: this process sets the variable and `execv`s itself with the same arguments. The pid stays
// the same, and MPI_Init has not run yet, so under mpirun (verified with OpenMPI 4.1 and 2 ranks)
// and under srun each rank simply loads OpenBLAS again before it joins the job.

import Foundation
import MixerKernels

enum BLASStartup {
  /// How a subcommand shows the kernel: in its own start-up line (train, bench), or through a
  /// note on stderr when mixer-dist replaced OpenBLAS's pick (the others, whose stdout may be
  /// JSON). The note is written once the command has succeeded (`writePendingNotes`), so that a
  /// command that fails says so in one line, as every error does.
  enum Report { case ownStartUpLine, note }

  /// The notes of a `.note` command, waiting for it to succeed.
  nonisolated(unsafe) static var pendingNotes: [String] = []

  /// Writes the waiting notes to stderr (runReportingErrors calls it after a command succeeded).
  static func writePendingNotes() {
    for note in pendingNotes { FileHandle.standardError.write(Data("mixer-dist: \(note)\n".utf8)) }
    pendingNotes = []
  }

  /// The subcommands that run products; the rest (describe, inspect, import, shard, report,
  /// --help, --version) start without the check.
  static let commands: [String: Report] = [
    "train": .ownStartUpLine, "bench": .ownStartUpLine, "eval": .note, "predict": .note,
    "quantize": .note, "study": .note, "verify-reference": .note, "export": .note,
  ]

  /// Only the tests set this: the kernel name the check sees instead of OpenBLAS's own pick, so
  /// that a weak pick can be staged on any machine without touching OPENBLAS_CORETYPE.
  static let testCoreVariable = "MIXER_DIST_TEST_OPENBLAS_CORE"

  /// Only the tests set this: the /proc/cpuinfo flags (space-separated) the kernel check sees
  /// instead of the CPU's, so that a CPU without AVX-512 can be staged on any machine.
  static let testCPUFlagsVariable = "MIXER_DIST_TEST_CPU_FLAGS"

  /// Only the tests set this: an instruction set whose build the self-check sees one bit off (in
  /// its layernorm forward), so that a wrong build can be staged on any machine.
  static let testBrokenISAVariable = "MIXER_DIST_TEST_BROKEN_ISA"

  /// Chooses the kernel (re-executing this process if it has to) and runs the self-test; a
  /// wrong product ends the process with a one-line error. `arguments` exclude the program name.
  static func prepare(arguments: [String]) {
    guard let command = arguments.first, let report = commands[command] else { return }
    let environment = ProcessInfo.processInfo.environment
    if environment[BLASCore.replacedVariable] != nil { restoreCommandName() }
    do throws(KernelISAError) {
      let requested = try environment[KernelISA.variable].flatMap { $0.isEmpty ? nil : $0 }
        .map { name throws(KernelISAError) in try KernelISA.level(named: name) }
      let broken = environment[testBrokenISAVariable].flatMap { name in KernelISA.allCases.first { $0.description == name } }
      let (level, note) = try KernelISA.choose(requested: requested) { $0.selfCheck(corrupt: $0 == broken ? 3 : 0) }
      KernelISA.active = level
      KernelISA.choiceNote = note
    } catch {
      FileHandle.standardError.write(Data("mixer-dist: error: \(error)\n".utf8))
      exit(1)
    }
    let seen = environment[testCoreVariable].flatMap { $0.isEmpty ? nil : $0 } ?? BLAS.coreName
    let cpu = environment[testCPUFlagsVariable].map {
      CPUFeatures(flags: Set($0.split(separator: " ").map(String.init)), vendor: CPUFeatures.current.vendor)
    } ?? .current
    let choice = BLASCore.choice(cpu: cpu, openBLASCore: seen, userCoreType: environment[BLASCore.coreTypeVariable])
    if case .replace(let target) = choice {
      reexecute(core: target, replacing: seen)  // returns only if execv failed
    }
    if let missing = BLASCore.missingInstructions(core: seen, cpu: cpu) {
      let user = environment[BLASCore.coreTypeVariable].flatMap { $0.isEmpty ? nil : $0 }
      let source = user.map { " (\(BLASCore.coreTypeVariable)=\($0))" } ?? ""
      let fix = user != nil ? "unset \(BLASCore.coreTypeVariable) or set it to a core this CPU runs" : "set \(BLASCore.coreTypeVariable) to a core this CPU runs"
      let runnable = BLASCore.target(for: cpu).map { " (\($0))" } ?? " (Prescott)"
      FileHandle.standardError.write(Data(
        "mixer-dist: error: OpenBLAS core \(seen)\(source) needs \(missing), which this CPU does not have (it has \(cpu.bestISA)): its first product would stop on an illegal instruction; \(fix)\(runnable)\n".utf8))
      exit(1)
    }
    if report == .note, isFirstRank(environment), environment[BLASCore.replacedVariable] != nil {
      pendingNotes.append("OpenBLAS core \(BLAS.coreSummary)")
    }
    if report == .note, isFirstRank(environment), KernelISA.choiceNote != nil {
      pendingNotes.append("kernels \(KernelISA.summary)")
    }
    if let failure = BLASSelfTest.run() {
      FileHandle.standardError.write(Data(
        "mixer-dist: error: OpenBLAS core \(BLAS.coreName) computes wrong products (\(failure)); set \(BLASCore.coreTypeVariable) to another core or use another OpenBLAS build\n".utf8))
      exit(1)
    }
  }

  /// Starts this program again with OPENBLAS_CORETYPE=`core`.
  private static func reexecute(core: String, replacing seen: String) {
    setenv(BLASCore.coreTypeVariable, core, 1)
    setenv(BLASCore.replacedVariable, seen, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    let reason = String(cString: strerror(errno))
    unsetenv(BLASCore.coreTypeVariable)
    unsetenv(BLASCore.replacedVariable)
    FileHandle.standardError.write(Data(
      "mixer-dist: could not restart with \(BLASCore.coreTypeVariable)=\(core) (\(reason)); running on OpenBLAS's \(seen)\n".utf8))
  }

  /// After the re-exec through /proc/self/exe the kernel names the process (and the threads
  /// OpenBLAS started at load) `exe`, which `ps`, `pgrep mixer-dist`, `killall` and launch/chaos
  /// would no longer find: each thread gets the program's name back (`/proc/self/task/N/comm`).
  private static func restoreCommandName() {
    let name = String(URL(fileURLWithPath: CommandLine.arguments[0]).lastPathComponent.utf8.prefix(15)) ?? "mixer-dist"
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    for task in tasks {
      let path = "/proc/self/task/\(task)/comm"
      guard (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .newlines) == "exe" else { continue }
      try? name.write(toFile: path, atomically: false, encoding: .utf8)
    }
  }

  /// Rank 0 of an mpirun or srun job, or a process outside one.
  private static func isFirstRank(_ environment: [String: String]) -> Bool {
    let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"].lazy
      .compactMap { environment[$0] }.first
    return rank.map { $0 == "0" } ?? true
  }
}
