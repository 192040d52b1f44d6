import XCTest
final class MixerModelTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
