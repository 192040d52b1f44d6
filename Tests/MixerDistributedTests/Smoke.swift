import XCTest
final class MixerDistributedTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
