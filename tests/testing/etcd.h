// A real etcd cluster (Debian's /usr/bin/etcd) on 127.0.0.1 for tests: N
// members on free ports, data in a temporary directory, killed on
// destruction.
#ifndef CAIRN_TESTS_TESTING_ETCD_H_
#define CAIRN_TESTS_TESTING_ETCD_H_

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cairn {
namespace testing {

class EtcdCluster {
 public:
  // Starts `members` members under `dir` and waits (up to 30 s) until every
  // one answers its health check. ok() false (and why()) otherwise, e.g.
  // when etcd is not installed. `flags` are added to every member's
  // command line (e.g. "--max-request-bytes=N").
  EtcdCluster(const std::string& dir, int members, std::vector<std::string> flags = {});
  ~EtcdCluster();

  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }
  // "127.0.0.1:PORT" client endpoints.
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  // "etcd://E1,E2,.../PREFIX"
  std::string CatalogUri(const std::string& prefix) const;
  // SIGKILL member i (a crash); Restart brings it back with its data.
  void Kill(int i);
  void Restart(int i);
  // SIGSTOP / SIGCONT member i (a pause: it answers nothing meanwhile).
  void Pause(int i);
  void Resume(int i);

 private:
  void Start(int i, bool fresh);
  // Forks member i; runs on spawner_ (see Start).
  void Spawn(int i, bool fresh);
  bool Healthy(int i) const;

  std::string dir_;
  std::vector<std::string> flags_;
  std::vector<std::string> endpoints_;
  std::vector<int> peer_ports_;
  std::vector<pid_t> pids_;
  std::string initial_cluster_;
  bool ok_ = false;
  std::string why_;

  // Members are forked by this one thread, which lives as long as the
  // cluster: they die with it (PR_SET_PDEATHSIG fires when the forking
  // *thread* ends), not with whichever test thread restarted them.
  std::mutex spawn_mu_;
  std::condition_variable spawn_cv_;
  std::deque<std::function<void()>> spawn_tasks_;
  bool spawn_stop_ = false;
  std::thread spawner_;
};

// A free TCP port on 127.0.0.1 (bound and released; racy but fine for tests).
int FreePort();

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_ETCD_H_
