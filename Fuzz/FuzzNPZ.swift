// FuzzNPZ.swift: libFuzzer entry point for the `.npz` reader (zip directory walk, inflate via
// ZIPFoundation, and the `.npy` reader for each entry). Entries are capped at 16 MiB so inputs
// cannot legitimately inflate past libFuzzer's memory limit. Built by run.sh.

import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPZ(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  let data = start.map { Data(bytes: $0, count: count) } ?? Data()
  do {
    for (_, array) in try NPZ.decode(data, source: "fuzz.npz", maxEntryBytes: 1 << 24) {
      _ = array.floats()
    }
  } catch is CheckpointFormatError {
  } catch {
    fatalError("unexpected error type \(type(of: error)): \(error)")
  }
  return 0
}
