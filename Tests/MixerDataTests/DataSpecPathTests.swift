// `DataSpec.absolute`: a run records its data with absolute paths, keeping KIND:PATH as given.

import Foundation
import XCTest

@testable import MixerData

final class DataSpecPathTests: XCTestCase {
  func testPathsBecomeAbsoluteAndKindsStay() {
    let here = FileManager.default.currentDirectoryPath
    XCTAssertEqual(DataSpec("folder:digits").absolute.text, "folder:\(here)/digits")
    XCTAssertEqual(DataSpec("FOLDER:./digits").absolute.text, "FOLDER:\(here)/digits")
    XCTAssertEqual(DataSpec("digits").absolute.text, "\(here)/digits")
    XCTAssertEqual(DataSpec("cifar10:/data/cifar").absolute.text, "cifar10:/data/cifar")
    XCTAssertEqual(DataSpec("shapes").absolute.text, "shapes")
    XCTAssertEqual(DataSpec("segshapes").absolute.text, "segshapes")
    XCTAssertEqual(DataSpec("default").absolute.text, "default")
    XCTAssertEqual(
      DataSpec("wds:shards/train-{000000..000009}.tar,/v/val-{000000..000001}.tar").absolute.text,
      "wds:\(here)/shards/train-{000000..000009}.tar,/v/val-{000000..000001}.tar")
  }
}
