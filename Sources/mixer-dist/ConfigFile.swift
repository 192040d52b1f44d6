// `--config FILE.yaml`: a YAML mapping whose keys are the command's flag names (without `--`).
// The file's settings are put in front of the command-line arguments, so any flag given on the
// command line overrides the file's value for that key (the last value of an option wins).

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
        fromFiles += try flags(fromFile: path)
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
  static func flags(fromFile path: String) throws -> [String] {
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
    return try flags(from: mapping, source: path)
  }

  /// The flags a mapping stands for: `key: value` → `--key=value`, `key: true` → `--key`.
  static func flags(from mapping: [String: Any], source path: String) throws -> [String] {
    var result: [String] = []
    for key in mapping.keys.sorted() {
      let value = mapping[key]!
      guard key.range(of: "^[a-z][a-z0-9-]*$", options: .regularExpression) != nil else {
        throw ConfigFileError("\(path): '\(key)' is not a flag name (use the names of --help, e.g. weight-decay)")
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
    }
    return result
  }
}

struct ConfigFileError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
