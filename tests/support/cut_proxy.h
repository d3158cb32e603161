// tests/support/cut_proxy.h: a TCP proxy on loopback between a test's
// client and a server, which the test can cut: every connection through
// it closes at once, as if the network broke, and new ones are refused
// (accepted and closed) until the test resumes it, towards the same
// server or a restarted one on another port. It loses the answer of a
// call the server has received, at an instant the test chooses, with no
// hook in the server or the client.
//
// A call the server finishes at once (one that no stall hook parks) is
// lost by holding the answers first: after HoldAnswers the bytes from the
// server are read and kept, never forwarded, while the client's still
// reach the server; the server makes the change, its answer waits in the
// proxy, and Cut then closes the connections, dropping what was held.
//
// Example:
//   CutProxy proxy(server->grpc_address());
//   ClientOptions options;
//   options.address = proxy.address();
//   ... start a call; wait until the server has it (its log) ...
//   proxy.Cut();  // the client sees the connection break
//   ... restart the server ...
//   proxy.Resume(restarted->grpc_address());
// or, for a call the server finishes at once:
//   ... a call through the proxy, so that the channel is READY ...
//   proxy.HoldAnswers();
//   ... start the call; wait until the server has made it (its log) ...
//   proxy.Cut();  // the answer never reaches the client
//
// It forwards bytes and knows nothing of HTTP/2: a test that holds the
// answers sees to it that the client needs none of them to send its call
// (a connected, READY channel: a client that must first connect or probe
// would wait for the held bytes instead). Two threads per connection, one
// per direction, plus one that accepts.
//
// Thread safety: Cut, Resume and HoldAnswers may be called from any thread,
// concurrently with each other and with the traffic (one mutex orders them,
// and a second per connection orders HoldAnswers with that connection's
// forwarding). The destructor must not race them.

#ifndef GROOVE_TESTS_SUPPORT_CUT_PROXY_H_
#define GROOVE_TESTS_SUPPORT_CUT_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace groove::testing {

