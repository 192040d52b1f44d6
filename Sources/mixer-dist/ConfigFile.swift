// `--config FILE.yaml`: a YAML mapping whose keys are the command's flag names (without `--`).
// The file's settings are put in front of the command-line arguments, so any flag given on the
// command line overrides the file's value for that key (the last value of an option wins).

import ArgumentParser
import Foundation
import Yams

enum ConfigFile {
  /// `arguments` with every `--config FILE` replaced by the flags the file holds, placed right
  /// after the subcommand name.
  static func expand(_ arguments: [String]) throws -> [String] {
    var rest: [String] = []
    var fromFiles: [String] = []
    var i = 0
    while i < arguments.count {
      let argument = arguments[i]
      if argument == "--config" || argument.hasPrefix("--config=") {
        let path: String
        if argument == "--config" {
          guard i + 1 < arguments.count else { throw ConfigFileError("--config needs a file name") }
          path = arguments[i + 1]
          i += 2
        } else {
          path = String(argument.dropFirst("--config=".count))
          i += 1
        }
        let subcommand = rest.first ?? arguments.first
        fromFiles += try flags(
          fromFile: path, validNames: flagNames(ofSubcommand: subcommand),
          valueProblem: { valueProblem(ofSubcommand: subcommand, argument: $0) })
        continue
      }
      rest.append(argument)
      i += 1
    }
    guard !fromFiles.isEmpty else { return rest }
    // the subcommand stays first; file flags next; command-line flags last (they win)
    return Array(rest.prefix(1)) + fromFiles + Array(rest.dropFirst())
  }

  /// The flags one YAML file stands for: `key: value` → `--key=value`, `key: true` → `--key`.
  static func flags(
    fromFile path: String, validNames: Set<String>? = nil, valueProblem: ((String) -> String?)? = nil
  ) throws -> [String] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
      throw ConfigFileError("cannot read config file \(path)")
    }
    let loaded: Any?
    do { loaded = try Yams.load(yaml: text) } catch {
      throw ConfigFileError("\(path) is not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
    }
    guard let mapping = loaded as? [String: Any] else {
      throw ConfigFileError("\(path) must be a mapping of flag names to values")
    }
    return try flags(from: mapping, source: path, validNames: validNames, valueProblem: valueProblem)
  }

  /// The flags a mapping stands for: `key: value` → `--key=value`, `key: true` → `--key`. Each
  /// flag is checked alone with `valueProblem` (nil: its value parses), so a bad value is
  /// reported with the file and the key it came from.
  static func flags(
    from mapping: [String: Any], source path: String, validNames: Set<String>? = nil,
    valueProblem: ((String) -> String?)? = nil
  ) throws -> [String] {
    var result: [String] = []
    for key in mapping.keys.sorted() {
      let value = mapping[key]!
      guard key.range(of: "^[a-z][a-z0-9-]*$", options: .regularExpression) != nil else {
        throw ConfigFileError("\(path): '\(key)' is not a flag name (use the names of --help, e.g. weight-decay)")
      }
      if let validNames, !validNames.contains(key) {
        let nearest = validNames.min { editDistance($0, key) < editDistance($1, key) }
        let hint = nearest.map { editDistance($0, key) <= max(2, key.count / 3) ? " (did you mean '\($0)'?)" : "" } ?? ""
        throw ConfigFileError("\(path): unknown key '\(key)'\(hint); keys are the flag names of --help")
      }
      switch value {
      case let flag as Bool:
        if flag { result.append("--\(key)") }
      case let text as String:
        result.append("--\(key)=\(text)")
      case let number as Int:
        result.append("--\(key)=\(number)")
      case let number as Double:
        result.append("--\(key)=\(number)")
      default:
        throw ConfigFileError("\(path): the value of '\(key)' must be a number, a string or true/false")
      }
      if let flag = result.last, flag.hasPrefix("--\(key)"), let problem = valueProblem?(flag) {
        throw ConfigFileError("\(path): key '\(key)': \(problem)")
      }
    }
    return result
  }
}

/// Why `argument` (one `--key=value` of a config file) does not parse for the subcommand `name`,
/// or nil when it does (or the subcommand takes no config file). Only an error that names the
/// flag counts, so a subcommand's other requirements are left to the real parse.
func valueProblem(ofSubcommand name: String?, argument: String) -> String? {
  guard let name = name == "study" ? "train" : name, flagNames(ofSubcommand: name) != nil else { return nil }
  let command: ParsableCommand
  do {
    command = try MixerDistCommand.parseAsRoot([name, argument])
  } catch {
    let message = MixerDistCommand.message(for: error)
    let flag = String(argument.prefix { $0 != "=" })
    guard message.contains(flag) else { return nil }
    return message.split(separator: "\n").first.map(String.init) ?? message
  }
  // values the flags' own types take as text (decay, crop ranges, warm-up, ...): every other
  // setting is a default here, so an error is this value's
  guard let train = command as? Train else { return nil }
  do {
    _ = try train.parsedConfig()
    _ = try train.warmupLength
    return nil
  } catch {
    return "\(error)"
  }
}

/// The long flag names of a subcommand (`train` → lr, weight-decay, ...), read off its
/// properties as swift-argument-parser names them; nil for an unknown subcommand.
func flagNames(ofSubcommand name: String?) -> Set<String>? {
  switch name {
  case "train", "study": return flagNames(Train()).union(flagNames(ModelOptions()))
  case "bench": return flagNames(Bench()).union(flagNames(ModelOptions()))
  default: return nil
  }
}

/// The flag names of one argument group's properties (camelCase → kebab-case).
func flagNames(_ arguments: some ParsableArguments) -> Set<String> {
  var names: Set<String> = []
  for child in Mirror(reflecting: arguments).children {
    guard var label = child.label, label.hasPrefix("_"), !(String(describing: type(of: child.value)).hasPrefix("OptionGroup")) else { continue }
    label.removeFirst()
    var kebab = ""
    for character in label {
      if character.isUppercase { kebab += "-" + character.lowercased() } else { kebab.append(character) }
    }
    names.insert(kebab)
  }
  return names
}

/// Edit distance with adjacent transpositions (optimal string alignment), for "did you mean".
func editDistance(_ a: String, _ b: String) -> Int {
  let a = Array(a), b = Array(b)
  if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
  var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
  for i in 0...a.count { d[i][0] = i }
  for j in 0...b.count { d[0][j] = j }
  for i in 1...a.count {
    for j in 1...b.count {
      d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
      if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
    }
  }
  return d[a.count][b.count]
}

struct ConfigFileError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
