// tests/support/stall_fifo.h: the FIFO behind groove-volumed's
// --testonly_stall_add_fifo and --testonly_stall_verify_fifo hooks, which
// park each add inside its allocation (each verify inside its walk) until
// a byte arrives (the server logs event=testonly_stall_add_wait,
// event=testonly_stall_verify_wait, when one is parked).
//
// Example:
//   TempDir dir;
//   StallFifo fifo(dir);
//   auto server = ServerProcess::Start(
//       {..., "--testonly_stall_add_fifo=" + fifo.path()});
//   ... start an add; server->WaitForLog("event=testonly_stall_add_wait");
//   fifo.Release(1);  // the parked add proceeds

#ifndef GROOVE_TESTS_SUPPORT_STALL_FIFO_H_
#define GROOVE_TESTS_SUPPORT_STALL_FIFO_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "support/temp_dir.h"

namespace groove::testing {

// StallFifo is the FIFO the server's stalled allocations (or verifies)
// read from: each byte written releases one of them.
class StallFifo {
 public:
  explicit StallFifo(const TempDir& dir) : path_(dir.path() + "/stall.fifo") {
    EXPECT_EQ(mkfifo(path_.c_str(), 0600), 0);
  }
  ~StallFifo() {
    if (fd_ >= 0) close(fd_);
  }
  StallFifo(const StallFifo&) = delete;
  StallFifo& operator=(const StallFifo&) = delete;

  const std::string& path() const { return path_; }

  // Release lets `count` stalled allocations (or verifies) proceed. The server
  // holds the FIFO open for reading, so opening it for writing does not block.
  void Release(int count) {
    if (fd_ < 0) fd_ = open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
    const std::string bytes(static_cast<size_t>(count), 'x');
    ASSERT_EQ(write(fd_, bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_STALL_FIFO_H_
