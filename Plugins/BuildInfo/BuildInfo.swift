// The build-info plugin: before every build of the mixer-dist executable, tools/build-info.sh
// writes BuildInfo.swift with the git commit the binary is built from (see that script for where
// the commit comes from in a clone, a `git archive` tarball, or a tree without either).

import PackagePlugin

@main
struct BuildInfo: BuildToolPlugin {
  func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
    let output = context.pluginWorkDirectory.appending("generated")
    return [
      .prebuildCommand(
        displayName: "Recording the commit of this build (tools/build-info.sh)",
        executable: Path("/bin/sh"),
        arguments: [
          context.package.directory.appending("tools", "build-info.sh").string,
          context.package.directory.string, output.string,
        ],
        outputFilesDirectory: output)
    ]
  }
}
