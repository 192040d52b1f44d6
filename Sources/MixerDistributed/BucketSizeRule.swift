// The default gradient bucket size (`--bucket-size` unset): a function of the model's parameter
// count P and the world size N only, so every rank computes the same value.
//
// A ring all-reduce of one bucket sends 2(N-1) messages, so a step pays about
// 2(N-1) · buckets · alpha of latency next to the bandwidth term 2(N-1)/N · 4P bytes / bandwidth.
// On the reference link (alpha = 10 us, 100 Gbit/s: 125 KB of data per message latency) latency
// stays within a tenth of the bandwidth term while
//
//     buckets <= P / (312,500 · (N-1))
//
// (the ratio is (N-1) · buckets · 125,000 bytes / (4P bytes), nearly independent of N's 1/N).
// Slower links only shrink that share. Backward can hide at most the buckets it hands over before
// it ends, a share of 1 - 1/buckets: at least 4 buckets (75%), and no more than 16 (94%: more
// only adds messages). Where the two disagree (a large job of a small model) the 4 buckets win.
// The buffer is then cut into that many equal buckets.
//
// What it gives (buckets at 2 / 4 / 8 / 64 ranks): tiny 4/4/4/4, cifar 13/4/4/4,
// B/16 16/16/16/4 (the old fixed 131,072 floats: tiny 5, cifar 34, B/16 457 at every N).

/// The default number and size of gradient buckets.
public enum BucketSizeRule {
  /// Floats of data per message of latency on the reference link, times the tenth the latency
  /// may take: P / (this · (N-1)) buckets keep latency within 10% of the bandwidth term.
  public static let floatsPerBucketAndPeer = 312_500
  /// At least this many buckets, so that backward hides most of the communication.
  public static let minimumBuckets = 4
  /// At most this many.
  public static let maximumBuckets = 16

  /// The bucket count for `parameterCount` floats reduced over `worldSize` ranks (1 rank: as 2).
  public static func buckets(parameterCount: Int, worldSize: Int) -> Int {
    let peers = max(1, worldSize - 1)
    let byLatency = parameterCount / (floatsPerBucketAndPeer * peers)
    return min(max(byLatency, minimumBuckets), maximumBuckets, max(1, parameterCount))
  }

  /// The bucket size in floats: the buffer cut into `buckets(...)` equal parts (rounded up).
  public static func bucketFloats(parameterCount: Int, worldSize: Int) -> Int {
    let count = buckets(parameterCount: parameterCount, worldSize: worldSize)
    return max(1, (parameterCount + count - 1) / count)
  }
}
