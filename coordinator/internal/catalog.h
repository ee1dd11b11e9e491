// The coordinator's durable catalog: its records over a KvStore
// (kv_store.h: RocksDB embedded, or etcd). Every write is durable before it
// returns: a record the coordinator has acknowledged survives a crash of the
// process or the machine.
//
// Keys:  ckpt/<job>/<step, 20 digits>   → cairn.v1.CheckpointRecord, without
//                                         its shards
//        shard/<job>/<step>/<index, 10 digits> → cairn.v1.ShardRecord, for
//                                         each shard an attempt was assigned to
//        files/<job>/<step>/<chunk, 6 digits> → cairn.v1.CheckpointRecord
//                                         holding only `files`: the inventory
//                                         of a checkpoint of more than 1,000
//                                         files, in chunks of 1,000
//        writer/<id>                    → cairn.v1.WriterInfo
//        meta/<name>                    → raw bytes (catalog_id, attempt_key)
// Shards have keys of their own so that a shard report writes one small
// record whatever the step's size (a step may have 100,000 shards), and a
// large inventory is chunked so that no write exceeds etcd's request limit
// (1.5 MiB by default; 16,384 files take about 2 MiB). Older
// versions kept them inside the checkpoint record; such records are read as
// they are, and MigrateInlineShards moves the shards of one out.
#ifndef CAIRN_COORDINATOR_INTERNAL_CATALOG_H_
#define CAIRN_COORDINATOR_INTERNAL_CATALOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/internal/kv_store.h"
#include "proto/catalog.pb.h"

namespace cairn {
namespace internal {

class Catalog {
 public:
  explicit Catalog(std::unique_ptr<KvStore> store);
  // A catalog in (creating if needed) the RocksDB database in `dir`.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& dir);
  ~Catalog();

  // Where the records live ("rocksdb:DIR", "etcd://...").
  std::string Describe() const { return store_->Describe(); }

  // Writes the record without its shards (PutShard writes those).
  absl::Status PutCheckpoint(const v1::CheckpointRecord& record);
  // Writes the record and deletes its shards: an aborted checkpoint's
  // shards are of no further use, and a later incarnation of the step must
  // not find them.
  absl::Status PutCheckpointDroppingShards(const v1::CheckpointRecord& record);
  // One shard of a checkpoint.
  absl::Status PutShard(const std::string& job, int64_t step, const v1::ShardRecord& shard);
  // Both at once, or neither.
  absl::Status PutCheckpointAndShard(const v1::CheckpointRecord& record,
                                     const v1::ShardRecord& shard);
  // The record without its shards (LoadShards adds them); NotFound if
  // absent.
  absl::StatusOr<v1::CheckpointRecord> GetCheckpoint(const std::string& job, int64_t step);
  // Sets `record`'s shards: num_shards of them, as last written (a shard
  // never written is only its index).
  absl::Status LoadShards(v1::CheckpointRecord* record);
  // One shard as last written (only its index if never written).
  absl::StatusOr<v1::ShardRecord> GetShard(const std::string& job, int64_t step, int index);
  // A record an older version wrote with its shards inside: writes the
  // shards under their own keys, then the record without them. Does nothing
  // to a record without inline shards.
  absl::Status MigrateInlineShards(const v1::CheckpointRecord& record);
  // The record and its shards, at once.
  absl::Status DeleteCheckpoint(const std::string& job, int64_t step);
  // Every checkpoint of `job` (or of every job if empty), ascending by
  // (job, step), without their shards.
  absl::StatusOr<std::vector<v1::CheckpointRecord>> ListCheckpoints(const std::string& job);

  // NotFound if the job has no record (no policy, never committed).
  absl::StatusOr<v1::JobRecord> GetJob(const std::string& job);
  absl::Status PutJob(const v1::JobRecord& job);
  // Every job record (a policy, a first commit), ascending by name.
  absl::StatusOr<std::vector<v1::JobRecord>> ListJobs();

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
  absl::Status PutMessage(const std::string& key, const google::protobuf::Message& m);
  // Writes `record`'s inventory chunks if it needs them and returns the
  // record's bytes: without its shards, and without its inventory when
  // chunked. A record refers to its chunks only once written after them.
  absl::StatusOr<std::string> RecordBytes(const v1::CheckpointRecord& record);
  // Reads back a chunked inventory into record->files.
  absl::Status LoadInventory(v1::CheckpointRecord* record);
  template <typename Message>
  absl::StatusOr<std::vector<Message>> ScanMessages(const std::string& prefix);

  std::unique_ptr<KvStore> store_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_CATALOG_H_
