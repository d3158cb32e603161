// groovectl/cli.cc: see cli.h.

#include "cli.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace groove::ctl {
namespace {

struct CommandSpec {
  Command command;
  const char* name;
  int positionals;  // how many positional arguments it takes
  // operands names them for messages: "POOL", "POOL COUNT", "POOL INDEX".
  const char* operands;
  const char* synopsis;
  const char* details;
};

constexpr CommandSpec kCommands[] = {
    {Command::kPools, "pools", 0, "", "pools",
     "List every pool of the server with its summary: backing, volume size,\n"
     "volumes mapped of max (empty, in use), capacity and a fill bar.\n"},
    {Command::kAdd, "add", 2, "POOL COUNT",
     "add POOL COUNT [--first-index N] [--info TEXT|@FILE] [--request-id ID]",
     "Add COUNT volumes to POOL (one AddVolume call with a request_id;\n"
     "an attempt cut off after it may have reached the server is repeated\n"
     "with the same id, which the server answers with what the first did,\n"
     "also after a restart: the volumes are added once).\n"
     "  --first-index N   use indices [N, N+COUNT) instead of the lowest free\n"
     "  --info TEXT       store TEXT (0 to 480 bytes) in each volume header;\n"
     "                    @FILE reads it from FILE\n"
     "  --request-id ID   the request_id (a UUID; default: a fresh one): an\n"
     "                    add whose attempts all went unanswered (exit 4:\n"
     "                    the server gone for the whole --timeout) prints\n"
     "                    its id; the same add with that id later answers\n"
     "                    what the first did, also after a restart\n"
     "The deadline grows with the work: --timeout plus 8 s per GiB added;\n"
     "the repeats go on until it passes (one cut off while the server\n"
     "still makes it is answered ABORTED until the first is done).\n"
     "On a terminal (and not with --output json) a progress line shows the\n"
     "elapsed time on stderr.\n"},
    {Command::kRemove, "remove", 2, "POOL COUNT", "remove POOL COUNT",
     "Remove up to COUNT empty volumes from POOL (retried only when the\n"
     "server removed nothing: a repeat would remove more).\n"},
    {Command::kReclaim, "reclaim", 2, "POOL INDEX", "reclaim POOL INDEX",
     "Free the quarantined volume INDEX of POOL (one ReclaimVolume call;\n"
     "needs an admin token when the server has tokens): its memory goes\n"
     "back and the index can be added again. A volume is quarantined when\n"
     "a pop finds its header bad (inspect POOL --volumes lists it CORRUPT,\n"
     "with what is wrong). First make sure no data-plane process still\n"
     "uses it: the server cannot tell, and a process that writes there\n"
     "after the reclaim writes into the next volume added at INDEX (tmpfs)\n"
     "or may die of SIGBUS (hugetlbfs). Prints the index and what was\n"
     "wrong with its header. Exit 1 (FAILED_PRECONDITION) when INDEX holds\n"
     "no quarantined volume, e.g. already reclaimed: a repeat is harmless.\n"},
    {Command::kInspect, "inspect", 1, "POOL",
     "inspect POOL [--volumes] [--verify]",
     "Show POOL's summary and counters.\n"
     "  --volumes   also list every volume (index, state, info)\n"
     "  --verify    verify the pool's shared structure first (pauses\n"
     "              nobody; O(empty volumes)); exit 1 when it fails\n"},
    {Command::kHealth, "health", 0, "", "health [--service NAME]",
     "Ask grpc.health.v1.Health/Check. Exit 0 when SERVING, 1 when not\n"
     "(NOT_SERVING, or an unknown service), 3 when unreachable.\n"
     "  --service NAME   the service to check (default \"\": the server)\n"},
    {Command::kWatch, "watch", 1, "POOL",
     "watch POOL [--interval DURATION] [--count N]",
     "Redraw POOL's summary every DURATION (default 1s) until interrupted\n"
     "(Ctrl-C or SIGTERM, exit 0, also while a redraw waits for the\n"
     "server). With --output json, print one JSON object per line. Stops\n"
     "with exit 1 when its output cannot be written (a reader gone from\n"
     "the pipe under an ignored SIGPIPE).\n"
     "  --count N   stop after N redraws\n"},
    {Command::kVersion, "version", 0, "", "version",
     "Print groovectl's build (version, git revision, build type, gRPC,\n"
     "protobuf and Abseil versions), then the server's, which ListPools\n"
     "reports (with tokens: a reader token is enough). When the server's\n"
     "build cannot be learnt the line says `server: unknown`, the error\n"
     "follows on stderr, and the exit code is the call's (3 unreachable,\n"
     "1 e.g. UNAUTHENTICATED); a server too old to report it is exit 0.\n"
     "With --output json: {\"client\":{...},\"server\":{...} or null}.\n"
     "`groovectl --version` prints groovectl's build alone, calling no\n"
     "server.\n"},
};

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& spec : kCommands) {
    if (name == spec.name) return &spec;
  }
  return nullptr;
}

