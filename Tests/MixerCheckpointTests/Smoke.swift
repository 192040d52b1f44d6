import XCTest
final class MixerCheckpointTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
