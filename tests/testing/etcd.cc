#include "tests/testing/etcd.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace testing {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

EtcdCluster::EtcdCluster(const std::string& dir, int members, std::vector<std::string> flags)
    : dir_(dir), flags_(std::move(flags)) {
  spawner_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(spawn_mu_);
    while (true) {
      spawn_cv_.wait(lock, [this] { return spawn_stop_ || !spawn_tasks_.empty(); });
      if (spawn_tasks_.empty()) return;
      std::function<void()> task = std::move(spawn_tasks_.front());
      spawn_tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  });
  ::mkdir(dir_.c_str(), 0755);
  if (::access("/usr/bin/etcd", X_OK) != 0) {
    why_ = "missing dependency: /usr/bin/etcd (package etcd-server; scripts/install-deps.sh)";
    return;
  }
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    endpoints_.push_back(absl::StrCat("127.0.0.1:", FreePort()));
    peer_ports_.push_back(FreePort());
    peers.push_back(absl::StrCat("m", i, "=http://127.0.0.1:", peer_ports_.back()));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
  pids_.assign(static_cast<size_t>(members), -1);
  for (int i = 0; i < members; ++i) Start(i, /*fresh=*/true);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int i = 0; i < members; ++i) {
    while (!Healthy(i)) {
      if (std::chrono::steady_clock::now() > deadline) {
        why_ = absl::StrCat("etcd member ", i, " did not become healthy; see ", dir_, "/etcd", i, ".log");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ok_ = true;
}

EtcdCluster::~EtcdCluster() {
  for (pid_t pid : pids_) {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  {
    std::lock_guard<std::mutex> lock(spawn_mu_);
    spawn_stop_ = true;
  }
  spawn_cv_.notify_all();
  spawner_.join();
}

void EtcdCluster::Start(int i, bool fresh) {
  std::promise<void> done;
  {
    std::lock_guard<std::mutex> lock(spawn_mu_);
    spawn_tasks_.push_back([this, i, fresh, &done] {
      Spawn(i, fresh);
      done.set_value();
    });
  }
  spawn_cv_.notify_all();
  done.get_future().wait();
}

std::string EtcdCluster::CatalogUri(const std::string& prefix) const {
  return absl::StrCat("etcd://", absl::StrJoin(endpoints_, ","), "/", prefix);
}

void EtcdCluster::Spawn(int i, bool fresh) {
  const std::string name = absl::StrCat("m", i);
  const std::string client = absl::StrCat("http://", endpoints_[static_cast<size_t>(i)]);
  const std::string peer = absl::StrCat("http://127.0.0.1:", peer_ports_[static_cast<size_t>(i)]);
  std::vector<std::string> argv = {"/usr/bin/etcd",
                                   "--name=" + name,
                                   "--data-dir=" + absl::StrCat(dir_, "/etcd", i),
                                   "--listen-client-urls=" + client,
                                   "--advertise-client-urls=" + client,
                                   "--listen-peer-urls=" + peer,
                                   "--initial-advertise-peer-urls=" + peer,
                                   "--initial-cluster=" + initial_cluster_,
                                   "--initial-cluster-token=cairn-test",
                                   std::string("--initial-cluster-state=") + (fresh ? "new" : "existing"),
                                   // Fast elections: the tests kill members.
                                   "--heartbeat-interval=50",
                                   "--election-timeout=500",
                                   "--log-level=warn"};
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  const std::string log = absl::StrCat(dir_, "/etcd", i, ".log");
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Dies with the test, even if the test crashes; inherits no descriptor
    // (a lock file a build script holds, say) but its log.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::close_range(3, ~0U, 0);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  pids_[static_cast<size_t>(i)] = pid;
}

bool EtcdCluster::Healthy(int i) const {
  RunResult r = Run({"/usr/bin/etcdctl", "--endpoints=" + endpoints_[static_cast<size_t>(i)],
                     "--command-timeout=2s", "endpoint", "health"});
  return r.exit_code == 0;
}

void EtcdCluster::Kill(int i) {
  pid_t& pid = pids_[static_cast<size_t>(i)];
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

void EtcdCluster::Restart(int i) {
  Kill(i);
  Start(i, /*fresh=*/false);
}

void EtcdCluster::Pause(int i) { ::kill(pids_[static_cast<size_t>(i)], SIGSTOP); }
void EtcdCluster::Resume(int i) { ::kill(pids_[static_cast<size_t>(i)], SIGCONT); }

}  // namespace testing
}  // namespace cairn
