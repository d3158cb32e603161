// groove/server/stop_signals.h: SIGTERM and SIGINT, the server's stop
// signals, and SIGHUP, its reload signal, received for the whole process on
// a thread of their own, from before start-up to the exit.
//
// Why a thread, and why from the start: start-up can take minutes (adding
// initial volumes on hugepages takes 0.5-4 s per GiB), and a stop signal
// that nobody reads until the server serves makes `docker stop`, `kubectl
// delete pod` and Ctrl-C look hung, then lets the server bind and serve for
// a moment before it stops. Here every signal is logged when it arrives
// (`event=signal signal=SIGTERM phase=starting`), and start-up polls
// stop_requested() at its safe points (VolumeServer::Options::
// stop_requested) and stops there.
//
// SIGHUP is received on the same thread but stops nothing: it asks for the
// credential files to be read again at once (OnHangup; the server's
// CredentialsReloader), as daemons conventionally reload on it. Before,
// its default action killed the server mid-request. It is logged like the
// others, with what it did (`event=signal signal=SIGHUP phase=...
// action=reload_credentials|none`), and counts as no stop signal.
//
// Each stop signal read is counted and logged on its own (the drain grace ends
// on the second, WaitForSignals). The kernel still merges a signal sent
// again while the first of its kind is pending (unread): a SIGTERM and a
// SIGINT are two, two SIGTERMs in the same instant may be one.
//
// Example (main.cc):
//   StopSignals::BlockInThisThread();  // first thing: before any thread
//   auto signals = StopSignals::Start();
//   options.stop_requested = [s = signals->get()] {
//     return s->stop_requested();
//   };
//   auto server = VolumeServer::Create(options);  // CANCELLED once stopped
//   if (!(*signals)->EnterPhase(StopSignals::Phase::kServing)) return 0;
//   (*server)->Start();
//   (*signals)->WaitForSignals(1, absl::InfiniteDuration());

#ifndef GROOVE_SERVER_STOP_SIGNALS_H_
#define GROOVE_SERVER_STOP_SIGNALS_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace groove::server {

class StopSignals {
 public:
  // Phase is what the server is doing, logged with each signal.
  enum class Phase {
    kStarting,  // opening pools and adding initial volumes; nothing bound
    kServing,   // bound and serving
    kDraining,  // answering UNAVAILABLE during --drain_grace
    kStopping,  // grpc::Server::Shutdown and after
  };

  // PhaseName returns "starting", "serving", "draining" or "stopping".
  static absl::string_view PhaseName(Phase phase);

  // BlockInThisThread blocks SIGTERM, SIGINT and SIGHUP in the calling
  // thread.
  // REQUIRES: called before the process creates any thread, so that every
  // thread inherits the mask and no thread has the signals delivered to it
  // (they then wait for Start's thread, even those sent before Start).
  static void BlockInThisThread();

  // Start starts the thread that receives SIGTERM, SIGINT and SIGHUP
  // (through a signalfd), in phase kStarting. Signals already pending are
  // received at once. REQUIRES: BlockInThisThread was called first; at most one
  // StopSignals exists at a time. Errors: INTERNAL when signalfd or
  // eventfd fails (the message says which).
  static absl::StatusOr<std::unique_ptr<StopSignals>> Start();

  // Stops and joins the receiving thread. Signals that arrive afterwards
  // stay pending (blocked).
  ~StopSignals();

  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // OnHangup makes `reload` what each later SIGHUP runs, on the receiving
  // thread (null: a SIGHUP does nothing but log). `reload` returns whether
  // it had anything to reload (logged as action=reload_credentials or
  // action=none). REQUIRES: `reload` returns soon (it only wakes another
  // thread), and stays valid until OnHangup(nullptr) or this object's
  // destruction. Thread safety: any thread; takes the mutex the receiving
  // thread holds while it reads the handler.
  void OnHangup(std::function<bool()> reload);

  // stop_requested says whether a stop signal has been received. Thread safety:
  // any thread; wait-free (one acquire load).
  bool stop_requested() const {
    // Acquire: pairs with the receiving thread's release store, though
    // callers act on the flag alone and read nothing it publishes.
    return stop_requested_.load(std::memory_order_acquire);
  }

  // EnterPhase moves to `next`, the phase logged with later signals.
  // Moving to kServing is refused (returns false, the phase stays
  // kStarting) when a signal has already been received, so that a server
  // told to stop while it started never binds; every other move succeeds.
  // Thread safety: any thread; takes a mutex the receiving thread holds
  // only to count a signal.
  bool EnterPhase(Phase next);

  // WaitForSignals blocks until `count` stop signals in all have been
  // received
  // (true) or `timeout` has passed (false). absl::InfiniteDuration() waits
  // for ever. Thread safety: any thread.
  bool WaitForSignals(int count, absl::Duration timeout);

 private:
  StopSignals(int signal_fd, int wake_fd);
  void Receive();  // the receiving thread

  const int signal_fd_;  // signalfd of SIGTERM, SIGINT and SIGHUP
  const int wake_fd_;    // eventfd: written by the destructor to end Receive
  std::atomic<bool> stop_requested_{false};
  // std::mutex, not absl::Mutex: Debian's Abseil is not instrumented for
  // ThreadSanitizer, which would not see it order the fields below.
  std::mutex mu_;
  std::condition_variable received_;  // notified on each signal
  Phase phase_ = Phase::kStarting;    // guarded by mu_
  int count_ = 0;                     // stop signals received; guarded by mu_
  std::function<bool()> on_hangup_;   // guarded by mu_
  std::thread thread_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_STOP_SIGNALS_H_
