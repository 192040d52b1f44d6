import XCTest
final class MixerDataTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
