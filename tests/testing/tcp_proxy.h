// A TCP proxy on 127.0.0.1 whose link the test controls: pass bytes, delay
// them, hold them (a partition: connections stay open, nothing moves), or
// cut every connection and refuse new ones. Put one in front of a server
// and give its address to the clients, so faults between two processes are
// injected without touching either. The upstream can be changed (a
// restarted server on a new port).
#ifndef CAIRN_TESTS_TESTING_TCP_PROXY_H_
#define CAIRN_TESTS_TESTING_TCP_PROXY_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cairn {
namespace testing {

class TcpProxy {
 public:
  enum class Mode { kPass, kDelay, kHold, kCut };

  // Listens on 127.0.0.1:0 and forwards to `upstream` (HOST:PORT). address()
  // is empty if it could not listen.
  explicit TcpProxy(std::string upstream);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  const std::string& address() const { return address_; }
  void set_upstream(const std::string& upstream);
  // kDelay: each chunk waits `delay_ms` before it is forwarded. kCut: every
  // open connection is closed now, and new ones are closed on accept.
  void set_mode(Mode mode, int delay_ms = 0);
  Mode mode() const { return mode_.load(); }

 private:
  void AcceptLoop();
  void Pump(int client_fd);
  std::string Upstream();

  std::string address_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<Mode> mode_{Mode::kPass};
  std::atomic<int> delay_ms_{0};
  std::atomic<uint64_t> epoch_{0};  // bumped by kCut: pumps of older epochs close
  std::mutex mu_;
  std::string upstream_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_TCP_PROXY_H_
