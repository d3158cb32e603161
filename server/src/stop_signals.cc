#include "groove/server/stop_signals.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "groove/server/log.h"

namespace groove::server {
namespace {

// The signals the receiving thread takes: the stop signals and SIGHUP.
sigset_t ReceivedSignalSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

absl::string_view SignalName(uint32_t signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
  }
  return "unknown";
}

}  // namespace

absl::string_view StopSignals::PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kStarting:
      return "starting";
    case Phase::kServing:
      return "serving";
    case Phase::kDraining:
      return "draining";
    case Phase::kStopping:
      return "stopping";
  }
  return "unknown";
}

void StopSignals::BlockInThisThread() {
  const sigset_t set = ReceivedSignalSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

absl::StatusOr<std::unique_ptr<StopSignals>> StopSignals::Start() {
  const sigset_t set = ReceivedSignalSet();
  const int signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (signal_fd < 0) {
    return absl::InternalError(absl::StrCat(
        "signalfd(SIGTERM, SIGINT, SIGHUP): ", std::strerror(errno)));
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int error = errno;
    close(signal_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(error)));
  }
  std::unique_ptr<StopSignals> signals(new StopSignals(signal_fd, wake_fd));
  signals->thread_ = std::thread([s = signals.get()] { s->Receive(); });
  return signals;
}

StopSignals::StopSignals(int signal_fd, int wake_fd)
    : signal_fd_(signal_fd), wake_fd_(wake_fd) {}

StopSignals::~StopSignals() {
  const uint64_t one = 1;
  while (write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread_.join();
  close(wake_fd_);
  close(signal_fd_);
}

void StopSignals::Receive() {
  pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Log(LogLevel::kError, "signal_wait_failed",
          {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;  // the destructor
    if (fds[0].revents == 0) continue;
    signalfd_siginfo info{};
    const ssize_t n = read(signal_fd_, &info, sizeof(info));
    if (n != static_cast<ssize_t>(sizeof(info))) continue;  // EINTR, EAGAIN
    if (info.ssi_signo == SIGHUP) {
      // Under the mutex, so that OnHangup(nullptr) returns only once no
      // handler runs; the handler only wakes the reloader.
      std::lock_guard<std::mutex> lock(mu_);
      const bool reloading = on_hangup_ && on_hangup_();
      Log(LogLevel::kInfo, "signal",
          {{"signal", "SIGHUP"},
           {"phase", PhaseName(phase_)},
           {"from_pid", info.ssi_pid},
           {"action", reloading ? "reload_credentials" : "none"}});
      continue;
    }
    {
      // The line is written under the mutex, before anyone can act on the
      // signal: it names the phase EnterPhase cannot change meanwhile, and
      // it comes before every line the stop causes.
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
      Log(LogLevel::kInfo, "signal",
          {{"signal", SignalName(info.ssi_signo)},
           {"phase", PhaseName(phase_)},
           {"from_pid", info.ssi_pid}});
      // Release: see stop_requested().
      stop_requested_.store(true, std::memory_order_release);
    }
    received_.notify_all();
  }
}

void StopSignals::OnHangup(std::function<bool()> reload) {
  std::lock_guard<std::mutex> lock(mu_);
  on_hangup_ = std::move(reload);
}

bool StopSignals::EnterPhase(Phase next) {
  std::lock_guard<std::mutex> lock(mu_);
  if (next == Phase::kServing && count_ > 0) return false;
  phase_ = next;
  return true;
}

bool StopSignals::WaitForSignals(int count, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto enough = [&] { return count_ >= count; };
  if (timeout == absl::InfiniteDuration()) {
    received_.wait(lock, enough);
    return true;
  }
  return received_.wait_for(lock, absl::ToChronoNanoseconds(timeout), enough);
}

}  // namespace groove::server
