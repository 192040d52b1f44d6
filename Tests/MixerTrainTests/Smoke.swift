import XCTest
final class MixerTrainTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
