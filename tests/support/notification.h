// tests/support/notification.h: a one-shot event one thread signals and
// others wait for, like absl::Notification, but built on std::mutex and
// std::condition_variable.
//
// Why not absl::Notification: Debian's Abseil is not built with
// -fsanitize=thread, so ThreadSanitizer cannot see it order the notifier's
// writes before the waiter's reads, and reports a race on whatever the
// event hands over (e.g. a gRPC callback's status). std::mutex goes
// through pthread, which ThreadSanitizer intercepts.
//
// Example:
//   Notification done;
//   grpc::Status status;
//   stub->async()->AddVolume(&context, &request, &response,
//                            [&](grpc::Status s) {
//                              status = std::move(s);
//                              done.Notify();
//                            });
//   ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
//   EXPECT_TRUE(status.ok());  // written before Notify: safe to read

#ifndef GROOVE_TESTS_SUPPORT_NOTIFICATION_H_
#define GROOVE_TESTS_SUPPORT_NOTIFICATION_H_

#include <condition_variable>
#include <mutex>

#include "absl/time/time.h"

namespace groove::testing {

class Notification {
 public:
  // Notify sets the event and wakes every waiter. REQUIRES: not yet
  // notified (as absl::Notification).
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }

  // HasBeenNotified returns whether Notify was called; when true, what the
  // notifier wrote before Notify is visible to the caller.
  bool HasBeenNotified() {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }

  // WaitForNotificationWithTimeout waits until Notify is called or
  // `timeout` passes; returns whether it was notified.
  bool WaitForNotificationWithTimeout(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return notified_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;  // guarded by mu_
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_NOTIFICATION_H_
