// `--help` is a contract: every subcommand is listed, and train documents its main flags.

import XCTest

final class HelpTests: XCTestCase {
  func testRootHelpListsEverySubcommand() throws {
    let result = try mixerDist(["--help"])
    XCTAssertEqual(result.status, 0)
    for name in ["train", "bench", "describe", "verify-reference", "inspect", "eval", "predict", "report", "import", "export"] {
      XCTAssertTrue(result.stdout.contains("  \(name) "), "\(name) missing from:\n\(result.stdout)")
    }
  }

  func testTrainHelpDocumentsTheMainFlags() throws {
    let result = try mixerDist(["train", "--help"])
    XCTAssertEqual(result.status, 0)
    for flag in ["--preset", "--config", "--data", "--steps", "--batch", "--accum", "--lr", "--zero", "--checkpoint-dir",
                 "--resume", "--init-from", "--randaugment", "--mixup", "--timeout", "--log-level", "--print-config",
                 "--loss", "--head-bias-init", "--optimizer", "--lr-end", "--warmup-from-zero", "--weight-decay"] {
      XCTAssertTrue(result.stdout.contains(flag), "\(flag) missing from train --help")
    }
    XCTAssertFalse(result.stdout.contains("--kill-in-save-at-step"), "test-only flags stay hidden")
    // the recipe's choices are named where the flags are
    for text in ["softmax", "sigmoid", "adamw", "big_vision"] {
      XCTAssertTrue(result.stdout.contains(text), "'\(text)' missing from train --help")
    }
  }
}
