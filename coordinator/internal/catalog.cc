#include "coordinator/internal/catalog.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

std::string CheckpointKey(const std::string& job, int64_t step) {
  return absl::StrFormat("ckpt/%s/%020d", job, step);
}

std::string ShardPrefix(const std::string& job, int64_t step) {
  return absl::StrFormat("shard/%s/%020d/", job, step);
}

std::string ShardKey(const std::string& job, int64_t step, int index) {
  return absl::StrFormat("%s%010d", ShardPrefix(job, step), index);
}

std::string InventoryPrefix(const std::string& job, int64_t step) {
  return absl::StrFormat("files/%s/%020d/", job, step);
}

// Files of an inventory per key: about 150 KB, far below etcd's limit.
constexpr int kInventoryChunk = 1000;

template <typename Message>
absl::StatusOr<Message> Parse(const std::string& key, const std::string& bytes) {
  Message m;
  if (!m.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("catalog record ", key, " is corrupt"));
  }
  return m;
}

}  // namespace

Catalog::Catalog(std::unique_ptr<KvStore> store) : store_(std::move(store)) {}
Catalog::~Catalog() = default;

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& dir) {
  auto store = OpenRocksDbStore(dir);
  if (!store.ok()) return store.status();
  return std::make_unique<Catalog>(*std::move(store));
}

absl::Status Catalog::PutMessage(const std::string& key, const google::protobuf::Message& m) {
  return store_->Put(key, m.SerializeAsString());
}

template <typename Message>
absl::StatusOr<std::vector<Message>> Catalog::ScanMessages(const std::string& prefix) {
  auto rows = store_->Scan(prefix);
  if (!rows.ok()) return rows.status();
  std::vector<Message> out;
  out.reserve(rows->size());
  for (const auto& [key, bytes] : *rows) {
    auto m = Parse<Message>(key, bytes);
    if (!m.ok()) return m.status();
    out.push_back(*std::move(m));
  }
  return out;
}

absl::StatusOr<std::string> Catalog::RecordBytes(const v1::CheckpointRecord& record) {
  const int files = record.files_size();
  if (record.shards_size() == 0 && files <= kInventoryChunk && record.inventory_chunks() == 0) {
    return record.SerializeAsString();
  }
  v1::CheckpointRecord header = record;  // only for transitions: a few per step
  header.clear_shards();
  header.set_inventory_chunks(0);
  if (files > kInventoryChunk) {
    const int chunks = (files + kInventoryChunk - 1) / kInventoryChunk;
    for (int c = 0; c < chunks; ++c) {
      v1::CheckpointRecord chunk;
      for (int i = c * kInventoryChunk; i < std::min(files, (c + 1) * kInventoryChunk); ++i) {
        *chunk.add_files() = record.files(i);
      }
      RETURN_IF_ERROR(store_->Put(absl::StrFormat("%s%06d", InventoryPrefix(record.job(), record.step()), c),
                                  chunk.SerializeAsString()));
    }
    header.clear_files();
    header.set_inventory_chunks(chunks);
  }
  return header.SerializeAsString();
}

absl::Status Catalog::LoadInventory(v1::CheckpointRecord* record) {
  if (record->inventory_chunks() == 0) return absl::OkStatus();
  record->clear_files();
  for (int c = 0; c < record->inventory_chunks(); ++c) {
    const std::string key = absl::StrFormat("%s%06d", InventoryPrefix(record->job(), record->step()), c);
    ASSIGN_OR_RETURN(auto bytes, store_->Get(key));
    if (!bytes.has_value()) return absl::DataLossError(absl::StrCat("catalog record ", key, " is missing"));
    ASSIGN_OR_RETURN(auto chunk, Parse<v1::CheckpointRecord>(key, *bytes));
    for (auto& f : *chunk.mutable_files()) *record->add_files() = std::move(f);
  }
  record->set_inventory_chunks(0);  // in memory the inventory is whole
  return absl::OkStatus();
}

absl::Status Catalog::PutCheckpoint(const v1::CheckpointRecord& record) {
  ASSIGN_OR_RETURN(std::string bytes, RecordBytes(record));
  return store_->Put(CheckpointKey(record.job(), record.step()), bytes);
}

absl::Status Catalog::PutCheckpointDroppingShards(const v1::CheckpointRecord& record) {
  ASSIGN_OR_RETURN(std::string bytes, RecordBytes(record));
  return store_->Write({KvWrite::Put(CheckpointKey(record.job(), record.step()), bytes),
                        KvWrite::DeletePrefix(ShardPrefix(record.job(), record.step()))});
}

absl::Status Catalog::PutShard(const std::string& job, int64_t step, const v1::ShardRecord& shard) {
  return PutMessage(ShardKey(job, step, shard.index()), shard);
}

absl::Status Catalog::PutCheckpointAndShard(const v1::CheckpointRecord& record,
                                            const v1::ShardRecord& shard) {
  ASSIGN_OR_RETURN(std::string bytes, RecordBytes(record));
  return store_->Write(
      {KvWrite::Put(CheckpointKey(record.job(), record.step()), bytes),
       KvWrite::Put(ShardKey(record.job(), record.step(), shard.index()), shard.SerializeAsString())});
}

