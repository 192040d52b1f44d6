// FuzzSafeTensors.swift: libFuzzer entry point for the safetensors reader: header length, JSON
// parser, layout validation, then every tensor and a slice of it converted to floats. Built by
// run.sh.

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  let data = start.map { Data(bytes: $0, count: count) } ?? Data()
  do {
    let file = try SafeTensorsFile(data: data, source: "fuzz.safetensors")
    for tensor in file.tensors {
      let values = try file.floats(tensor.name)
      precondition(values.count == elementCount(tensor.shape), "count disagrees with shape")
      _ = try file.floats(tensor.name, elements: (values.count / 2)..<values.count)
      if tensor.elementType.isInteger { _ = try? file.tensor(tensor.name).int32s() }
    }
  } catch is CheckpointFormatError {
  } catch {
    fatalError("unexpected error type \(type(of: error)): \(error)")
  }
  return 0
}
