import XCTest
final class MixerKernelsTestsSmoke: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
