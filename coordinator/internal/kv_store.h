// The storage under the coordinator's catalog: an ordered map of small
// records, durable before each write returns. Two implementations pass one
// conformance suite (tests/service/catalog_store_test.cc):
//   - RocksDB in a local directory (the embedded default, --db=DIR);
//   - etcd (--catalog=etcd://HOST:PORT[,HOST:PORT...]/PREFIX), for several
//     coordinators of which one leads: every write is a transaction
//     conditioned on this process's leadership (fencing), so a deposed leader
//     can change nothing.
#ifndef CAIRN_COORDINATOR_INTERNAL_KV_STORE_H_
#define CAIRN_COORDINATOR_INTERNAL_KV_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cairn {
namespace internal {

class KvStore {
 public:
  virtual ~KvStore() = default;
  // nullopt if absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(const std::string& key) = 0;
  // Durable when OK. An etcd store that is no longer the leader answers
  // FailedPrecondition and writes nothing.
  virtual absl::Status Put(const std::string& key, const std::string& value) = 0;
  // OK if absent.
  virtual absl::Status Delete(const std::string& key) = 0;
  // Every (key, value) whose key starts with `prefix`, ascending by key.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      const std::string& prefix) = 0;
  // "rocksdb:DIR" or "etcd://ENDPOINTS/PREFIX", for messages.
  virtual std::string Describe() const = 0;
};

// Opens (creating if needed) a RocksDB database in `dir`; writes are synced.
absl::StatusOr<std::unique_ptr<KvStore>> OpenRocksDbStore(const std::string& dir);

struct EtcdStoreOptions {
  std::vector<std::string> endpoints;  // HOST:PORT of etcd members
  std::string prefix;                  // every key lives under PREFIX/
  // Leadership: this process's name in the election (its coordinator
  // address), and the etcd lease TTL. A leader that cannot renew its lease
  // within the TTL loses leadership; a standby takes over after it expires.
  std::string candidate;
  int64_t lease_ttl_seconds = 5;
  // Called (from a background thread) once leadership is lost: the store
  // then refuses every write. The coordinator stops serving.
  std::function<void(const absl::Status&)> on_lost_leadership;
  // Called while waiting for leadership, with the current leader's name
  // (empty if none), at most once per change.
  std::function<void(const std::string&)> on_standby;
  // Per etcd call; unavailable members are retried until this much time has
  // passed.
  int64_t call_timeout_ms = 10000;
};

// Connects to etcd and campaigns for leadership under PREFIX/leader; returns
// once this process leads (a standby waits here). Writes are fenced on the
// leadership key's revision.
absl::StatusOr<std::unique_ptr<KvStore>> OpenEtcdStore(const EtcdStoreOptions& options);

// Parses "etcd://HOST:PORT[,HOST:PORT...]/PREFIX" into endpoints and prefix.
absl::StatusOr<EtcdStoreOptions> ParseEtcdUri(const std::string& uri);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_KV_STORE_H_
