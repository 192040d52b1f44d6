// Row-parallel loops for the elementwise kernels. BLAS runs the matrix products on several
// threads; without this, LayerNorm and GELU would run on one thread and cap the step's speed.
// Rows are split into `threads` contiguous chunks, fixed by the thread count alone, so results
// (including per-chunk partial sums, added in chunk order) are the same on every run, whichever
// threads run the chunks.

import Dispatch

/// The thread count of the elementwise kernels; `BLAS.setThreads` keeps it equal to BLAS's.
public enum KernelThreads {
  public nonisolated(unsafe) static var count = 1
  /// The threads that run the chunks: the products' own pool is the one that is awake.
  public nonisolated(unsafe) static var team = Team.dispatch
  /// When set (`train --exact`), split work is cut into this many chunks whatever the thread
  /// count, and the threads run the chunks in turn: per-chunk partial sums (LayerNorm's and the
  /// bias gradients') are then the same bits on 1, 2 or 8 threads. nil: one chunk per thread.
  public nonisolated(unsafe) static var fixedChunks: Int?

  public enum Team: Sendable {
    /// Dispatch's pool, beside OpenBLAS's threads (fp32: OpenBLAS's idle threads yield the core).
    case dispatch
    /// OpenMP's team, the threads oneDNN's products run on (bf16): its threads spin a while
    /// after each product, so work handed to another pool would wait for them.
    case openMP
  }
}

/// Work below this many elements runs on the calling thread.
let parallelThreshold = 1 << 16

/// Calls `body(chunk, rows)` for `parallelChunks(rows, elementsPerRow:)` contiguous chunks of
/// `0..<rows` (one per thread, or `KernelThreads.fixedChunks`), concurrently when the work
/// (`rows · elementsPerRow`) is large enough; `chunk` is 0..<chunkCount.
@inline(__always)
public func parallelRows(_ rows: Int, elementsPerRow: Int, _ body: (Int, Range<Int>) -> Void) {
  let chunks = parallelChunks(rows, elementsPerRow: elementsPerRow)
  let workers = min(KernelThreads.count, chunks)
  if chunks <= 1 {
    body(0, 0..<rows)
    return
  }
  withoutActuallyEscaping(body) { body in
    // worker w runs chunks w, w + workers, ... (just chunk w when there is one chunk per thread)
    let run = { (worker: Int) in
      for chunk in stride(from: worker, to: chunks, by: workers) {
        body(chunk, chunkRange(chunk, of: chunks, rows: rows))
      }
    }
    if workers <= 1 { return run(0) }
    switch KernelThreads.team {
    case .dispatch:
      DispatchQueue.concurrentPerform(iterations: workers, execute: run)
    case .openMP:
      DNNL.parallel(threads: workers, run)
    }
  }
}

/// The chunk count `parallelRows` will use for this work (1 when it runs inline).
@inline(__always)
func parallelChunks(_ rows: Int, elementsPerRow: Int) -> Int {
  if rows * elementsPerRow < parallelThreshold { return 1 }
  if let fixed = KernelThreads.fixedChunks { return min(fixed, rows) }
  let threads = min(KernelThreads.count, rows)
  return threads <= 1 ? 1 : threads
}

@inline(__always)
func chunkRange(_ chunk: Int, of chunks: Int, rows: Int) -> Range<Int> {
  (chunk * rows / chunks)..<((chunk + 1) * rows / chunks)
}

/// Calls `body(range)` on contiguous ranges covering `0..<count`, split over the kernel threads in
/// blocks of `block` elements (for elementwise passes over a flat buffer, where each element is
/// its own: the same bits on any thread count).
@inline(__always)
public func parallelElements(_ count: Int, block: Int = 4096, _ body: (Range<Int>) -> Void) {
  parallelRows((count + block - 1) / block, elementsPerRow: block) { _, blocks in
    let start = blocks.lowerBound * block, end = min(count, blocks.upperBound * block)
    if end > start { body(start..<end) }
  }
}
