// Real server processes for tests: started with port 0, their chosen address
// read from the "listening on HOST:PORT" line, stopped on destruction.
#ifndef CAIRN_TESTS_TESTING_PROCESS_H_
#define CAIRN_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace cairn {
namespace testing {

// The exit status of a coordinator started with --crash-at=POINT when it
// reaches POINT (coordinator/internal/service.cc, CoordinatorService::CrashPoint).
// Tests expect exactly this code: any other exit (a SIGSEGV, a clean exit, a
// CHECK failure) is not the crash point being reached.
inline constexpr int kCrashPointExitCode = 86;

class ServerProcess {
 public:
  // Starts argv (argv[0] a path) with stderr appended to `log_path`, and
  // waits up to `wait_ms` for its "listening on" line. On failure address()
  // is empty and the process is gone. With wait_ms = 0 it returns at once
  // (a standby coordinator, say); WaitListening tells when it serves.
  ServerProcess(const std::vector<std::string>& argv, const std::string& log_path,
                int wait_ms = 30000);
  // True once the process has printed "listening on" (waits up to
  // timeout_ms; 0 = just look).
  bool WaitListening(int timeout_ms);
  ~ServerProcess();  // SIGTERM, then SIGKILL after 5 s

  const std::string& address() const { return address_; }
  int port() const;
  pid_t pid() const { return pid_; }
  bool running();
  // SIGKILL, as a crash.
  void Kill();
  // SIGTERM and wait; returns the exit status (or -signal).
  int Stop();
  // Waits for the process to exit by itself (up to timeout); exit status or
  // -signal, or -1000 on timeout.
  int WaitExit(int timeout_ms);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string line_;  // stdout so far, until the "listening on" line
  std::string address_;
  int exit_status_ = 0;
  bool exited_ = false;
};

// A coordinator plus N writers over one data directory.
class Cluster {
 public:
  // `dir` holds db/, storage/ and logs. Extra flags go to the coordinator.
  // `writer_flags` go to every writer (e.g. TLS flags, --auth-key-file).
  Cluster(const std::string& dir, int writers, std::vector<std::string> coordinator_flags = {},
          std::vector<std::string> writer_prefix = {}, std::vector<std::string> writer_flags = {});
  bool ok() const;
  const std::string& coordinator() const { return coordinator_->address(); }
  std::string storage_dir() const { return dir_ + "/storage"; }
  std::string db_dir() const { return dir_ + "/db"; }
  ServerProcess& coordinator_process() { return *coordinator_; }
  ServerProcess& writer_process(int i) { return *writers_[i]; }
  int num_writers() const { return static_cast<int>(writers_.size()); }
  // Restarts writer i (after a crash) with the same settings, on a new port.
  void RestartWriter(int i);
  void set_writer_prefix(std::vector<std::string> prefix) { writer_prefix_ = std::move(prefix); }
  // Restarts the coordinator on the same port with (possibly) new flags.
  void RestartCoordinator(std::vector<std::string> flags = {});
  std::string coordinator_log() const { return dir_ + "/coordinator.log"; }
  std::string writer_log(int i) const { return dir_ + "/writer" + std::to_string(i) + ".log"; }

 private:
  std::vector<std::string> CoordinatorArgv(const std::string& listen,
                                           const std::vector<std::string>& flags) const;
  std::string dir_;
  std::vector<std::string> writer_prefix_;
  std::vector<std::string> writer_flags_;
  std::unique_ptr<ServerProcess> coordinator_;
  std::vector<std::unique_ptr<ServerProcess>> writers_;
};

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_PROCESS_H_
