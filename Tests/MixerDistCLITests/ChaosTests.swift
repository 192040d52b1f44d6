// The short chaos soak (issue 27): launch/chaos runs a 4-host `--exact` job under
// `launch/resilient --elastic --grow-every-minutes 0.2` for about 3 minutes while at least 6 faults
// drawn from a fixed seed hit it (seed 38 draws a host lost for good (4 -> 3), a host dropped that
// comes back and is grown back onto (3 -> 2 -> 3), a corrupted newest checkpoint, two SIGUSR1
// stops and a full checkpoint disk, then more of these until the time is up), and checks that its
// final parameters are the bytes of a fault-free single-process run and that the returned host was
// taken back. The soak removes its cluster (with its hosts' OpenMPI session folders) and its
// checkpoint tmpfs itself, also on failure; the test checks none is left.

import Foundation
import MixerTestSupport
import XCTest

final class ChaosTests: XCTestCase {
  func testShortSoakEndsWithTheFaultFreeBits() throws {
    guard getuid() == 0 else { throw XCTSkip("launch/local-cluster needs root") }
    let dir = try makeTemporaryDirectory(self)
    // the soak cleans up itself, also on SIGTERM; after a SIGKILL, its `cleanup` file says what is left
    addTeardownBlock {
      let cleanup = (try? String(contentsOf: dir.appendingPathComponent("soak/cleanup"), encoding: .utf8)) ?? ""
      for line in cleanup.split(separator: "\n") {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard words.count == 2 else { continue }
        if words[0] == "cluster" {
          _ = try? MixerDistCLITests.run(LocalCluster.script, ["down", words[1]], timeout: 60)
        } else if words[0] == "mount", ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").contains(" \(words[1]) ") {
          _ = try? MixerDistCLITests.run("/bin/umount", [words[1]], timeout: 30)
        }
      }
    }
    let result = try MixerDistCLITests.run(
      packageRoot.appendingPathComponent("launch/chaos").path,
      ["--minutes", "2.5", "--seed", "38", "--faults", "6", "--kinds", "kill9,usr1,link-lost,corrupt,host-return,disk-full",
       "--dir", dir.appendingPathComponent("soak").path],
      environment: ["MIXER_DIST_BIN": try mixerDistBinary()], timeout: 900)
    print(result.stdout)
    XCTAssertEqual(result.status, 0, result.stdout + result.stderr.suffix(3000))
    XCTAssertTrue(
      result.stdout.contains("final parameters against the fault-free 1-process run: identical; "
        + "recoveries beyond --timeout + 60 s: 0; hangs: 0; returned hosts not taken back: 0"), result.stdout)
    let faults = result.stdout.split(separator: "\n").filter {
      String($0).range(of: #"^ *[0-9]+\.[0-9]  "#, options: .regularExpression) != nil
    }
    XCTAssertGreaterThanOrEqual(faults.count, 6, result.stdout)
    for kind in ["link-lost", "host-return", "corrupt", "usr1", "disk-full"] {
      XCTAssertTrue(faults.contains { $0.contains("  \(kind)  ") }, "no \(kind) fault: \(result.stdout)")
    }
    // the returned host was grown back onto (a time, not "never"), and a full disk refused saves
    XCTAssertTrue(
      faults.contains { $0.contains("  host-return  ") && $0.range(of: #"[0-9]+\.[0-9]$"#, options: .regularExpression) != nil },
      result.stdout)
    XCTAssertTrue(
      faults.contains { $0.contains("  disk-full  ") && $0.range(of: #", [1-9][0-9]* save\(s\) refused"#, options: .regularExpression) != nil },
      result.stdout)
    let clusters = try MixerDistCLITests.run(packageRoot.appendingPathComponent("launch/local-cluster").path, ["list"], timeout: 30)
    XCTAssertFalse(clusters.stdout.contains("ch"), "a soak cluster is left: \(clusters.stdout)")
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    XCTAssertFalse(mounts.contains(dir.path), "the soak's checkpoint tmpfs is left mounted: \(mounts)")
    // the SIGKILLed ranks' OpenMPI session folders (ompi.NAME-hostI.UID) went with the cluster
    let cleanup = try String(contentsOf: dir.appendingPathComponent("soak/cleanup"), encoding: .utf8)
    let name = try XCTUnwrap(
      cleanup.split(separator: "\n").first { $0.hasPrefix("cluster ") }?.dropFirst("cluster ".count), cleanup)
    let temporary = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
    let sessions = try FileManager.default.contentsOfDirectory(atPath: temporary).filter { $0.hasPrefix("ompi.\(name)-host") }
    XCTAssertEqual(sessions, [], "the soak's hosts left OpenMPI session folders in \(temporary)")
  }
}
