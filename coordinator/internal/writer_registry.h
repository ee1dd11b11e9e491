// The shard writers a coordinator knows: who is live, who is loaded, and
// which one gets the next shard.
//
// A writer is live once it has heartbeat within the timeout. Registering
// alone does not make it live: a writer heartbeats only after it has opened
// the storage root, so one that registers and then fails (a bad root) never
// receives a shard. A client that cannot reach its assigned writer reports
// it (BeginShardRequest.unreachable_writers); the writer then gets no shard
// until it heartbeats again, so a retry after a writer died goes to a live
// one at once instead of waiting out the heartbeat timeout.
//
// Thread-safe.
#ifndef CAIRN_COORDINATOR_INTERNAL_WRITER_REGISTRY_H_
#define CAIRN_COORDINATOR_INTERNAL_WRITER_REGISTRY_H_

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "coordinator/clock.h"

namespace cairn {
namespace internal {

class WriterRegistry {
 public:
  // `timeout_ms`: silence after which a writer counts as dead. Not owned:
  // `clock` must outlive the registry.
  WriterRegistry(Clock* clock, int64_t timeout_ms);

  // A new registration (not live until its first heartbeat); a writer
  // registering again from the same address keeps its id. Returns the id.
  std::string Register(const std::string& address, const std::string& new_id);
  // A writer known from the catalog at start-up: live for one timeout, so
  // the writers of a restarted coordinator are used before their next beat.
  void Recover(const std::string& id, const std::string& address);
  // What a writer reports in its heartbeat (HeartbeatRequest).
  struct Load {
    int active_streams = 0;      // shard streams it is receiving now
    uint64_t bytes_written = 0;  // data file bytes it made durable since it started
    uint32_t features = 0;       // v1::WriterFeature bits it announced
  };
  // False if the id is unknown (the writer should register again).
  bool Heartbeat(const std::string& id, const Load& load);
  bool Heartbeat(const std::string& id);  // with no load reported
  // A client could not reach `address`: no new shards until it heartbeats.
  void MarkUnreachable(const std::string& address);

  struct Choice {
    std::string id;
    std::string address;
    uint32_t features = 0;  // as of its last heartbeat (none if only recovered)
  };
  // The least-loaded live writer (ties round-robin), counted as carrying one
  // more shard. Unavailable if no writer is live.
  absl::StatusOr<Choice> Assign();
  // A shard assigned to `id` finished, failed or was superseded.
  void Release(const std::string& id);

  std::vector<std::string> LiveAddresses();

  struct Info {
    std::string id;
    std::string address;
    bool live = false;
    int active_shards = 0;               // assigned by this coordinator, not yet released
    int64_t last_heartbeat_micros = 0;   // 0 = never
    Load load;                           // as of the last heartbeat
  };
  std::vector<Info> Snapshot();

 private:
  struct Writer {
    std::string address;
    int64_t last_heartbeat_micros = 0;  // 0 = never
    int64_t unreachable_at_micros = 0;  // 0 = not reported
    int active_shards = 0;
    Load load;
  };
  bool LiveLocked(const Writer& w, int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const int64_t timeout_micros_;
  std::mutex mu_;
  std::map<std::string, Writer> writers_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_WRITER_REGISTRY_H_
