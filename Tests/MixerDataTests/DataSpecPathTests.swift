// `absoluteDataSpec`: a run records its data with absolute paths, keeping KIND:PATH as given.

import Foundation
import XCTest

@testable import MixerData

final class DataSpecPathTests: XCTestCase {
  func testPathsBecomeAbsoluteAndKindsStay() {
    let here = FileManager.default.currentDirectoryPath
    XCTAssertEqual(absoluteDataSpec("folder:digits"), "folder:\(here)/digits")
    XCTAssertEqual(absoluteDataSpec("FOLDER:./digits"), "FOLDER:\(here)/digits")
    XCTAssertEqual(absoluteDataSpec("digits"), "\(here)/digits")
    XCTAssertEqual(absoluteDataSpec("cifar10:/data/cifar"), "cifar10:/data/cifar")
    XCTAssertEqual(absoluteDataSpec("shapes"), "shapes")
    XCTAssertEqual(absoluteDataSpec("segshapes"), "segshapes")
    XCTAssertEqual(absoluteDataSpec("default"), "default")
    XCTAssertEqual(
      absoluteDataSpec("wds:shards/train-{000000..000009}.tar,/v/val-{000000..000001}.tar"),
      "wds:\(here)/shards/train-{000000..000009}.tar,/v/val-{000000..000001}.tar")
  }
}