absl::Status Catalog::LoadShards(v1::CheckpointRecord* record) {
  ASSIGN_OR_RETURN(auto rows, store_->Scan(ShardPrefix(record->job(), record->step())));
  const int n = record->num_shards();
  if (record->shards_size() != n) {  // inline shards (older versions) are kept
    record->clear_shards();
    record->mutable_shards()->Reserve(n);
    for (int i = 0; i < n; ++i) record->add_shards()->set_index(i);
  }
  for (const auto& [key, bytes] : rows) {
    ASSIGN_OR_RETURN(auto shard, Parse<v1::ShardRecord>(key, bytes));
    if (shard.index() < 0 || shard.index() >= n) {
      return absl::DataLossError(absl::StrCat("catalog record ", key, " names shard ", shard.index(),
                                              " of a checkpoint of ", n));
    }
    *record->mutable_shards(shard.index()) = std::move(shard);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ShardRecord> Catalog::GetShard(const std::string& job, int64_t step, int index) {
  const std::string key = ShardKey(job, step, index);
  ASSIGN_OR_RETURN(auto bytes, store_->Get(key));
  if (bytes.has_value()) return Parse<v1::ShardRecord>(key, *bytes);
  // Written by an older version, inside the record?
  auto record = GetCheckpoint(job, step);
  if (record.ok() && index >= 0 && index < record->shards_size()) return record->shards(index);
  if (!record.ok() && !absl::IsNotFound(record.status())) return record.status();
  v1::ShardRecord fresh;
  fresh.set_index(index);
  return fresh;
}

absl::Status Catalog::MigrateInlineShards(const v1::CheckpointRecord& record) {
  if (record.shards_size() == 0) return absl::OkStatus();
  std::vector<KvWrite> batch;
  for (const auto& shard : record.shards()) {
    if (shard.token().empty()) continue;  // never assigned: nothing to keep
    batch.push_back(KvWrite::Put(ShardKey(record.job(), record.step(), shard.index()),
                                 shard.SerializeAsString()));
    if (batch.size() == KvStore::kMaxBatch) {
      RETURN_IF_ERROR(store_->Write(batch));
      batch.clear();
    }
  }
  RETURN_IF_ERROR(store_->Write(batch));
  // Last: until here the inline shards are still the record's.
  return PutCheckpoint(record);
}

absl::StatusOr<v1::CheckpointRecord> Catalog::GetCheckpoint(const std::string& job, int64_t step) {
  const std::string key = CheckpointKey(job, step);
  auto bytes = store_->Get(key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint for job ", job, " step ", step));
  }
  ASSIGN_OR_RETURN(auto record, Parse<v1::CheckpointRecord>(key, **bytes));
  RETURN_IF_ERROR(LoadInventory(&record));
  return record;
}

absl::Status Catalog::DeleteCheckpoint(const std::string& job, int64_t step) {
  return store_->Write({KvWrite::Delete(CheckpointKey(job, step)),
                        KvWrite::DeletePrefix(ShardPrefix(job, step)),
                        KvWrite::DeletePrefix(InventoryPrefix(job, step))});
}

absl::StatusOr<std::vector<v1::CheckpointRecord>> Catalog::ListCheckpoints(const std::string& job) {
  ASSIGN_OR_RETURN(auto records, ScanMessages<v1::CheckpointRecord>(
                                     job.empty() ? "ckpt/" : absl::StrCat("ckpt/", job, "/")));
  for (auto& r : records) RETURN_IF_ERROR(LoadInventory(&r));
  return records;
}

absl::StatusOr<v1::JobRecord> Catalog::GetJob(const std::string& job) {
  const std::string key = absl::StrCat("job/", job);
  auto bytes = store_->Get(key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return absl::NotFoundError(absl::StrCat("no record of job ", job));
  return Parse<v1::JobRecord>(key, **bytes);
}

absl::Status Catalog::PutJob(const v1::JobRecord& job) {
  return PutMessage(absl::StrCat("job/", job.job()), job);
}

absl::StatusOr<std::vector<v1::JobRecord>> Catalog::ListJobs() {
  return ScanMessages<v1::JobRecord>("job/");
}

absl::Status Catalog::PutLease(const v1::LeaseRecord& lease) {
  return PutMessage(absl::StrCat("lease/", lease.lease_id()), lease);
}

absl::Status Catalog::DeleteLease(const std::string& lease_id) {
  return store_->Delete(absl::StrCat("lease/", lease_id));
}

absl::StatusOr<std::vector<v1::LeaseRecord>> Catalog::ListLeases() {
  return ScanMessages<v1::LeaseRecord>("lease/");
}

absl::StatusOr<std::string> Catalog::GetMeta(const std::string& name) {
  auto bytes = store_->Get(absl::StrCat("meta/", name));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return absl::NotFoundError(absl::StrCat("catalog has no ", name));
  return **std::move(bytes);
}

absl::Status Catalog::PutMeta(const std::string& name, const std::string& value) {
  return store_->Put(absl::StrCat("meta/", name), value);
}

absl::Status Catalog::PutWriter(const v1::WriterInfo& writer) {
  return PutMessage(absl::StrCat("writer/", writer.writer_id()), writer);
}

absl::StatusOr<std::vector<v1::WriterInfo>> Catalog::ListWriters() {
  return ScanMessages<v1::WriterInfo>("writer/");
}

}  // namespace internal
}  // namespace cairn