const CommandSpec& SpecOf(Command command) {
  for (const CommandSpec& spec : kCommands) {
    if (spec.command == command) return spec;
  }
  return kCommands[0];
}

absl::Status Bad(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// ParseNumber parses a decimal uint64, at least 1 when `positive`.
// Errors: INVALID_ARGUMENT "WHAT must be a non-negative integer, got
// 'TEXT'" ("a positive integer" when `positive`), or "WHAT is out of range
// (above 18446744073709551615), got 'TEXT'" for digits beyond 64 bits.
absl::StatusOr<uint64_t> ParseNumber(absl::string_view what,
                                     absl::string_view text,
                                     bool positive = false) {
  uint64_t value = 0;
  const bool digits =
      !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(c);
      });
  if (digits && !absl::SimpleAtoi(text, &value)) {
    return Bad(absl::StrCat(what, " is out of range (above ",
                            std::numeric_limits<uint64_t>::max(), "), got '",
                            text, "'"));
  }
  if (!digits || (positive && value == 0)) {
    return Bad(absl::StrCat(what, " must be a ",
                            positive ? "positive" : "non-negative",
                            " integer, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view what,
                                                     absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration() ||
      d == absl::InfiniteDuration()) {
    return Bad(absl::StrCat(what,
                            " must be a positive duration such as "
                            "500ms, 2s or 1m, got '",
                            text, "'"));
  }
  return d;
}

}  // namespace

const char* CommandName(Command command) { return SpecOf(command).name; }

std::string Usage(std::optional<Command> command) {
  if (command.has_value()) {
    const CommandSpec& spec = SpecOf(*command);
    return absl::StrCat(
        "usage: groovectl [--addr HOST:PORT] [--output "
        "table|json] [--timeout DURATION] ",
        spec.synopsis, "\n\n", spec.details);
  }
  std::string text =
      "usage: groovectl [--addr HOST:PORT] [--output table|json] "
      "[--timeout DURATION] COMMAND [ARGS...]\n\n"
      "Drive a groove-volumed server.\n\ncommands:\n";
  for (const CommandSpec& spec : kCommands) {
    absl::StrAppend(&text, "  ", spec.synopsis, "\n");
  }
  absl::StrAppend(
      &text,
      "\nglobal flags:\n"
      "  --addr HOST:PORT     server address (default 127.0.0.1:50051),\n"
      "                       or unix:PATH for a server on a unix socket\n"
      "  --output table|json  output format (default table); json is the\n"
      "                       proto3 JSON mapping of the response message\n"
      "  --timeout DURATION   deadline of each call, retries included\n"
      "                       (default 10s)\n"
      "  --tls-ca PEM         use TLS, trusting the CA certificates in PEM\n"
      "  --tls-cert PEM       with --tls-key: the client certificate for a\n"
      "  --tls-key PEM        server that requires mutual TLS (the key's\n"
      "                       mode as --token-file's)\n"
      "  --tls-server-name NAME  the name the server's certificate must\n"
      "                       carry (default: the host of --addr)\n"
      "  --token-file FILE    send the bearer token on FILE's first line\n"
      "                       (FILE's mode: 0600 or 0400, or 0640 or 0440\n"
      "                       when root owns it; without TLS only to a\n"
      "                       loopback address). There is no --token:\n"
      "                       command lines are visible in ps\n"
      "  --help, -h           this help; `groovectl COMMAND --help` for a\n"
      "                       command's\n"
      "  --version            groovectl's build (`groovectl version` adds\n"
      "                       the server's)\n"
      "\nexit codes: 0 ok, 1 server error (printed as `error: CODE: "
      "message`;\n"
      "also an answer that could not be written out: `error: cannot write\n"
      "the output: ...`, but 4 for an add, remove or reclaim),\n"
      "2 usage error (also a bad TLS or token file), 3 server unreachable\n"
      "(also a failed TLS handshake: no connection was made) or answering\n"
      "UNAVAILABLE or CANCELLED (draining, stopping, its add queue full:\n"
      "retry later), 4 an add, remove or reclaim cut off after it may have\n"
      "reached the server (a CANCELLED, or an UNAVAILABLE the server did\n"
      "not mark as changing nothing): it may have taken effect; look\n"
      "before repeating it (an add is repeated by groovectl with its\n"
      "request_id until its deadline passes, and is 4 only then); also\n"
      "an add, remove or reclaim made whose answer could not\n"
      "be written out.\n");
  return text;
}