class CutProxy {
 public:
  // CutProxy listens on 127.0.0.1 port 0 and forwards each connection to
  // `target`: "127.0.0.1:PORT" (any numeric IPv4 "HOST:PORT") or
  // "unix:PATH". A failed set-up is a test failure, and address() is then
  // "".
  explicit CutProxy(std::string target) : target_(std::move(target)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 ||
        bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listen_fd_, 64) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
            0) {
      ADD_FAILURE() << "CutProxy: cannot listen: " << std::strerror(errno);
      return;
    }
    address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~CutProxy() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    // Wakes the acceptor's accept() (it then fails with EINVAL).
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    Cut();
    if (listen_fd_ >= 0) close(listen_fd_);
  }

  CutProxy(const CutProxy&) = delete;
  CutProxy& operator=(const CutProxy&) = delete;

  // address is where clients connect: "127.0.0.1:PORT".
  const std::string& address() const { return address_; }

  // Cut closes every connection (both of its sockets: the client sees its
  // connection end) and refuses new ones until Resume. Returns once they
  // are closed. It ends HoldAnswers: the bytes held are dropped (the
  // client never gets them), and the connections made after Resume
  // forward both ways.
  void Cut() {
    std::vector<std::unique_ptr<Connection>> cut;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cutting_ = true;
      holding_ = false;
      cut.swap(connections_);
    }
    for (const std::unique_ptr<Connection>& c : cut) c->Close();
  }

  // HoldAnswers stops forwarding the server's bytes, on every connection
  // open now and every new one, until the next Cut: from its return on,
  // what the server sends is read and kept in memory (so the server's
  // writes never block), and the client receives nothing more; what the
  // client sends still reaches the server. Returns once no connection is
  // forwarding (a send to the client in progress has finished).
  void HoldAnswers() {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = true;
    for (const std::unique_ptr<Connection>& c : connections_) c->Hold();
  }

  // Resume forwards new connections again, to `target`.
  void Resume(std::string target) {
    std::lock_guard<std::mutex> lock(mu_);
    target_ = std::move(target);
    cutting_ = false;
  }

 private:
  // Connection is one client connection and its connection to the
  // target, with a pump thread per direction.
  struct Connection {
    int client_fd = -1;
    int server_fd = -1;
    std::thread to_server;
    std::thread to_client;
    // mu is held by to_client across each forward (the check of `holding`
    // and the send), so that Hold returns only when none is in progress.
    std::mutex mu;
    bool holding = false;  // guarded by mu: keep the server's bytes
    std::string held;      // guarded by mu: the server's bytes kept

    // Start starts the pumps. REQUIRES: called once; `holding` set (or not)
    // before it.
    void Start() {
      to_server = std::thread([this] { Pump(client_fd, server_fd, false); });
      to_client = std::thread([this] { Pump(server_fd, client_fd, true); });
    }
    // Hold makes to_client keep what it reads from now on (see HoldAnswers).
    void Hold() {
      std::lock_guard<std::mutex> lock(mu);
      holding = true;
    }
    // Close ends both directions and closes both sockets.
    void Close() {
      shutdown(client_fd, SHUT_RDWR);
      shutdown(server_fd, SHUT_RDWR);
      if (to_server.joinable()) to_server.join();
      if (to_client.joinable()) to_client.join();
      close(client_fd);
      close(server_fd);
    }
    // Pump copies `from` to `to` until either ends, then ends both (the
    // other pump wakes); the sockets stay open until Close. The pump of
    // the server's bytes (`answers`) keeps them instead while holding.
    void Pump(int from, int to, bool answers) {
      char buf[16384];
      for (;;) {
        const ssize_t n = recv(from, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (answers) {
          std::lock_guard<std::mutex> lock(mu);
          if (holding) {
            held.append(buf, static_cast<size_t>(n));
            continue;
          }
          if (!SendAll(to, buf, static_cast<size_t>(n))) break;
        } else if (!SendAll(to, buf, static_cast<size_t>(n))) {
          break;
        }
      }
      shutdown(from, SHUT_RDWR);
      shutdown(to, SHUT_RDWR);
    }
    static bool SendAll(int fd, const char* data, size_t size) {
      while (size > 0) {
        // MSG_NOSIGNAL: a peer gone must not raise SIGPIPE in the test.
        const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= static_cast<size_t>(n);
      }
      return true;
    }
  };

  void AcceptLoop() {
    for (;;) {
      const int client_fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      std::string target;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) {
          if (client_fd >= 0) close(client_fd);
          return;
        }
        if (client_fd >= 0 && cutting_) {
          close(client_fd);  // refused: the client sees it closed at once
          continue;
        }
        target = target_;
      }
      if (client_fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      const int server_fd = Connect(target);
      if (server_fd < 0) {
        close(client_fd);
        continue;
      }
      auto connection = std::make_unique<Connection>();
      connection->client_fd = client_fd;
      connection->server_fd = server_fd;
      std::lock_guard<std::mutex> lock(mu_);
      if (cutting_ || stopping_) {  // cut while this one connected
        close(client_fd);
        close(server_fd);
        continue;
      }
      connection->holding = holding_;  // before Start: no pump runs yet
      connection->Start();
      connections_.push_back(std::move(connection));
    }
  }

  // Connect returns a socket connected to `target`, or -1.
  static int Connect(const std::string& target) {
    int fd = -1;
    if (absl::StartsWith(target, "unix:")) {
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      const std::string path = target.substr(5);
      if (path.size() >= sizeof(addr.sun_path)) return -1;
      std::memcpy(addr.sun_path, path.data(), path.size());
      fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0 &&
          connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        return fd;
      }
    } else {
      const size_t colon = target.rfind(':');
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      uint32_t port = 0;
      if (colon == std::string::npos ||
          inet_pton(AF_INET, target.substr(0, colon).c_str(), &addr.sin_addr) !=
              1 ||
          !absl::SimpleAtoi(absl::string_view(target).substr(colon + 1),
                            &port) ||
          port > 65535) {
        return -1;
      }
      addr.sin_port = htons(static_cast<uint16_t>(port));
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0 &&
          connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        return fd;
      }
    }
    if (fd >= 0) close(fd);
    return -1;
  }

  int listen_fd_ = -1;
  std::string address_;
  std::thread acceptor_;
  std::mutex mu_;
  std::string target_;     // guarded by mu_
  bool cutting_ = false;   // guarded by mu_: refuse new connections
  bool holding_ = false;   // guarded by mu_: HoldAnswers until the next Cut
  bool stopping_ = false;  // guarded by mu_: the destructor runs
  // The connections forwarded since the last Cut, closed by the next
  // (ended ones included: their sockets stay open until then, so that a
  // descriptor number is never reused under a pump). Guarded by mu_.
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_CUT_PROXY_H_
