// WebDataset shards: tar members and their data offsets as Python's tarfile sees them (ustar,
// GNU long names, pax), the index (round trip, brace patterns), shards written from an image
// folder loading the same pixels and labels as the folder, interoperability with Python's
// webdataset in both directions, and every kind of bad input named in one error.

import Foundation
import MixerTestSupport
import XCTest

@testable import MixerData

final class WebDatasetTests: XCTestCase {
  /// 3 classes × `perClass` images of 40×48 (PNG and JPEG alternating) under `root/train`, and
  /// 2 per class under `root/val`.
  func writeImageFolder(_ root: URL, perClass: Int = 6) throws {
    for (split, count) in [("train", perClass), ("val", 2)] {
      for (c, name) in ["cat", "dog", "eel"].enumerated() {
        for i in 0..<count {
          let pixels = patternPixels(width: 48, height: 40, seed: c * 31 + i + (split == "val" ? 500 : 0))
          if i % 2 == 0 {
            try writePNGFile(root, "\(split)/\(name)/\(i).png", pixels: pixels, width: 48, height: 40)
          } else {
            try writeJPEGFile(root, "\(split)/\(name)/\(i).jpg", pixels: pixels, width: 48, height: 40)
          }
        }
      }
    }
  }

  /// The folder's splits written as shards of at most `perShard` samples into `output`.
  func writeShards(from root: URL, to output: URL, perShard: Int = 4) throws {
    let train = try ImageFolder(root: root.path, split: .train, imageHeight: 32, imageWidth: 32, seed: 0)
    let val = try ImageFolder(root: root.path, split: .validation, imageHeight: 32, imageWidth: 32, seed: 0)
    try createShards(
      splits: [("train", train), ("val", val)], output: output.path,
      plan: ShardPlan(shardBytes: 1 << 30, shardSamples: perShard))
  }

  func testTarMembersAndOffsetsMatchPythonTarfile() throws {
    try requirePython(["tarfile"])
    let dir = try makeTemporaryDirectory(self)
    let long = String(repeating: "d", count: 120)
    let script = """
      import io, json, sys, tarfile
      out = {}
      for fmt, name in [(tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax")]:
          path = sys.argv[1] + "/" + name + ".tar"
          with tarfile.open(path, "w", format=fmt) as t:
              names = ["a/000001.png", "a/000001.cls"]
              if name != "ustar":
                  names += ["\(long)/000002.png", "\(long)/000002.cls"]
              for i, n in enumerate(names):
                  data = (b"7" if n.endswith("cls") else bytes(range(256)) * (i + 1))
                  info = tarfile.TarInfo(n); info.size = len(data)
                  t.addfile(info, io.BytesIO(data))
          with tarfile.open(path) as t:
              out[name] = [[m.name, m.offset_data, m.size] for m in t.getmembers()]
      print(json.dumps(out))
      """
    let result = try runPython(["-c", script, dir.path])
    XCTAssertEqual(result.status, 0, result.errors)
    let expected = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as! [String: [[Any]]]
    for format in ["ustar", "gnu", "pax"] {
      var members: [TarMember] = []
      var labels: [String] = []
      try scanTar(dir.appendingPathComponent("\(format).tar").path) { member, read in
        members.append(member)
        if member.name.hasSuffix(".cls") { labels.append(String(decoding: try read(64), as: UTF8.self)) }
      }
      let python = expected[format]!
      XCTAssertEqual(members.count, python.count, format)
      XCTAssertEqual(members.count, format == "ustar" ? 2 : 4, format)
      for (member, row) in zip(members, python) {
        XCTAssertEqual(member.name, row[0] as? String, format)
        XCTAssertEqual(Int(member.offset), row[1] as? Int, "\(format) \(member.name)")
        XCTAssertEqual(Int(member.size), row[2] as? Int, "\(format) \(member.name)")
      }
      XCTAssertEqual(labels, Array(repeating: "7", count: members.count / 2))
    }
  }

