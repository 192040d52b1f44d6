// InteropTests.swift: files written here are read by NumPy and the safetensors Python package,
// and files they write are read here, with bit-exact values. Fails when python3 cannot import
// numpy and safetensors (launch/test installs them).

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerCheckpoint

/// Loads what Swift wrote with NumPy and safetensors, re-saves it (npz deflated, safetensors with
/// more dtypes) and reports metadata and dtypes as JSON.
private let pythonRoundTrip = """
  import sys, json, numpy as np
  from safetensors import safe_open
  from safetensors.numpy import load_file, save_file
  d = sys.argv[1]
  tensors = load_file(d + "/swift.safetensors")
  with safe_open(d + "/swift.safetensors", "np") as f:
      metadata = f.metadata()
  archive = np.load(d + "/swift.npz")
  out = {"st/" + k: v for k, v in tensors.items()}
  out.update({"npz/" + k: archive[k] for k in archive.files})
  np.savez_compressed(d + "/python.npz", **out)
  extra = dict(tensors)
  extra.update(labels=np.array([3, 1, 4], np.int32), wide=np.arange(6, dtype=np.float64).reshape(2, 3) / 3,
               half=np.array([1.5, -2], np.float16), big=np.array([1 << 40], np.int64))
  save_file(extra, d + "/python.safetensors", metadata={"writer": "python"})
  np.save(d + "/python.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
  report = {"metadata": metadata, "safetensors": {k: [str(v.dtype), list(v.shape)] for k, v in tensors.items()},
            "npz": {k: [str(archive[k].dtype), list(archive[k].shape)] for k in archive.files}}
  json.dump(report, open(d + "/report.json", "w"))
  """

final class InteropTests: XCTestCase {
  let tensors: [(name: String, array: NDArray)] = [
    ("MixerBlock_0/token_mixing/Dense_0/kernel", NDArray(shape: [16, 32], data: sampleFloats(512))),
    ("head/bias", NDArray(shape: [10], data: sampleFloats(10, seed: 3))),
    ("loss", NDArray(scalar: 2.3012452)),
    ("empty", NDArray(shape: [0, 3], data: [])),
  ]

  func testPythonReadsOurFilesAndWeReadPythons() throws {
    try requirePython(["numpy", "safetensors"])
    let directory = try makeTemporaryDirectory(self)
    try SafeTensors.write(
      tensors, metadata: ["step": "42", "format": "mixer-dist/1"],
      to: directory.appendingPathComponent("swift.safetensors"))
    try NPZ.write(tensors, to: directory.appendingPathComponent("swift.npz"))
    let result = try runPython(["-c", pythonRoundTrip, directory.path])
    XCTAssertEqual(result.status, 0, result.output + result.errors)
    guard result.status == 0 else { return }

    // What Python saw in our files.
    let report = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("report.json")))
        as? [String: Any])
    XCTAssertEqual(report["metadata"] as? [String: String], ["step": "42", "format": "mixer-dist/1"])
    for key in ["safetensors", "npz"] {
      let seen = try XCTUnwrap(report[key] as? [String: [Any]])
      XCTAssertEqual(Set(seen.keys), Set(tensors.map(\.name)), key)
      for (name, array) in tensors {
        XCTAssertEqual(seen[name]?.first as? String, "float32", "\(key) \(name)")
        XCTAssertEqual(seen[name]?.last as? [Int], array.shape, "\(key) \(name)")
      }
    }

    // Python's deflated npz holds our tensors, bit for bit, after two format conversions.
    let archive = try NPZ.readFloats(contentsOf: directory.appendingPathComponent("python.npz"))
    XCTAssertEqual(archive.count, 2 * tensors.count)
    for (name, array) in tensors {
      XCTAssertEqual(archive["st/" + name]?.shape, array.shape)
      XCTAssertEqual(archive["st/" + name]?.data.map(\.bitPattern), array.data.map(\.bitPattern), name)
      XCTAssertEqual(archive["npz/" + name]?.data.map(\.bitPattern), array.data.map(\.bitPattern), name)
    }

    // Python's safetensors, with integer and other float dtypes.
    let file = try SafeTensorsFile(contentsOf: directory.appendingPathComponent("python.safetensors"))
    XCTAssertEqual(file.metadata, ["writer": "python"])
    XCTAssertEqual(file.tensors.count, tensors.count + 4)
    for (name, array) in tensors {
      XCTAssertEqual(try file.tensor(name).ndarray, array, name)
    }
    XCTAssertEqual(try file.info("labels").elementType, .int32)
    XCTAssertEqual(try file.tensor("labels").int32s(), [3, 1, 4])
    XCTAssertEqual(try file.tensor("big").ints(), [1 << 40])
    XCTAssertEqual(try file.floats("half"), [1.5, -2])
    XCTAssertEqual(try file.tensor("wide").shape, [2, 3])
    assertClose(try file.floats("wide"), (0..<6).map { Float($0) / 3 })
    let slice = try file.floats("MixerBlock_0/token_mixing/Dense_0/kernel", elements: 100..<140)
    XCTAssertEqual(slice, Array(tensors[0].array.data[100..<140]))

    let npy = try NPY.read(contentsOf: directory.appendingPathComponent("python.npy"))
    XCTAssertEqual(npy.shape, [2, 3])
    XCTAssertEqual(try npy.int32s(), [0, 1, 2, 3, 4, 5])
  }
}
