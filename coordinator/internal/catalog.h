// The coordinator's durable catalog in RocksDB. Every write is synced
// (WriteOptions::sync) before it returns: a record the coordinator has
// acknowledged survives a crash of the process or the machine.
//
// Keys:  ckpt/<job>/<step, 20 digits>  → cairn.v1.CheckpointRecord
//        writer/<id>                   → cairn.v1.WriterInfo
//        meta/<name>                   → raw bytes (catalog_id, attempt_key)
#ifndef CAIRN_COORDINATOR_INTERNAL_CATALOG_H_
#define CAIRN_COORDINATOR_INTERNAL_CATALOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/catalog.pb.h"

namespace cairn {
namespace internal {

class Catalog {
 public:
  // Opens (creating if needed) the RocksDB database in `dir`.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& dir);
  ~Catalog();

  absl::Status PutCheckpoint(const v1::CheckpointRecord& record);
  // NotFound if absent.
  absl::StatusOr<v1::CheckpointRecord> GetCheckpoint(const std::string& job, int64_t step);
  absl::Status DeleteCheckpoint(const std::string& job, int64_t step);
  // Every checkpoint of `job` (or of every job if empty), ascending by
  // (job, step).
  absl::StatusOr<std::vector<v1::CheckpointRecord>> ListCheckpoints(const std::string& job);

  // NotFound if the job has no record (no policy, never committed).
  absl::StatusOr<v1::JobRecord> GetJob(const std::string& job);
  absl::Status PutJob(const v1::JobRecord& job);

  absl::Status PutLease(const v1::LeaseRecord& lease);
  absl::Status DeleteLease(const std::string& lease_id);
  absl::StatusOr<std::vector<v1::LeaseRecord>> ListLeases();

  // Small named values of the catalog itself (its identity, the attempt
  // key). NotFound if absent.
  absl::StatusOr<std::string> GetMeta(const std::string& name);
  absl::Status PutMeta(const std::string& name, const std::string& value);

  absl::Status PutWriter(const v1::WriterInfo& writer);
  absl::StatusOr<std::vector<v1::WriterInfo>> ListWriters();

 private:
  struct Rep;
  explicit Catalog(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_CATALOG_H_
