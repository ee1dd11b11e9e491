#include "tests/testing/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/testing/test_util.h"

extern char** environ;

namespace cairn {
namespace testing {

ServerProcess::ServerProcess(const std::vector<std::string>& argv, const std::string& log_path,
                             int wait_ms) {
  int out[2];
  if (::pipe(out) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    pid_ = -1;
    ::close(out[0]);
    return;
  }
  stdout_fd_ = out[0];
  if (wait_ms > 0 && !WaitListening(wait_ms)) Kill();
}

bool ServerProcess::WaitListening(int timeout_ms) {
  if (!address_.empty()) return true;
  if (stdout_fd_ < 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool eof = false;
  do {
    struct pollfd p = {stdout_fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms == 0 ? 0 : 100) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) {
      eof = true;
      break;
    }
    line_.append(buf, static_cast<size_t>(n));
  } while (line_.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline);
  const std::string marker = "listening on ";
  const size_t at = line_.find(marker);
  const size_t end = line_.find('\n');
  if (at == std::string::npos || end == std::string::npos) {
    if (eof) {
      ::close(stdout_fd_);
      stdout_fd_ = -1;
    }
    return false;
  }
  address_ = line_.substr(at + marker.size(), end - at - marker.size());
  ::close(stdout_fd_);  // the servers print nothing else on stdout
  stdout_fd_ = -1;
  return true;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) Stop();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

int ServerProcess::port() const { return std::stoi(address_.substr(address_.rfind(':') + 1)); }

bool ServerProcess::running() {
  if (pid_ <= 0 || exited_) return false;
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    return false;
  }
  return true;
}

int ServerProcess::WaitExit(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1000;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_status_;
}

void ServerProcess::Kill() {
  if (pid_ <= 0 || exited_) return;
  ::kill(pid_, SIGKILL);
  WaitExit(10000);
}

int ServerProcess::Stop() {
  if (pid_ <= 0) return -1;
  if (exited_) return exit_status_;
  ::kill(pid_, SIGTERM);
  int status = WaitExit(5000);
  if (status == -1000) {
    Kill();
    return exit_status_;
  }
  return status;
}

Cluster::Cluster(const std::string& dir, int writers, std::vector<std::string> coordinator_flags,
                 std::vector<std::string> writer_prefix, std::vector<std::string> writer_flags)
    : dir_(dir), writer_prefix_(std::move(writer_prefix)), writer_flags_(std::move(writer_flags)) {
  coordinator_ = std::make_unique<ServerProcess>(CoordinatorArgv("127.0.0.1:0", coordinator_flags),
                                                 coordinator_log());
  if (coordinator_->address().empty()) return;
  writers_.resize(static_cast<size_t>(writers));
  for (int i = 0; i < writers; ++i) RestartWriter(i);
}

void Cluster::RestartWriter(int i) {
  std::vector<std::string> argv = writer_prefix_;
  argv.push_back(BinPath("cairn-writer"));
  argv.push_back("--coordinator=" + coordinator());
  argv.insert(argv.end(), writer_flags_.begin(), writer_flags_.end());
  if (writers_[i]) writers_[i]->Stop();
  writers_[i] = std::make_unique<ServerProcess>(argv, dir_ + "/writer" + std::to_string(i) + ".log");
}

std::vector<std::string> Cluster::CoordinatorArgv(const std::string& listen,
                                                  const std::vector<std::string>& flags) const {
  std::vector<std::string> argv = {BinPath("cairn-coordinator"), "--listen=" + listen,
                                   "--db=" + db_dir()};
  const bool own_storage = std::any_of(flags.begin(), flags.end(), [](const std::string& f) {
    return f.rfind("--storage=", 0) == 0;
  });
  if (!own_storage) argv.push_back("--storage=" + storage_dir());
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

bool Cluster::ok() const {
  if (coordinator_->address().empty()) return false;
  for (const auto& w : writers_) {
    if (w->address().empty()) return false;
  }
  return true;
}

void Cluster::RestartCoordinator(std::vector<std::string> flags) {
  const std::string listen = coordinator_->address();
  coordinator_->Stop();
  for (int attempt = 0; attempt < 50; ++attempt) {
    coordinator_ = std::make_unique<ServerProcess>(CoordinatorArgv(listen, flags), coordinator_log());
    if (!coordinator_->address().empty()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // port still held
  }
}

}  // namespace testing
}  // namespace cairn