  func testBracePatternsAndIndexNames() throws {
    XCTAssertEqual(try expandBraces("d/train-{000..002}.tar"), ["d/train-000.tar", "d/train-001.tar", "d/train-002.tar"])
    XCTAssertEqual(try expandBraces("{a,b}-{08..10}.tar"), ["a-08.tar", "a-09.tar", "a-10.tar", "b-08.tar", "b-09.tar", "b-10.tar"])
    XCTAssertThrowsError(try expandBraces("x-{3..1}.tar"))
    XCTAssertEqual(try expandBraces("x-{8..10}.tar"), ["x-8.tar", "x-9.tar", "x-10.tar"])
    XCTAssertThrowsError(try expandBraces("x-{3..1.tar"))
    XCTAssertEqual(try ShardSet(pattern: "/s/train-{000000..000146}.tar").indexPath, "/s/train.wdsindex")
    XCTAssertEqual(try ShardSet(pattern: "/s/imagenet_train_{0..9}.tar").indexPath, "/s/imagenet_train.wdsindex")
    XCTAssertEqual(try ShardSet(pattern: "/s/one.tar").indexPath, "/s/one.wdsindex")
    XCTAssertEqual(splitTopLevelCommas("a-{0,1}.tar,b-{2..3}.tar"), ["a-{0,1}.tar", "b-{2..3}.tar"])
    XCTAssertEqual(splitKey("x/y.z/000123.seg.png").key, "x/y.z/000123")
    XCTAssertEqual(splitKey("x/y.z/000123.seg.png").ext, "seg.png")
  }

