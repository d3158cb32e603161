// groovectl: the command line tool of groove-volumed. main only parses the
// command line (cli.h), runs the command (commands.h) and exits through
// ExitNow; `groovectl --help` prints the usage, `groovectl --version` the
// build.

#include <unistd.h>

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

namespace {

int Main(const std::vector<std::string>& args) {
  using namespace groove::ctl;
  absl::StatusOr<Invocation> inv = ParseCommandLine(args);
  if (!inv.ok()) {
    // Show the usage of the command when it was recognised.
    std::optional<Command> command;
    for (const std::string& a : args) {
      for (Command c : kAllCommands) {
        if (a == CommandName(c) && !command.has_value()) command = c;
      }
    }
    std::cerr << "error: " << inv.status().message() << "\n\n"
              << Usage(command);
    return kExitUsage;
  }
  if (inv->help) {
    std::cout << Usage(inv->command);
    return FlushOutput(std::cout, std::cerr) ? kExitOk : kExitServerError;
  }
  if (inv->version) {
    std::cout << ClientBuildLine() << "\n";
    return FlushOutput(std::cout, std::cerr) ? kExitOk : kExitServerError;
  }
  return Run(*inv, std::cout, std::cerr,
             Terminal{.out = isatty(STDOUT_FILENO) == 1,
                      .err = isatty(STDERR_FILENO) == 1});
}

}  // namespace

int main(int argc, char** argv) {
  groove::ctl::ExitNow(Main(std::vector<std::string>(argv + 1, argv + argc)));
}
