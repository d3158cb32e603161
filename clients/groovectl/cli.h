// groovectl/cli.h: groovectl's command line, parsed into an Invocation.
//
// Pure: no I/O, no globals, no gRPC, so that every rule is unit-tested
// (tests/unit/groovectl_cli_test.cc). Hand-rolled rather than absl flags:
// absl flags are process-global and know nothing of sub-commands, while
// groovectl has per-command flags (--volumes is only for inspect) and
// positional arguments (POOL COUNT), and must answer every mistake with
// exit code 2 and the usage of the command at hand. The grammar is small
// enough that a table-free parser of ~200 lines is the clearer code.
//
// Grammar:
//   groovectl [GLOBAL...] COMMAND [ARGS...]   (global flags may also follow
//                                            the command)
//   GLOBAL:  --addr HOST:PORT   --output table|json   --timeout DURATION
//            --tls-ca PEM   --tls-cert PEM   --tls-key PEM
//            --tls-server-name NAME   --token-file FILE   --help, -h
//            --version
//   pools
//   add POOL COUNT [--first-index N] [--info TEXT|@FILE]
//   remove POOL COUNT
//   reclaim POOL INDEX
//   inspect POOL [--volumes] [--verify]
//   health [--service NAME]
//   watch POOL [--interval DURATION] [--count N]
//   version
// Flags take `--flag VALUE` or `--flag=VALUE`; DURATION is absl's form
// ("500ms", "2s", "1m").

#ifndef GROOVE_CLIENTS_GROOVECTL_CLI_H_
#define GROOVE_CLIENTS_GROOVECTL_CLI_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace groove::ctl {

// Exit codes of groovectl.
inline constexpr int kExitOk = 0;
inline constexpr int kExitServerError = 1;  // the server answered an error
inline constexpr int kExitUsage = 2;        // bad flags, command or args
inline constexpr int kExitUnreachable = 3;  // no connection to the server
// An add, remove or reclaim cut off after it may have reached the server:
// it may have taken effect.
inline constexpr int kExitOutcomeUnknown = 4;

enum class Command {
  kPools,
  kAdd,
  kRemove,
  kReclaim,
  kInspect,
  kHealth,
  kWatch,
  kVersion
};
enum class OutputFormat { kTable, kJson };

// Invocation is one parsed command line. Fields a command does not take
// keep their defaults.
struct Invocation {
  // Global flags.
  std::string address = "127.0.0.1:50051";
  OutputFormat output = OutputFormat::kTable;
  absl::Duration timeout = absl::Seconds(10);  // positive
  // Security (groove::ClientSecurity's files, checked by the command, not
  // here: parsing does no I/O). There is deliberately no --token TOKEN:
  // a command line is readable by every user (ps, /proc/PID/cmdline).
  std::string tls_ca;           // --tls-ca
  std::string tls_cert;         // --tls-cert
  std::string tls_key;          // --tls-key
  std::string tls_server_name;  // --tls-server-name
  std::string token_file;       // --token-file
  // help: print Usage(command) on stdout and exit 0; `command` is unset
  // for the general usage.
  bool help = false;
  // version: print groovectl's build on stdout and exit 0 (--version;
  // `help` wins when both are given).
  bool version = false;
  std::optional<Command> command;  // set unless help or version without a
                                   // command

  // Positional arguments.
  std::string pool;    // add, remove, reclaim, inspect, watch
  uint64_t count = 0;  // add, remove: a decimal number (range: the server's)
  uint64_t index = 0;  // reclaim: a decimal number, 0 included (range: the
                       // server's)

  // Command flags.
  std::optional<uint64_t> first_index;  // add
  std::string info;      // add: TEXT, or "@FILE" (read by the command)
  std::string request_id;  // add: empty for a fresh one (checked by the
                           // server: a UUID)
  bool volumes = false;  // inspect
  bool verify = false;   // inspect
  std::string service;   // health
  absl::Duration interval = absl::Seconds(1);  // watch: positive
  std::optional<uint64_t> watch_count;         // watch --count: >= 1
};

// kAllCommands lists every command, in the order the usage shows them.
inline constexpr Command kAllCommands[] = {
    Command::kPools,   Command::kAdd,    Command::kRemove, Command::kReclaim,
    Command::kInspect, Command::kHealth, Command::kWatch,  Command::kVersion};

// ParseCommandLine parses `args` (argv without argv[0]).
// Errors: INVALID_ARGUMENT, with a one-line message naming the offending
// argument (unknown command or flag, missing or extra positional argument,
// missing or malformed value); the caller prints it with Usage() and exits
// with kExitUsage. Cost: O(args).
absl::StatusOr<Invocation> ParseCommandLine(
    const std::vector<std::string>& args);

// Usage returns the help text of `command`, or the general help when it
// is unset.
std::string Usage(std::optional<Command> command);

// CommandName returns the command's name as typed ("pools", "add", ...).
const char* CommandName(Command command);

}  // namespace groove::ctl

#endif  // GROOVE_CLIENTS_GROOVECTL_CLI_H_
