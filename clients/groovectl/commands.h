// groovectl/commands.h: runs a parsed groovectl Invocation against a server
// through groove::VolumePoolClient and prints the result.
//
// Output: tables for people (sizes in KiB/MiB/GiB, fill bars), or with
// --output json the response message in the proto3 JSON mapping
// (google::protobuf::util::MessageToJsonString, original field names,
// default values printed; 64-bit integers are JSON strings as the mapping
// says), one object per line. `inspect --volumes` prints one
// InspectResponse holding every page's volumes (next_page_token empty);
// a server whose pages would never end (a token repeated, a volume listed
// again, more pages than the pool can have: groove::InspectPageGuard)
// stops it with `error: INTERNAL: the server misbehaves: ...` and exit 1.
// Errors go to stderr as `error: <GRPC_CODE>: <message>`.
// `version` prints groovectl's build (groove/build_info.h) and the
// server's, from ListPools (`server: unknown` when the call fails, with
// the call's exit code; exit 0 from a server too old to report it).

#ifndef GROOVE_CLIENTS_GROOVECTL_COMMANDS_H_
#define GROOVE_CLIENTS_GROOVECTL_COMMANDS_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli.h"
#include "groove/v1/volume_pool.pb.h"

namespace groove::ctl {

// Terminal says which of groovectl's streams are terminals (progress lines
// and screen clearing only go to terminals).
struct Terminal {
  bool out = false;
  bool err = false;
};

// Run runs `inv` and returns groovectl's exit code (kExitOk,
// kExitServerError, kExitUsage, kExitUnreachable, kExitOutcomeUnknown).
// What the command printed on `out` is flushed (FlushOutput): a command
// that succeeded but whose output could not be written (a full disk, a
// reader gone from the pipe) returns kExitServerError, saying so on
// `err`, or kExitOutcomeUnknown for an add, remove or reclaim (made, its
// answer lost: look before repeating it); a failed command keeps its own
// code.
// REQUIRES: inv came from ParseCommandLine, inv.command is set, !inv.help;
// `out` and `err` live until the process ends (std::cout, std::cerr).
// `watch` blocks SIGINT and SIGTERM in the calling thread (before any gRPC
// thread starts, so they inherit the mask) and waits for them on a thread
// of its own, which stops the watch between redraws (Run returns
// kExitOk) and, while a redraw's call waits for the server (which no
// call of the client can be made to stop), ends the process itself with
// kExitOk (ExitNow): call Run from the main thread.
int Run(const Invocation& inv, std::ostream& out, std::ostream& err,
        Terminal terminal);

// CallTarget is what ReportCallError needs to know of the failed call's
// client.
struct CallTarget {
  std::string address;     // --addr
  bool connected = false;  // the channel was READY after the call
  bool tls = false;        // --tls-ca given
  bool client_certificate = false;  // --tls-cert (and --tls-key) given
  bool token = false;               // --token-file given
};

// ReportCallError prints `status` to `err` as `error: <GRPC_CODE>:
// <message>`, plus a line saying what it means where that helps, and
// returns groovectl's exit code for it:
//   kExitOutcomeUnknown (4): OutcomeUnknown(status): an add, remove or
//     reclaim cut off after it may have reached the server (it may have taken
//     effect); checked first, so such an UNAVAILABLE or CANCELLED is not 3.
//   kExitUnreachable (3): UNAVAILABLE (with `connected`: the server
//     answered that it cannot serve the call now, e.g. draining or a full
//     add queue; without: it could not be reached, with a hint when the
//     TLS handshake failed that names the credential gRPC's message
//     blames: --tls-ca (the server's certificate did not verify),
//     --tls-server-name (its names), or --tls-cert and --tls-key (the
//     server closed the connection in the handshake: a mutual-TLS server
//     without, or refusing, the client's certificate));
//     DEADLINE_EXCEEDED without a connection;
//     CANCELLED, which only the server's side can cause (groovectl never
//     cancels its own calls): a server shutting down under the call.
//   kExitServerError (1): every other code (UNAUTHENTICATED without a
//     token, with a hint to give --token-file).
// Cost: O(message).
int ReportCallError(const absl::Status& status, const CallTarget& target,
                    std::ostream& err);

// FlushOutput flushes `out` and says whether everything written to it
// so far was written out. When not, it prints `error: cannot write the
// output: <strerror>` (e.g. "No space left on device", "Broken pipe"
// under an ignored SIGPIPE) to `err`. Cost: the flush.
bool FlushOutput(std::ostream& out, std::ostream& err);

// ExitNow flushes stdout and stderr and ends the process with `code`
// without running atexit handlers or static destructors (std::_Exit).
//
// Why not return from main: gRPC 1.51's EventEngine pool threads are
// detached, and grpc_shutdown (run when the last channel goes) waits only
// until each has counted itself out of the pool, not until it has exited.
// A pool thread that made a TLS handshake (a reconnection after a failed
// one runs there: a wrong --tls-server-name, or no --tls-cert for a mutual
// TLS server) still has OpenSSL's per-thread destructor to run. If it is
// descheduled at that point (a loaded machine), exit() runs OpenSSL's
// atexit cleanup (OPENSSL_cleanup, which frees and clears OpenSSL's locks)
// concurrently with it, and the thread dies on a NULL or freed lock:
// SIGSEGV in pthread_rwlock_wrlock, after groovectl had printed its whole
// answer. OpenSSL requires that no other thread use it during
// OPENSSL_cleanup; a process cannot join gRPC's detached threads, so
// groovectl runs no exit-time teardown at all. It needs none: its output
// is flushed here, and it holds no other state that outlives the process.
// Thread safety: may be called from any thread (watch's signal thread
// does), once.
[[noreturn]] void ExitNow(int code);

// ClientBuildLine returns groovectl's build on one line, as --version
// prints it: "groovectl 0.1.0 (revision 3561dfd, ...)" (BuildLine).
std::string ClientBuildLine();

// HumanBytes formats a byte count with binary units: "0 B", "512 B",
// "4 KiB", "1.5 GiB" (at most one decimal, dropped when zero).
std::string HumanBytes(uint64_t bytes);

// PrintPools prints `pools`'s table (one row per served pool, with a fill
// bar), then one "QUARANTINED NAME: REASON" line per quarantined pool.
void PrintPools(const v1::ListPoolsResponse& response, std::ostream& out);

// PrintSummary prints a pool's summary as a two-column table (backing,
// volumes, a fill bar, capacity, volumes in quarantine and reclaimed,
// counters, ...), followed by `extra` rows
// of two cells (e.g. a verify result) aligned with it. The capacity row
// names the memory of removed volumes still being given back, when there
// is any (releasing_bytes: a remove beside an allocation leaves its punch
// to that allocation). A "give-back failed" row follows the counters when
// the server could not give some removed volumes' memory back
// (volumes_not_given_back), and only then.
void PrintSummary(const v1::PoolSummary& p, std::ostream& out,
                  const std::vector<std::vector<std::string>>& extra = {});

// FillBar draws `width` cells: '#' for in-use volumes, '=' for empty
// ones, '.' for unused slots, out of max_volumes, e.g. "[##===.....]".
std::string FillBar(uint64_t in_use, uint64_t empty, uint64_t max_volumes,
                    int width);

}  // namespace groove::ctl

#endif  // GROOVE_CLIENTS_GROOVECTL_COMMANDS_H_
