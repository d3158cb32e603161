// groovectl: the command line tool of groove-volumed. main only parses the
// command line (cli.h) and runs the command (commands.h); `groovectl
// --help` prints the usage.

#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

int main(int argc, char** argv) {
  using namespace groove::ctl;
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<Invocation> inv = ParseCommandLine(args);
  if (!inv.ok()) {
    // Show the usage of the command when it was recognised.
    std::optional<Command> command;
    for (const std::string& a : args) {
      for (Command c : {Command::kPools, Command::kAdd, Command::kRemove,
                        Command::kInspect, Command::kHealth, Command::kWatch}) {
        if (a == CommandName(c) && !command.has_value()) command = c;
      }
    }
    std::cerr << "error: " << inv.status().message() << "\n\n"
              << Usage(command);
    return kExitUsage;
  }
  if (inv->help) {
    std::cout << Usage(inv->command);
    return kExitOk;
  }
  return Run(*inv, std::cout, std::cerr,
             Terminal{.out = isatty(STDOUT_FILENO) == 1,
                      .err = isatty(STDERR_FILENO) == 1});
}
