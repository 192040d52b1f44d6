// The run report: one self-contained HTML page (inline CSS and SVG, no scripts, no external
// files) made from a run folder's `metrics.jsonl` and `config.json`. It holds a summary (steps,
// final loss, best and last validation accuracy, total time), line plots over steps of the train
// loss, the learning rate, the validation accuracy and the throughput, and the configuration as
// a table with nested keys flattened (`model.hidden`). The validation accuracies are the metrics
// the run's head recorded with their names in config.json (`ReportedMetric`: top-1 and top-5,
// mIoU and pixel accuracy, ...). A `null` in the metrics (a non-finite number) is a gap in its
// line.

import Foundation

/// An error reading a run folder for its report, printed as one line.
public struct ReportError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// Writes the HTML report of the run in `runDirectory` to `output` (default
/// `runDirectory/report.html`) and returns the path written.
///
/// Throws a `ReportError` naming the file when `metrics.jsonl` is missing or holds no records,
/// naming the line when a line is not a JSON object with a `kind` and a `step`, and naming
/// `config.json` when that file exists but is not a JSON object.
public func writeReport(runDirectory: String, to output: String? = nil) throws -> String {
  let folder = URL(fileURLWithPath: runDirectory)
  var isFolder: ObjCBool = false
  guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder),
    isFolder.boolValue
  else {
    throw ReportError("no run folder at \(folder.path)")
  }
  let records = try readMetricRecords(path: folder.appendingPathComponent("metrics.jsonl").path)
  let configPath = folder.appendingPathComponent("config.json").path
  let config = try readFlatConfig(path: configPath)
  let metrics = ValidationKeys(recorded: readReportedMetrics(path: configPath), records: records)
  let html = renderReport(runDirectory: folder.path, records: records, config: config, metrics: metrics)
  let outputPath = output ?? folder.appendingPathComponent("report.html").path
  do {
    try Data(html.utf8).write(to: URL(fileURLWithPath: outputPath), options: .atomic)
  } catch {
    throw ReportError("cannot write the report to \(outputPath): \(error.localizedDescription)")
  }
  return outputPath
}

// MARK: - Reading the run folder

/// A JSON value as the report reads it: numbers as `Double`, `null` kept so gaps stay gaps.
enum ReportJSON: Decodable {
  case object([String: ReportJSON])
  case array([ReportJSON])
  case string(String)
  case number(Double)
  case bool(Bool)
  case null

  init(from decoder: Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([ReportJSON].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: ReportJSON].self))
    }
  }

  /// The value as table text: integers without a fraction, strings as they are.
  var text: String {
    switch self {
    case .object(let members):
      let inner = members.keys.sorted().map { "\($0): \(members[$0]!.text)" }
      return "{" + inner.joined(separator: ", ") + "}"
    case .array(let items): return "[" + items.map(\.text).joined(separator: ", ") + "]"
    case .string(let value): return value
    case .number(let value): return formatNumber(value)
    case .bool(let value): return value ? "true" : "false"
    case .null: return "null"
    }
  }
}

/// One line of metrics.jsonl: its kind (`train`, `eval`), step and numbers (`nil` for `null`).
struct ReportRecord {
  var kind: String
  var step: Int
  var values: [String: Double?]
  /// the run the record belongs to (nil for records written before runs had ids)
  var run: String? = nil
}

