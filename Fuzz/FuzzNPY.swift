// FuzzNPY.swift: libFuzzer entry point for the `.npy` reader. Any input must either decode or
// throw a CheckpointFormatError; a decoded array must convert without trapping. Built by run.sh
// together with Sources/MixerCheckpoint into one module.

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  let data = start.map { Data(bytes: $0, count: count) } ?? Data()
  do {
    let array = try NPY.decode(data, source: "fuzz.npy")
    precondition(array.count == elementCount(array.shape), "count disagrees with shape")
    _ = array.floats()
    if array.elementType.isInteger {
      _ = try? array.int32s()
    } else {
      precondition((try? array.ints()) == nil, "ints() accepted a float array")
    }
  } catch is CheckpointFormatError {
  } catch {
    fatalError("unexpected error type \(type(of: error)): \(error)")
  }
  return 0
}
