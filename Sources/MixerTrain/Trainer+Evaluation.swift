// The trainer's evaluations: logging the task's metrics (under --ema also those of the averaged
// parameters, with `_ema`), --keep-best, and the confusion matrix the report shows.

import Foundation
import MixerTrace
import MixerCheckpoint
import MixerTelemetry

extension Trainer {
  /// --keep-best: when this evaluation (its recorded `values`) beats the best so far (every rank
  /// decides alike, the totals being all-reduced), the checkpoint of this step is kept apart from
  /// --keep's pruning (saved now if the step had none) and named in `best.json`.
  func keepIfBest(_ values: [(String, Double)], step: Int, saved: Bool, store: CheckpointStore<TrainConfig>) throws {
    guard let metric = config.keepBest else { return }
    guard let value = values.first(where: { $0.0 == metric })?.1, value.isFinite else { return }
    let lowerIsBetter = metric.hasSuffix("loss") || metric.hasSuffix("loss" + TrainConfig.averageSuffix)
    if let best, lowerIsBetter ? value >= best.value : value <= best.value { return }
    best = (step, value)
    if !saved { try saveCheckpoint(store, done: step) }
    if comm.rank == 0 {
      let record: [String: Any] = ["metric": metric, "value": value, "step": step, "checkpoint": checkpointName(step: step)]
      try AtomicFile.write(
        try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]),
        to: URL(fileURLWithPath: checkpointFolder).appendingPathComponent("best.json"))
    }
    log.line("mixer-dist: best \(metric) so far \(value) at step \(step): \(checkpointName(step: step)) is kept (--keep-best)")
  }

  /// The best evaluation recorded in the checkpoint folder (best.json), for a resumed run.
  func readBest() -> (step: Int, value: Double)? {
    let url = URL(fileURLWithPath: checkpointFolder).appendingPathComponent("best.json")
    guard let data = FileManager.default.contents(atPath: url.path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      object["metric"] as? String == config.keepBest, let step = object["step"] as? Int, step <= startStep,
      let value = object["value"] as? Double
    else { return nil }
    return (step, value)
  }

  /// Rank 0 writes the final evaluation's confusion matrix (classification) for the report.
  func writeConfusion(_ result: EvaluationResult?, step: Int) throws {
    guard comm.rank == 0, let confusion = result?.confusion else { return }
    let k = model.config.classes
    let object: [String: Any] = [
      "step": step, "classes": (0..<k).map { className($0, config.classNames) },
      "confusion": (0..<k).map { i in (0..<k).map { Int(confusion[i * k + $0]) } },
    ]
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
      .write(to: URL(fileURLWithPath: config.runDirectory).appendingPathComponent("confusion.json"))
  }

  /// Evaluates on the validation set and records the task's metrics; under --ema evaluates the
  /// averaged parameters too and records the task's metrics of them with `_ema` (`val_top1_ema`).
  /// Returns the raw parameters' result and every recorded value.
  func evaluateAndLog(step: Int) throws -> (EvaluationResult, [(String, Double)]) {
    let task = config.model.task.training
    let result = try Timeline.span("evaluation (step \(step))", .evaluation) {
      try evaluate(model: model, dataset: validationSet, comm: comm, batchSize: config.evalBatch)
    }
    let record = task.evaluationRecord(result, classNames: config.classNames)
    var values = record.values
    var averageLine: String?
    if let average {
      let averaged = try Timeline.span("evaluation of the EMA (step \(step))", .evaluation) {
        try average.withAveragedParameters(in: model, comm: comm, sharded: config.zeroStage == 1) {
          try evaluate(model: model, dataset: validationSet, comm: comm, batchSize: config.evalBatch)
        }
      }
      let averageRecord = task.evaluationRecord(averaged, classNames: config.classNames)
      let names = Set(task.metricNames)
      values += averageRecord.values.filter { names.contains($0.0) }.map { ($0.0 + TrainConfig.averageSuffix, $0.1) }
      averageLine = averageRecord.lines[0]
    }
    log.record(MetricRecord(kind: "eval", step: step, values: values))
    log.line("eval step \(step): val \(record.lines[0])  (\(result.count) images)")
    for line in record.lines.dropFirst() { log.line("  " + line) }
    if let averageLine { log.line("  EMA: \(averageLine)") }
    return (result, values)
  }
}