/// Parses metrics.jsonl; blank lines are skipped, anything else that is not a JSON object with a
/// string `kind` and a numeric `step` throws an error naming the line.
func readMetricRecords(path: String) throws -> [ReportRecord] {
  guard let data = FileManager.default.contents(atPath: path) else {
    throw ReportError("no metrics file at \(path) (is this a run folder?)")
  }
  guard let text = String(data: data, encoding: .utf8) else {
    throw ReportError("\(path) is not UTF-8 text")
  }
  var records = [ReportRecord]()
  let decoder = JSONDecoder()
  // "\r\n" is one Character, so isNewline splits Windows line ends as one break too
  let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
  for (index, line) in lines.enumerated() {
    let lineNumber = index + 1
    let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
    if trimmed.isEmpty { continue }
    let excerpt = trimmed.count > 60 ? String(trimmed.prefix(60)) + "…" : trimmed
    guard let value = try? decoder.decode(ReportJSON.self, from: Data(trimmed.utf8)) else {
      throw ReportError("\(path) line \(lineNumber) is not JSON: \(excerpt)")
    }
    guard case .object(let members) = value else {
      throw ReportError("\(path) line \(lineNumber) is not a JSON object: \(excerpt)")
    }
    guard case .string(let kind)? = members["kind"] else {
      throw ReportError("\(path) line \(lineNumber) has no string \"kind\": \(excerpt)")
    }
    guard case .number(let step)? = members["step"], let integerStep = Int(exactly: step) else {
      throw ReportError("\(path) line \(lineNumber) has no integer \"step\": \(excerpt)")
    }
    var values = [String: Double?]()
    for (key, member) in members where key != "kind" && key != "step" {
      switch member {
      case .number(let number): values[key] = .some(number)
      case .null: values[key] = .some(nil)
      default: break
      }
    }
    var run: String?
    if case .string(let id)? = members["run"] { run = id }
    records.append(ReportRecord(kind: kind, step: integerStep, values: values, run: run))
  }
  if records.isEmpty {
    throw ReportError("\(path) holds no metrics records (the run logged nothing yet?)")
  }
  // the current run only: the run of the last record (a folder may hold an older run's lines)
  let current = records.last!.run
  return records.filter { $0.run == current }
}

/// config.json as (flattened key, value text) rows sorted by key, or `nil` if there is no file.
func readFlatConfig(path: String) throws -> [(key: String, value: String)]? {
  guard let data = FileManager.default.contents(atPath: path) else { return nil }
  guard case .object(let members)? = try? JSONDecoder().decode(ReportJSON.self, from: data) else {
    throw ReportError("\(path) is not a JSON object")
  }
  var rows = [(key: String, value: String)]()
  flattenConfig(members.filter { $0.key != ReportedMetric.configKey }, prefix: "", into: &rows)
  return rows
}

/// The evaluation metrics config.json records (`RunSettings`), nil when it records none (no file,
/// or a run written before they were recorded).
func readReportedMetrics(path: String) -> [ReportedMetric]? {
  struct Recorded: Decodable { var evaluationMetrics: [ReportedMetric]? }
  guard let data = FileManager.default.contents(atPath: path),
    let metrics = (try? JSONDecoder().decode(Recorded.self, from: data))?.evaluationMetrics, !metrics.isEmpty
  else { return nil }
  return metrics
}

/// Appends `prefix.key` rows for every leaf of `members`, nested objects flattened.
func flattenConfig(
  _ members: [String: ReportJSON], prefix: String, into rows: inout [(key: String, value: String)]
) {
  for key in members.keys.sorted() {
    let name = prefix.isEmpty ? key : prefix + "." + key
    if case .object(let inner) = members[key]!, !inner.isEmpty {
      flattenConfig(inner, prefix: name, into: &rows)
    } else {
      rows.append((name, members[key]!.text))
    }
  }
}

// MARK: - The page

/// One point of a plotted line; `value == nil` breaks the line.
struct PlotPoint {
  var step: Int
  var value: Double?
}

/// The points of `key` in records of `kind`, in step order (records without the key skipped;
/// non-finite numbers become gaps).
func metricSeries(_ records: [ReportRecord], kind: String, key: String) -> [PlotPoint] {
  let points = records.filter { $0.kind == kind }.compactMap { record -> PlotPoint? in
    guard let value = record.values[key] else { return nil }
    return PlotPoint(step: record.step, value: value.flatMap { $0.isFinite ? $0 : nil })
  }
  // a stable sort: a resumed run that logged a step twice keeps its file order
  return points.enumerated().sorted { ($0.element.step, $0.offset) < ($1.element.step, $1.offset) }
    .map(\.element)
}

