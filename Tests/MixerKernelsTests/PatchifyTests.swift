// patchifyForward against a naive reading of its header: token s = (gy, gx) row-major over the
// patch grid, patches `[S, B, P·P·3]` flattened (row in patch, column in patch, RGB), images
// `[B, H, W, 3]`. Exact: the kernel only moves values.

import MixerKernels
import MixerTestSupport
import XCTest

final class PatchifyTests: XCTestCase {
  func testIndexMappingOnNonSquareImages() {
    // (B, H, W, P) with H ≠ W, so swapping the grid axes would fail.
    for (batch, height, width, patch) in [(2, 8, 12, 4), (3, 6, 4, 2), (1, 3, 9, 3)] {
      // Every pixel value is its own flat index (exact in Float below 2^24).
      let images = (0..<(batch * height * width * 3)).map { Float($0) }
      let gridH = height / patch
      let gridW = width / patch
      let tokens = gridH * gridW
      let patchLength = patch * patch * 3
      var patches = [Float](repeating: .nan, count: tokens * batch * patchLength)
      patchifyForward(
        patches: &patches, images: images, batch: batch, height: height, width: width, patch: patch)

      var expected = [Double](repeating: .nan, count: patches.count)
      for s in 0..<tokens {
        let gy = s / gridW
        let gx = s % gridW
        for b in 0..<batch {
          for py in 0..<patch {
            for px in 0..<patch {
              for channel in 0..<3 {
                let y = gy * patch + py
                let x = gx * patch + px
                let source = ((b * height + y) * width + x) * 3 + channel
                let destination = (s * batch + b) * patchLength + (py * patch + px) * 3 + channel
                expected[destination] = Double(images[source])
              }
            }
          }
        }
      }
      assertClose(
        patches, expected, relative: 0, absolute: 0, "B \(batch) H \(height) W \(width) P \(patch)")
    }
  }
}
