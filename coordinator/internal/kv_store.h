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

// One change of a batch (KvStore::Write).
struct KvWrite {
  enum class Op { kPut, kDelete, kDeletePrefix };
  Op op;
  std::string key;    // the key, or the prefix for kDeletePrefix
  std::string value;  // kPut only

  static KvWrite Put(std::string key, std::string value) {
    return {Op::kPut, std::move(key), std::move(value)};
  }
  // OK if absent.
  static KvWrite Delete(std::string key) { return {Op::kDelete, std::move(key), {}}; }
  // Every key starting with `prefix`.
  static KvWrite DeletePrefix(std::string prefix) {
    return {Op::kDeletePrefix, std::move(prefix), {}};
  }
};

// The smallest key greater than every key that starts with `prefix` (the
// end of a prefix range).
inline std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

class KvStore {
 public:
  // The most changes one Write takes: etcd refuses transactions of more
  // than 128 operations by default (--max-txn-ops), and the fence adds one.
  static constexpr size_t kMaxBatch = 100;

  virtual ~KvStore() = default;
  // nullopt if absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(const std::string& key) = 0;
  // All of `batch` or none of it; durable when OK. At most kMaxBatch
  // changes (InvalidArgument otherwise), no key changed twice (etcd refuses
  // overlapping changes in one transaction). An etcd store that is no
  // longer the leader answers FailedPrecondition and writes nothing.
  virtual absl::Status Write(const std::vector<KvWrite>& batch) = 0;
  absl::Status Put(const std::string& key, const std::string& value) {
    return Write({KvWrite::Put(key, value)});
  }
  // OK if absent.
  absl::Status Delete(const std::string& key) { return Write({KvWrite::Delete(key)}); }
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