/// The validation accuracies a report shows: the metrics the run recorded (the first ranks the
/// evaluations), or for a run written before runs recorded them, the two its head then wrote.
struct ValidationKeys {
  let primary: ReportedMetric
  let others: [ReportedMetric]

  init(recorded: [ReportedMetric]?, records: [ReportRecord]) {
    let metrics = recorded ?? ValidationKeys.writtenBeforeRecording(records)
    primary = metrics[0]
    others = Array(metrics.dropFirst())
  }

  /// Runs without `evaluationMetrics` in config.json: the segmentation head's when the records
  /// hold `val_miou`, else the classification head's.
  static func writtenBeforeRecording(_ records: [ReportRecord]) -> [ReportedMetric] {
    if records.contains(where: { $0.values["val_miou"] != nil }) {
      return [ReportedMetric("val_miou", name: "mIoU"), ReportedMetric("val_pixel_accuracy", name: "pixel accuracy")]
    }
    return [ReportedMetric("val_top1", name: "top-1"), ReportedMetric("val_top5", name: "top-5")]
  }
}

/// Line colours of the validation accuracies, in the order the run recorded them.
let accuracyColors = ["#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]

/// The whole HTML document.
func renderReport(
  runDirectory: String, records: [ReportRecord], config: [(key: String, value: String)]?, metrics keys: ValidationKeys
) -> String {
  let loss = metricSeries(records, kind: "train", key: "loss")
  let learningRate = metricSeries(records, kind: "train", key: "lr")
  let throughput = metricSeries(records, kind: "train", key: "images_per_second")
  let validationLoss = metricSeries(records, kind: "eval", key: "val_loss")
  let hasTrain = records.contains { $0.kind == "train" }
  let hasEval = records.contains { $0.kind == "eval" }
  let noTrain = "no training records"
  let maximumStep = records.map(\.step).max() ?? 0

  let plots = [
    LinePlot(
      title: "Loss", yLabel: "cross-entropy",
      series: [
        PlotLine(name: "train", color: "#1f77b4", points: loss),
        PlotLine(name: "validation", color: "#d62728", points: validationLoss),
      ],
      emptyMessage: noTrain),
    LinePlot(
      title: "Learning rate", yLabel: "learning rate",
      series: [PlotLine(name: "learning rate", color: "#2ca02c", points: learningRate)],
      includesZero: true, emptyMessage: noTrain),
    LinePlot(
      title: "Validation accuracy", yLabel: "accuracy",
      series: ([keys.primary] + keys.others).enumerated().map { i, metric in
        PlotLine(
          name: metric.name, color: accuracyColors[i % accuracyColors.count],
          points: metricSeries(records, kind: "eval", key: metric.key))
      },
      fixedRange: 0...1, percent: true, emptyMessage: "no evaluations"),
    LinePlot(
      title: "Throughput", yLabel: "images / s",
      series: [PlotLine(name: "images/s", color: "#9467bd", points: throughput)],
      includesZero: true, emptyMessage: noTrain),
  ]
  let name = URL(fileURLWithPath: runDirectory).lastPathComponent

  var html = """
    <!DOCTYPE html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>mixer-dist report: \(escapeHTML(name))</title>
    <style>\(reportStyle)</style>
    </head>
    <body>
    <h1>mixer-dist run <span class="run">\(escapeHTML(name))</span></h1>
    <p class="path">\(escapeHTML(runDirectory))</p>

    """
  html += "<h2>Summary</h2>\n"
  html += renderSummary(records: records, config: config, metrics: keys, hasTrain: hasTrain, hasEval: hasEval)
  html += "<h2>Curves</h2>\n<div class=\"plots\">\n"
  for plot in plots {
    html += "<figure>" + plot.svg(steps: 0...max(maximumStep, 1)) + "</figure>\n"
  }
  html += "</div>\n"
  html += renderConfusion(runDirectory: runDirectory)
  html += "<h2>Configuration</h2>\n"
  html += renderConfig(config)
  html += "<p class=\"footer\">Written by mixer-dist report, \(reportTimestamp()).</p>\n"
  html += "</body>\n</html>\n"
  return html
}

/// The summary table: steps, final loss, validation accuracy, time, throughput, record counts.
func renderSummary(
  records: [ReportRecord], config: [(key: String, value: String)]?, metrics keys: ValidationKeys, hasTrain: Bool,
  hasEval: Bool
) -> String {
  let train = records.filter { $0.kind == "train" }.sorted { $0.step < $1.step }
  let evaluations = records.filter { $0.kind == "eval" }.sorted { $0.step < $1.step }
  var rows = [(String, String)]()

  let lastStep = records.map(\.step).max() ?? 0
  if let planned = config?.first(where: { $0.key == "steps" })?.value {
    rows.append(("Steps", "\(lastStep) of \(planned)"))
  } else {
    rows.append(("Steps", "\(lastStep)"))
  }
  if let last = train.last(where: { $0.values["loss"] != nil }) {
    let text = last.values["loss"]!.map { formatNumber($0, digits: 4) } ?? "non-finite"
    rows.append(("Final train loss", "\(text) (step \(last.step))"))
  } else {
    rows.append(("Final train loss", hasTrain ? "not logged" : "no training records"))
  }
  let nonFinite = train.filter { $0.values["loss"] == .some(nil) }.count
  if nonFinite > 0 {
    rows.append(("Non-finite losses", "\(nonFinite) (gaps in the loss curve)"))
  }
  let primary = evaluations.compactMap { record -> (step: Int, value: Double)? in
    guard let value = record.values[keys.primary.key] ?? nil else { return nil }
    return (record.step, value)
  }
  if let best = primary.max(by: { $0.value < $1.value }), let last = primary.last {
    rows.append(("Best validation \(keys.primary.name)", "\(formatPercent(best.value)) (step \(best.step))"))
    var lastText = "\(formatPercent(last.value)) (step \(last.step))"
    if let lastRecord = evaluations.last(where: { $0.step == last.step }) {
      for metric in keys.others {
        if let value = lastRecord.values[metric.key] ?? nil {
          lastText += ", \(metric.name) \(formatPercent(value))"
        }
      }
      if let loss = lastRecord.values["val_loss"] ?? nil {
        lastText += ", loss \(formatNumber(loss, digits: 4))"
      }
      if let count = lastRecord.values["val_count"] ?? nil {
        lastText += ", \(formatNumber(count)) images"
      }
    }
    rows.append(("Last validation \(keys.primary.name)", lastText))
  } else {
    rows.append(("Validation", hasEval ? "no finite \(keys.primary.name)" : "no evaluations"))
  }
  if let seconds = train.compactMap({ $0.values["seconds"] ?? nil }).last {
    let exact = String(format: "%.1f s", seconds)
    rows.append(("Total time", "\(formatDuration(seconds)) (\(exact))"))
  }
  let rates = train.compactMap { $0.values["images_per_second"] ?? nil }
  if let last = rates.last {
    let median = rates.sorted()[rates.count / 2]
    let text = String(format: "median %.1f images/s, last %.1f", median, last)
    rows.append(("Throughput", text))
  }
  rows.append(("Records", "\(train.count) train, \(evaluations.count) eval"))

  var html = "<table class=\"summary\">\n"
  for (key, value) in rows {
    html += "<tr><th>\(escapeHTML(key))</th><td>\(escapeHTML(value))</td></tr>\n"
  }
  return html + "</table>\n"
}

/// The configuration, split over up to three side-by-side tables.
func renderConfig(_ config: [(key: String, value: String)]?) -> String {
  guard let config else { return "<p class=\"note\">No config.json in the run folder.</p>\n" }
  if config.isEmpty { return "<p class=\"note\">config.json is empty.</p>\n" }
  let columns = min(3, config.count)
  let perColumn = (config.count + columns - 1) / columns
  var html = "<div class=\"config\">\n"
  for start in stride(from: 0, to: config.count, by: perColumn) {
    html += "<table>\n"
    for row in config[start..<min(start + perColumn, config.count)] {
      html += "<tr><th>\(escapeHTML(row.key))</th><td>\(escapeHTML(row.value))</td></tr>\n"
    }
    html += "</table>\n"
  }
  return html + "</div>\n"
}

let reportStyle = """
  body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
    margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #222; background: #fff; }
  h1 { font-size: 22px; margin: 0 0 4px 0; font-weight: 600; }
  h1 .run { font-family: ui-monospace, Menlo, Consolas, monospace; }
  h2 { font-size: 17px; margin: 24px 0 8px 0; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
  .path, .footer, .note { color: #666; font-size: 13px; margin: 0; }
  .footer { margin-top: 24px; }
  table { border-collapse: collapse; font-size: 13px; }
  th, td { text-align: left; padding: 3px 12px 3px 0; vertical-align: top; }
  th { font-weight: 600; color: #444; white-space: nowrap; }
  td { font-variant-numeric: tabular-nums; word-break: break-word; }
  .summary td { font-size: 14px; }
  .config { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0 24px; }
  .config th { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: normal; }
  .config tr:nth-child(odd) { background: #f6f6f6; }
  .plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
  figure { margin: 0; border: 1px solid #e2e2e2; border-radius: 4px; }
  svg { display: block; width: 100%; height: auto; }
  svg text { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
  """

// MARK: - Line plots

/// One line of a plot.
struct PlotLine {
  var name: String
  var color: String
  var points: [PlotPoint]
}

/// A line plot over steps as inline SVG: the title and (for several lines) the legend above the
/// frame, axes with ticks and labels, markers where points are few, and `emptyMessage` when no
/// line has a finite point.
struct LinePlot {
  var title: String
  var yLabel: String
  var series: [PlotLine]
  /// Stretch the y range down (or up) to 0.
  var includesZero = false
  /// A fixed y range instead of one fitted to the data.
  var fixedRange: ClosedRange<Double>? = nil
  /// Tick labels as percentages (values in 0...1).
  var percent = false
  var emptyMessage: String

  static let width = 560.0, height = 320.0
  static let left = 72.0, right = 16.0, top = 34.0, bottom = 46.0

  /// The SVG of the plot with `steps` as its x range.
  func svg(steps: ClosedRange<Int>) -> String {
    let width = Self.width, height = Self.height
    let plotLeft = Self.left, plotRight = width - Self.right
    let plotTop = Self.top, plotBottom = height - Self.bottom
    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(Int(width)) \(Int(height))" \
      role="img" aria-label="\(escapeHTML(title))">
      <text x="\(coordinate(plotLeft))" y="21" font-size="15" font-weight="600" \
      fill="#222">\(escapeHTML(title))</text>

      """
    let finite = series.flatMap { $0.points.compactMap(\.value) }
    if series.count > 1 && !finite.isEmpty { svg += legend(right: plotRight, baseline: 21) }

    // x axis: steps, ticks at round numbers inside the range
    let xLower = Double(steps.lowerBound), xUpper = Double(steps.upperBound)
    func x(_ step: Double) -> Double {
      plotLeft + (step - xLower) / (xUpper - xLower) * (plotRight - plotLeft)
    }
    let xTicks = niceTicks(lower: xLower, upper: xUpper, count: 6, integers: true)
    for tick in xTicks.values where tick >= xLower - 1e-9 && tick <= xUpper + 1e-9 {
      let position = coordinate(x(tick))
      let label = formatTick(tick, step: xTicks.step)
      svg += line(position, coordinate(plotTop), position, coordinate(plotBottom), "#eee")
      svg += line(position, coordinate(plotBottom), position, coordinate(plotBottom + 5), "#555")
      svg += "<text x=\"\(position)\" y=\"\(coordinate(plotBottom + 18))\" "
      svg += "text-anchor=\"middle\" font-size=\"12\" fill=\"#444\">\(label)</text>\n"
    }
    svg += "<text x=\"\(coordinate((plotLeft + plotRight) / 2))\" y=\"\(coordinate(height - 8))\" "
    svg += "text-anchor=\"middle\" font-size=\"13\" fill=\"#333\">step</text>\n"

    if finite.isEmpty {
      svg += frame(plotLeft, plotTop, plotRight, plotBottom)
      svg += "<text x=\"\(coordinate((plotLeft + plotRight) / 2))\" "
      svg += "y=\"\(coordinate((plotTop + plotBottom) / 2))\" text-anchor=\"middle\" "
      svg += "font-size=\"15\" fill=\"#888\">\(escapeHTML(emptyMessage))</text>\n"
      return svg + "</svg>"
    }

    // y axis: fitted (or fixed) range widened to round tick values
    var yLower = finite.min()!, yUpper = finite.max()!
    if let fixedRange {
      yLower = min(yLower, fixedRange.lowerBound)
      yUpper = max(yUpper, fixedRange.upperBound)
    }
    if includesZero {
      yLower = min(yLower, 0)
      yUpper = max(yUpper, 0)
    }
    if yUpper - yLower <= abs(yUpper) * 1e-9 {
      let pad = yUpper == 0 ? 1 : abs(yUpper) * 0.1
      yLower = includesZero && yLower >= 0 ? yLower : yLower - pad
      yUpper += pad
    }
    let yTicks = niceTicks(lower: yLower, upper: yUpper, count: 5, integers: false)
    if fixedRange == nil {
      yLower = yTicks.values.first!
      yUpper = yTicks.values.last!
    }
    func y(_ value: Double) -> Double {
      plotBottom - (value - yLower) / (yUpper - yLower) * (plotBottom - plotTop)
    }
    // tiny or huge ticks share a power of ten, written once in the axis label
    let exponent = percent ? 0 : axisExponent(values: yTicks.values, step: yTicks.step)
    let scale = pow(10, Double(-exponent))
    for tick in yTicks.values where tick >= yLower - 1e-12 && tick <= yUpper + 1e-12 {
      let position = coordinate(y(tick))
      let label = percent
        ? formatPercent(tick, digits: 0) : formatTick(tick * scale, step: yTicks.step * scale)
      svg += line(coordinate(plotLeft), position, coordinate(plotRight), position, "#eee")
      svg += line(coordinate(plotLeft - 5), position, coordinate(plotLeft), position, "#555")
      svg += "<text x=\"\(coordinate(plotLeft - 8))\" y=\"\(position)\" text-anchor=\"end\" "
      svg += "dominant-baseline=\"middle\" font-size=\"12\" fill=\"#444\">\(label)</text>\n"
    }
    let axisLabel = exponent == 0 ? yLabel : "\(yLabel) (×10\(superscript(exponent)))"
    let middle = coordinate((plotTop + plotBottom) / 2)
    svg += "<text transform=\"translate(16 \(middle)) rotate(-90)\" text-anchor=\"middle\" "
    svg += "font-size=\"13\" fill=\"#333\">\(escapeHTML(axisLabel))</text>\n"
    svg += frame(plotLeft, plotTop, plotRight, plotBottom)

    // the lines: one path per run of finite points, markers when the points are few
    for line in series {
      var path = ""
      var segmentLength = 0
      var lonely = [PlotPoint]()  // points with no finite neighbour: only a marker shows them
      for (index, point) in line.points.enumerated() {
        guard let value = point.value else {
          segmentLength = 0
          continue
        }
        let command = segmentLength == 0 ? "M" : "L"
        path += "\(command)\(coordinate(x(Double(point.step)))) \(coordinate(y(value))) "
        segmentLength += 1
        let nextIsFinite = index + 1 < line.points.count && line.points[index + 1].value != nil
        if segmentLength == 1 && !nextIsFinite { lonely.append(point) }
      }
      if !path.isEmpty {
        svg += "<path d=\"\(path.dropLast())\" fill=\"none\" stroke=\"\(line.color)\" "
        svg += "stroke-width=\"2\" stroke-linejoin=\"round\"/>\n"
      }
      let finitePoints = line.points.filter { $0.value != nil }
      let markers = finitePoints.count <= 40 ? finitePoints : lonely
      for point in markers {
        let value = point.value!
        let valueText = percent ? formatPercent(value) : formatNumber(value, digits: 4)
        svg += "<circle cx=\"\(coordinate(x(Double(point.step))))\" "
        svg += "cy=\"\(coordinate(y(value)))\" r=\"3.5\" fill=\"\(line.color)\">"
        svg += "<title>\(escapeHTML(line.name)), step \(point.step): \(valueText)</title>"
        svg += "</circle>\n"
      }
    }
    return svg + "</svg>"
  }

  /// The lines' names and colours in a row ending at `right`, on the title's baseline.
  func legend(right: Double, baseline: Double) -> String {
    var svg = ""
    var end = right
    for line in series.reversed() {
      let empty = line.points.allSatisfy { $0.value == nil }
      let name = line.name + (empty ? " (none)" : "")
      // a rough text width: 7 units per character at font size 12
      let start = end - 26 - 7 * Double(name.count)
      let middle = coordinate(baseline - 4)
      svg += "<line x1=\"\(coordinate(start))\" y1=\"\(middle)\" x2=\"\(coordinate(start + 20))\" "
      svg += "y2=\"\(middle)\" stroke=\"\(line.color)\" stroke-width=\"2.5\"/>\n"
      svg += "<text x=\"\(coordinate(start + 25))\" y=\"\(coordinate(baseline))\" font-size=\"12\" "
      svg += "fill=\"\(empty ? "#999" : "#333")\">\(escapeHTML(name))</text>\n"
      end = start - 14
    }
    return svg
  }

  /// A straight line (coordinates already formatted).
  func line(_ x1: String, _ y1: String, _ x2: String, _ y2: String, _ color: String) -> String {
    "<line x1=\"\(x1)\" y1=\"\(y1)\" x2=\"\(x2)\" y2=\"\(y2)\" stroke=\"\(color)\"/>\n"
  }

  /// The plot area's border.
  func frame(_ left: Double, _ top: Double, _ right: Double, _ bottom: Double) -> String {
    "<rect x=\"\(coordinate(left))\" y=\"\(coordinate(top))\" "
      + "width=\"\(coordinate(right - left))\" height=\"\(coordinate(bottom - top))\" "
      + "fill=\"none\" stroke=\"#555\"/>\n"
  }
}

/// Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering lower...upper.
/// The values run from the largest tick at or below `lower` to the smallest at or above `upper`.
func niceTicks(lower: Double, upper: Double, count: Int, integers: Bool)
  -> (values: [Double], step: Double)
{
  let span = max(upper - lower, integers ? 1 : abs(upper) * 1e-9 + 1e-300)
  let rough = span / Double(max(count, 1))
  let magnitude = pow(10, (log10(rough)).rounded(.down))
  let residual = rough / magnitude
  let factor: Double =
    residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 2.5 ? 2.5 : residual <= 5 ? 5 : 10
  var step = factor * magnitude
  if integers { step = max(1, step.rounded()) }
  let first = (lower / step + 1e-9).rounded(.down)
  let last = (upper / step - 1e-9).rounded(.up)
  var values = [Double]()
  var index = first
  while index <= last && values.count < 100 {
    values.append(index * step)
    index += 1
  }
  return (values, step)
}

/// The decimals a tick step needs (0.25 → 2, 5 → 0).
func tickDecimals(step: Double) -> Int {
  var decimals = 0
  while decimals < 12 {
    let scaled = step * pow(10, Double(decimals))
    if abs(scaled - scaled.rounded()) < 1e-6 * max(1, scaled) { break }
    decimals += 1
  }
  return decimals
}

/// The power of ten an axis's labels share when plain labels would be long: ticks needing more
/// than 3 decimals (0.00025) or reaching a million; 0 otherwise.
func axisExponent(values: [Double], step: Double) -> Int {
  let largest = values.map { abs($0) }.max() ?? 0
  guard largest > 0, tickDecimals(step: step) > 3 || largest >= 1e6 else { return 0 }
  return Int(log10(largest).rounded(.down))
}

/// A tick label with as many decimals as `step` needs, the same for every tick of an axis.
func formatTick(_ value: Double, step: Double) -> String {
  if abs(value) < step * 1e-6 { return "0" }
  return String(format: "%.\(tickDecimals(step: step))f", value)
}

/// -3 → "⁻³".
func superscript(_ number: Int) -> String {
  let digits: [Character] = ["⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"]
  let text = String(number).map { $0 == "-" ? "⁻" : digits[Int(String($0))!] }
  return String(text)
}

/// A number for people: integers plainly, others with `digits` significant digits.
func formatNumber(_ value: Double, digits: Int = 6) -> String {
  guard value.isFinite else { return "\(value)" }
  if value == value.rounded() && abs(value) < 1e15 { return String(Int(value)) }
  return String(format: "%.\(digits)g", value)
}

/// 0.3712 → "37.12%".
func formatPercent(_ value: Double, digits: Int = 2) -> String {
  String(format: "%.\(digits)f%%", value * 100)
}

/// A coordinate with two decimals, trailing zeros dropped.
func coordinate(_ value: Double) -> String {
  var text = String(format: "%.2f", value)
  while text.hasSuffix("0") { text.removeLast() }
  if text.hasSuffix(".") { text.removeLast() }
  return text == "-0" ? "0" : text
}

/// Text made safe inside HTML (and SVG) elements and attribute values.
func escapeHTML(_ text: String) -> String {
  var escaped = ""
  escaped.reserveCapacity(text.count)
  for character in text {
    switch character {
    case "&": escaped += "&amp;"
    case "<": escaped += "&lt;"
    case ">": escaped += "&gt;"
    case "\"": escaped += "&quot;"
    case "'": escaped += "&#39;"
    default: escaped.append(character)
    }
  }
  return escaped
}

/// Now, as `2026-01-31 14:05 UTC`.
func reportTimestamp() -> String {
  let formatter = DateFormatter()
  formatter.locale = Locale(identifier: "en_US_POSIX")
  formatter.timeZone = TimeZone(identifier: "UTC")
  formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
  return formatter.string(from: Date())
}

/// The final evaluation's per-class accuracy and confusion matrix (`confusion.json`, written by
/// classification runs), or nothing when the run has none.
func renderConfusion(runDirectory: String) -> String {
  struct Confusion: Decodable {
    var step: Int
    var classes: [String]
    var confusion: [[Int]]
  }
  let path = (runDirectory as NSString).appendingPathComponent("confusion.json")
  guard let data = FileManager.default.contents(atPath: path),
    let table = try? JSONDecoder().decode(Confusion.self, from: data), table.confusion.count == table.classes.count
  else { return "" }
  let k = table.classes.count
  var html = "<h2>Per class (evaluation at step \(table.step))</h2>\n<table class=\"confusion\">\n"
  html += "<tr><th>true \\ predicted</th>" + table.classes.map { "<th>\(escapeHTML($0))</th>" }.joined()
    + "<th>accuracy</th></tr>\n"
  for i in 0..<k {
    let row = table.confusion[i]
    let total = row.reduce(0, +)
    let accuracy = total > 0 ? formatPercent(Double(row[i]) / Double(total)) : "–"
    html += "<tr><th>\(escapeHTML(table.classes[i]))</th>"
      + row.enumerated().map { j, n in j == i ? "<td class=\"hit\">\(n)</td>" : "<td>\(n)</td>" }.joined()
      + "<td>\(accuracy)</td></tr>\n"
  }
  return html + "</table>\n"
}