  func testShardsOfAFolderLoadAsTheFolderDoes() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images"), shards = dir.appendingPathComponent("shards")
    try writeImageFolder(root)
    try writeShards(from: root, to: shards)
    let names = try FileManager.default.contentsOfDirectory(atPath: shards.path).sorted()
    XCTAssertEqual(names, [
      "classes.txt", "train-000000.tar", "train-000001.tar", "train-000002.tar", "train-000003.tar", "train-000004.tar",
      "train.wdsindex", "val-000000.tar", "val-000001.tar", "val.wdsindex",
    ])
    XCTAssertEqual(try makeDataset(spec: shards.path, split: .train, imageSize: (32, 32), seed: 0).count, 18)
    for split in [DataSplit.train, .validation] {
      let folder = try ImageFolder(root: root.path, split: split, imageHeight: 32, imageWidth: 32, seed: 5)
      let shardSet = try WebDataset(path: shards.path, split: split, imageHeight: 32, imageWidth: 32, seed: 5)
      XCTAssertFalse(shardSet.builtIndex)
      XCTAssertEqual(shardSet.count, folder.count)
      XCTAssertEqual(shardSet.classNames, ["cat", "dog", "eel"])
      for index in 0..<folder.count {
        XCTAssertEqual(try shardSet.encodedImage(index).bytes, try folder.encodedImage(index).bytes)
        for epoch in [0, 3] {
          let (a, x) = try loadSample(folder, index, epoch: epoch)
          let (b, y) = try loadSample(shardSet, index, epoch: epoch)
          XCTAssertEqual(a, b)
          XCTAssertEqual(x, y, "\(split) sample \(index) epoch \(epoch)")
        }
      }
    }
    // the index file round-trips, and is the index a fresh scan builds
    let set = try ShardSet.resolve(shards.path, split: .train)
    let stored = try ShardIndex.decode(try readFileBytes(set.indexPath), path: set.indexPath)
    XCTAssertEqual(stored, try ShardIndex.build(set, threads: 1))
    XCTAssertEqual(stored, try ShardIndex.build(set, threads: 3))
    XCTAssertEqual((0..<stored.count).map(stored.key), (0..<18).map { String(format: "%06d", $0) })
    // a pattern finds the same shards and index
    let pattern = try WebDataset(
      path: shards.path + "/train-{000000..000004}.tar", split: .train, imageHeight: 32, imageWidth: 32, seed: 0)
    XCTAssertEqual(pattern.shardSet, set)
  }

  func testCIFARAndMNISTBecomeLosslessPNGShards() throws {
    let dir = try makeTemporaryDirectory(self)
    let cifar = dir.appendingPathComponent("cifar")
    for batch in 1...5 {
      try writeFile(cifar, "data_batch_\(batch).bin", cifarRecords(labels: [[UInt8(batch)], [UInt8(9 - batch)]], seed: batch))
    }
    try writeFile(cifar, "test_batch.bin", cifarRecords(labels: [[9], [0], [4]], seed: 0))
    let mnist = dir.appendingPathComponent("mnist")
    let digits = (0..<(5 * 28 * 28)).map { UInt8($0 % 251) }
    try writeFile(mnist, "train-images-idx3-ubyte", idxFile(magic: 0x803, dimensions: [5, 28, 28], data: digits))
    try writeFile(mnist, "train-labels-idx1-ubyte", idxFile(magic: 0x801, dimensions: [5], data: [3, 1, 4, 1, 5]))
    try writeFile(mnist, "t10k-images-idx3-ubyte", idxFile(magic: 0x803, dimensions: [1, 28, 28], data: Array(digits.prefix(784))))
    try writeFile(mnist, "t10k-labels-idx1-ubyte", idxFile(magic: 0x801, dimensions: [1], data: [9]))
    for (spec, name) in [("cifar10:\(cifar.path)", "cifar-shards"), ("mnist:\(mnist.path)", "mnist-shards")] {
      let output = dir.appendingPathComponent(name)
      var splits: [(name: String, source: any EncodedImageSource)] = []
      for (split, kind) in [("train", DataSplit.train), ("val", .validation)] {
        splits.append((split, try makeDataset(spec: spec, split: kind, imageSize: (32, 32), seed: 0) as! any EncodedImageSource))
      }
      try createShards(splits: splits, output: output.path, plan: ShardPlan(shardBytes: 9000, shardSamples: 100))
      for (split, kind) in [("train", DataSplit.train), ("val", .validation)] {
        let source = splits.first { $0.name == split }!.source as! any InMemoryImageDataset
        let shards = try WebDataset(path: output.path, split: kind, imageHeight: 32, imageWidth: 32, seed: 0)
        XCTAssertEqual(shards.count, source.count, "\(name) \(split)")
        XCTAssertEqual(shards.classNames, source.classNames)
        for i in 0..<source.count {
          let decoded = try shards.imageBytes(i).withUnsafeBytes { try decodeImage($0).image }
          XCTAssertEqual(decoded, source.image(i), "\(name) \(split) \(i)")
          XCTAssertEqual(shards.label(of: i), source.label(of: i))
        }
      }
    }
    // CIFAR: 3072 source bytes + two 512-byte headers a sample, 9000 bytes a shard: 2 samples each
    XCTAssertEqual(ShardSet(directory: dir.path + "/cifar-shards", prefix: "train")?.shards.count, 5)
  }

  func testOpenShardsReadRightWhenTheCacheIsSmallerThanTheShards() throws {
    let dir = try makeTemporaryDirectory(self)
    var paths: [String] = []
    for shard in 0..<5 {
      paths.append(try writeFile(dir, "\(shard).bin", (0..<100).map { UInt8(($0 * 7 + shard * 31) % 256) }).path)
    }
    let all = OpenShards(paths: paths)
    XCTAssertEqual(all.capacity, 5, "every shard fits under the open-file limit")
    let small = OpenShards(paths: paths, capacity: 2)
    let expected = try paths.map { try readFileBytes($0) }
    // 3 threads reading 3 bytes at varying offsets of varying shards, 300 times each
    DispatchQueue.concurrentPerform(iterations: 3) { thread in
      for n in 0..<300 {
        let shard = (n * 7 + thread) % 5, offset = (n * 13) % 97
        var bytes = [UInt8](repeating: 0, count: 3)
        XCTAssertEqual(try? small.read(shard: shard, offset: Int64(offset), into: &bytes), 3)
        XCTAssertEqual(bytes, Array(expected[shard][offset..<offset + 3]), "shard \(shard) offset \(offset)")
      }
    }
    XCTAssertGreaterThan(small.opened, 5, "a cache of 2 reopens shards")
    var tail = [UInt8](repeating: 0, count: 10)
    XCTAssertEqual(try all.read(shard: 0, offset: 95, into: &tail), 5, "a read past the end returns what there is")
    for shard in 0..<5 { _ = try all.read(shard: shard, offset: 0, into: &tail) }
    for shard in 0..<5 { _ = try all.read(shard: shard, offset: 0, into: &tail) }
    XCTAssertEqual(all.opened, 5, "each shard opened once")
  }

  func testShardsWrittenByPythonWebdatasetAreRead() throws {
    try requirePython(["webdataset"])
    let dir = try makeTemporaryDirectory(self)
    var expected: [(bytes: [UInt8], label: Int)] = []
    for i in 0..<7 {
      let pixels = patternPixels(width: 20, height: 16, seed: i)
      let bytes = i % 2 == 0
        ? try encodePNG(pixels: pixels, width: 20, height: 16, channels: 3)
        : try encodeJPEG(pixels: pixels, width: 20, height: 16, channels: 3, quality: 90)
      try writeFile(dir, "src/\(i).\(i % 2 == 0 ? "png" : "jpg")", bytes)
      expected.append((bytes, i % 3))
    }
    let script = """
      import sys, webdataset as wds
      src, out = sys.argv[1], sys.argv[2]
      with wds.ShardWriter(out + "/py-%06d.tar", maxcount=3) as sink:
          for i in range(7):
              ext = "png" if i % 2 == 0 else "jpg"
              sink.write({"__key__": "s%04d" % i, ext: open(f"{src}/{i}.{ext}", "rb").read(), "cls": i % 3,
                          "json": {"i": i}})
      """
    let result = try runPython(["-c", script, dir.appendingPathComponent("src").path, dir.path])
    XCTAssertEqual(result.status, 0, result.errors)
    let data = try WebDataset(
      path: dir.path + "/py-{000000..000002}.tar,\(dir.path)/py-000002.tar", split: .train, imageHeight: 16,
      imageWidth: 16, seed: 0)
    XCTAssertTrue(data.builtIndex)
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path + "/py.wdsindex"))
    XCTAssertEqual(data.count, 7)
    XCTAssertEqual(data.numClasses, 3)
    for i in 0..<7 {
      XCTAssertEqual(data.index.key(i), String(format: "s%04d", i))
      XCTAssertEqual(try data.imageBytes(i), expected[i].bytes)
      XCTAssertEqual(data.label(of: i), expected[i].label)
      XCTAssertEqual(try loadSample(data, i).0, expected[i].label)
    }
    let validation = try WebDataset(
      path: dir.path + "/py-{000000..000002}.tar,\(dir.path)/py-000002.tar", split: .validation, imageHeight: 16,
      imageWidth: 16, seed: 0)
    XCTAssertEqual(validation.count, 1)
    XCTAssertEqual(try validation.imageBytes(0), expected[6].bytes)
  }

  func testShardsWrittenHereAreReadByPythonWebdataset() throws {
    try requirePython(["webdataset"])
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images"), shards = dir.appendingPathComponent("shards")
    try writeImageFolder(root)
    try writeShards(from: root, to: shards)
    let script = """
      import sys, zlib, webdataset as wds
      for split, n in [("train", 5), ("val", 2)]:
          urls = [f"{sys.argv[1]}/{split}-{i:06d}.tar" for i in range(n)]
          for sample in wds.WebDataset(urls, shardshuffle=False):
              image = [k for k in sample if k in ("png", "jpg", "jpeg")]
              assert len(image) == 1, sorted(sample)
              print(split, sample["__key__"], image[0], zlib.crc32(sample[image[0]]), int(sample["cls"]))
      """
    let result = try runPython(["-c", script, shards.path])
    XCTAssertEqual(result.status, 0, result.errors)
    var lines: [String] = []
    for (name, split) in [("train", DataSplit.train), ("val", .validation)] {
      let folder = try ImageFolder(root: root.path, split: split, imageHeight: 32, imageWidth: 32, seed: 0)
      for i in 0..<folder.count {
        let (bytes, ext) = try folder.encodedImage(i)
        lines.append("\(name) \(String(format: "%06d", i)) \(ext) \(crc32(bytes)) \(folder.label(of: i))")
      }
    }
    XCTAssertEqual(result.output.split(separator: "\n").map(String.init), lines)
    XCTAssertEqual(lines.count, 24)
  }

  // MARK: - Bad input

  func testBadShardsAreNamedInOneError() throws {
    let dir = try makeTemporaryDirectory(self)
    let root = dir.appendingPathComponent("images"), shards = dir.appendingPathComponent("shards")
    try writeImageFolder(root)
    try writeShards(from: root, to: shards)
    let open = { (path: String, skip: Bool) throws -> WebDataset in
      var options = DataOptions()
      options.skipBadImages = skip
      return try WebDataset(path: path, split: .train, imageHeight: 32, imageWidth: 32, seed: 0, options: options)
    }
    // a shard of the pattern that does not exist
    assertDataError(["shard \(shards.path)/train-000005.tar is missing"]) {
      try open(shards.path + "/train-{000000..000005}.tar", false)
    }
    // a shard changed after indexing: other size, then other time
    let third = shards.appendingPathComponent("train-000002.tar")
    let original = try Data(contentsOf: third)
    try (original + Data(repeating: 0, count: 512)).write(to: third)
    assertDataError(["shard \(third.path) changed since its index", "train.wdsindex", "mixer-dist shard index"]) {
      try open(shards.path, false)
    }
    try original.write(to: third)
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1000)], ofItemAtPath: third.path)
    assertDataError(["shard \(third.path) changed since its index", "modification time"]) { try open(shards.path, false) }
    // a corrupt index file
    var indexBytes = try Data(contentsOf: shards.appendingPathComponent("train.wdsindex"))
    indexBytes[40] ^= 0xFF
    try indexBytes.write(to: shards.appendingPathComponent("train.wdsindex"))
    assertDataError(["shard index \(shards.path)/train.wdsindex is unusable (checksum mismatch)"]) {
      try open(shards.path, false)
    }
    // indexed again, it opens
    let set = try ShardSet.resolve(shards.path, split: .train)
    try ShardIndex.build(set).write(to: set.indexPath)
    XCTAssertEqual(try open(shards.path, false).count, 18)

    // a truncated shard: refused by the scan, naming shard and member
    let cut = shards.appendingPathComponent("train-000001.tar")
    let bytes = try Data(contentsOf: cut)
    try bytes.prefix(1500).write(to: cut)
    assertDataError(["train-000001.tar", "member 000004.png"]) { try ShardIndex.build(set) }
    // a header whose checksum is broken
    var first: TarMember?
    try bytes.write(to: cut)
    try scanTar(cut.path) { member, _ in first = first ?? member }
    var corrupt = bytes
    corrupt[Int(first!.offset) + (Int(first!.size) + 511) / 512 * 512 + 100] ^= 0x55  // the second header's mode
    try corrupt.write(to: cut)
    assertDataError(["train-000001.tar", "after member 000004.png"]) { try ShardIndex.build(set) }
  }

  func testSamplesWithoutOrWithBadLabelsAreRefusedOrLeftOut() throws {
    let dir = try makeTemporaryDirectory(self)
    let png = try encodePNG(pixels: patternPixels(width: 8, height: 8, seed: 1), width: 8, height: 8, channels: 3)
    func shard(_ name: String, _ members: [(String, [UInt8])]) throws {
      let writer = try TarWriter(path: dir.appendingPathComponent(name).path)
      for (member, bytes) in members { try writer.append(name: member, bytes: bytes) }
      try writer.finish()
    }
    try shard("a-0.tar", [("k0.png", png), ("k0.cls", Array("1".utf8)), ("k1.png", png), ("k2.png", png), ("k2.cls", Array("0".utf8))])
    try shard("b-0.tar", [("k0.png", png), ("k0.cls", Array("one".utf8)), ("k1.png", png), ("k1.cls", Array("0".utf8))])
    try shard("c-0.tar", [("k0.png", png), ("k0.cls", Array("7".utf8)), ("k1.png", png), ("k1.cls", Array("1".utf8))])
    try shard("d-0.tar", [("k0.cls", Array("1".utf8)), ("k1.png", png), ("k1.cls", Array("0".utf8))])
    func open(_ prefix: String, skip: Bool) throws -> WebDataset {
      var options = DataOptions()
      options.skipBadImages = skip
      let pattern = dir.path + "/\(prefix)-0.tar"
      return try WebDataset(path: pattern + "," + pattern, split: .train, imageHeight: 8, imageWidth: 8, seed: 0, options: options)
    }
    assertDataError(["a-0.tar: sample k1 has no label (KEY.cls)", "--skip-bad-images"]) { try open("a", skip: false) }
    assertDataError(["b-0.tar: sample k0 has a .cls that is not a class index"]) { try open("b", skip: false) }
    assertDataError(["d-0.tar: sample k0 has no image"]) { try open("d", skip: false) }
    let skipped = try open("a", skip: true)
    XCTAssertEqual(skipped.count, 2)
    XCTAssertEqual(skipped.skippedSamples, 1)
    XCTAssertEqual((0..<2).map(skipped.label(of:)), [1, 0])
    // a label outside the classes of classes.txt
    try "zero\none\n".write(to: dir.appendingPathComponent("classes.txt"), atomically: true, encoding: .utf8)
    assertDataError(["c-0.tar: sample k0 has label 7, outside the 2 classes of \(dir.path)/classes.txt"]) {
      try open("c", skip: false)
    }
    XCTAssertEqual(try open("c", skip: true).count, 1)
  }

  func testAnImageThatFailsToDecodeIsNamedOrSubstituted() throws {
    let dir = try makeTemporaryDirectory(self)
    let png = try encodePNG(pixels: patternPixels(width: 8, height: 8, seed: 1), width: 8, height: 8, channels: 3)
    let writer = try TarWriter(path: dir.appendingPathComponent("x-0.tar").path)
    for (key, bytes) in [("k0", png), ("k1", Array(png.prefix(40))), ("k2", png)] {
      try writer.append(name: key + ".png", bytes: bytes)
      try writer.append(name: key + ".cls", bytes: Array("0".utf8))
    }
    try writer.finish()
    let pattern = dir.path + "/x-0.tar"
    let strict = try WebDataset(path: pattern + "," + pattern, split: .train, imageHeight: 8, imageWidth: 8, seed: 0)
    XCTAssertThrowsError(try loadSample(strict, 1)) { error in
      XCTAssertTrue("\(error)".contains("x-0.tar: sample k1"), "\(error)")
    }
    XCTAssertThrowsError(try strict.checkSample(1))
    var options = DataOptions()
    options.skipBadImages = true
    let lenient = try WebDataset(
      path: pattern + "," + pattern, split: .train, imageHeight: 8, imageWidth: 8, seed: 0, options: options)
    XCTAssertEqual(try loadSample(lenient, 1).0, 0)
    XCTAssertEqual(lenient.badImages.skipped, 1)
  }
}