absl::StatusOr<Invocation> ParseCommandLine(
    const std::vector<std::string>& args) {
  Invocation inv;
  std::vector<std::string> positionals;
  const CommandSpec* spec = nullptr;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") {
      inv.help = true;
      continue;
    }
    if (arg == "--version") {
      inv.version = true;
      continue;
    }
    // A negative number ("-1") is an argument, not a flag: COUNT's check
    // below then names it.
    const bool negative_number =
        arg.size() >= 2 && arg[0] == '-' &&
        std::all_of(arg.begin() + 1, arg.end(),
                    [](char c) { return absl::ascii_isdigit(c); });
    if (!absl::StartsWith(arg, "-") || arg == "-" || negative_number) {
      if (spec == nullptr) {
        spec = FindCommand(arg);
        if (spec == nullptr) {
          return Bad(absl::StrCat("unknown command '", arg, "'"));
        }
        inv.command = spec->command;
      } else {
        positionals.emplace_back(arg);
      }
      continue;
    }
    // A flag: --name=value or --name value.
    absl::string_view name = arg;
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = std::string(arg.substr(eq + 1));
    }
    auto command_is = [&](Command c) {
      return spec != nullptr && spec->command == c;
    };
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value.has_value()) return *inline_value;
      if (i + 1 >= args.size()) {
        return Bad(absl::StrCat("flag ", name, " needs a value"));
      }
      return args[++i];
    };
    auto boolean = [&](bool* out) -> absl::Status {
      if (inline_value.has_value()) {
        return Bad(absl::StrCat("flag ", name, " takes no value"));
      }
      *out = true;
      return absl::OkStatus();
    };
    absl::Status status;
    if (name == "--addr") {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return Bad("--addr must not be empty");
      inv.address = *v;
    } else if (name == "--output" || name == "-o") {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      if (*v == "table") {
        inv.output = OutputFormat::kTable;
      } else if (*v == "json") {
        inv.output = OutputFormat::kJson;
      } else {
        return Bad(
            absl::StrCat("--output must be table or json, got '", *v, "'"));
      }
    } else if (std::string* file = name == "--tls-ca"     ? &inv.tls_ca
                                   : name == "--tls-cert" ? &inv.tls_cert
                                   : name == "--tls-key"  ? &inv.tls_key
                                   : name == "--tls-server-name"
                                       ? &inv.tls_server_name
                                   : name == "--token-file" ? &inv.token_file
                                                            : nullptr;
               file != nullptr) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return Bad(absl::StrCat(name, " must not be empty"));
      *file = *v;
    } else if (name == "--timeout") {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      absl::StatusOr<absl::Duration> d = ParsePositiveDuration(name, *v);
      if (!d.ok()) return d.status();
      inv.timeout = *d;
    } else if (name == "--first-index" && command_is(Command::kAdd)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      absl::StatusOr<uint64_t> n = ParseNumber(name, *v);
      if (!n.ok()) return n.status();
      inv.first_index = *n;
    } else if (name == "--info" && command_is(Command::kAdd)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      inv.info = *v;
    } else if (name == "--request-id" && command_is(Command::kAdd)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return Bad("--request-id must not be empty");
      inv.request_id = *v;
    } else if (name == "--volumes" && command_is(Command::kInspect)) {
      status = boolean(&inv.volumes);
    } else if (name == "--verify" && command_is(Command::kInspect)) {
      status = boolean(&inv.verify);
    } else if (name == "--service" && command_is(Command::kHealth)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      inv.service = *v;
    } else if (name == "--interval" && command_is(Command::kWatch)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      absl::StatusOr<absl::Duration> d = ParsePositiveDuration(name, *v);
      if (!d.ok()) return d.status();
      inv.interval = *d;
    } else if (name == "--count" && command_is(Command::kWatch)) {
      absl::StatusOr<std::string> v = take_value();
      if (!v.ok()) return v.status();
      absl::StatusOr<uint64_t> n = ParseNumber(name, *v);
      if (!n.ok()) return n.status();
      if (*n == 0) return Bad("--count must be at least 1");
      inv.watch_count = *n;
    } else {
      return Bad(
          spec == nullptr
              ? absl::StrCat("unknown flag ", name,
                             " (command flags follow the command)")
              : absl::StrCat("unknown flag ", name, " for '", spec->name, "'"));
    }
    if (!status.ok()) return status;
  }
  if (inv.help || inv.version) return inv;
  if (spec == nullptr) return Bad("missing command");
  if (positionals.size() < static_cast<size_t>(spec->positionals)) {
    return Bad(absl::StrCat("'", spec->name, "' needs ", spec->operands,
                            ", got ", positionals.size(), " argument(s)"));
  }
  if (positionals.size() > static_cast<size_t>(spec->positionals)) {
    return Bad(absl::StrCat("unexpected argument '",
                            positionals[spec->positionals], "' for '",
                            spec->name, "'"));
  }
  if (spec->positionals >= 1) {
    inv.pool = positionals[0];
    if (inv.pool.empty()) return Bad("POOL must not be empty");
  }
  if (spec->positionals >= 2 && spec->command == Command::kReclaim) {
    // 0 is an index like any other.
    absl::StatusOr<uint64_t> n = ParseNumber("INDEX", positionals[1]);
    if (!n.ok()) return n.status();
    inv.index = *n;
  } else if (spec->positionals >= 2) {
    // The server refuses a count of 0 (INVALID_ARGUMENT, exit 1); it is a
    // usage error here, said before any connection.
    absl::StatusOr<uint64_t> n =
        ParseNumber("COUNT", positionals[1], /*positive=*/true);
    if (!n.ok()) return n.status();
    inv.count = *n;
  }
  return inv;
}

}  // namespace groove::ctl
