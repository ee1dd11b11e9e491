#include "coordinator/internal/catalog.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cairn {
namespace internal {
namespace {

std::string CheckpointKey(const std::string& job, int64_t step) {
  return absl::StrFormat("ckpt/%s/%020d", job, step);
}

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

absl::Status Catalog::PutCheckpoint(const v1::CheckpointRecord& record) {
  return PutMessage(CheckpointKey(record.job(), record.step()), record);
}

absl::StatusOr<v1::CheckpointRecord> Catalog::GetCheckpoint(const std::string& job, int64_t step) {
  const std::string key = CheckpointKey(job, step);
  auto bytes = store_->Get(key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint for job ", job, " step ", step));
  }
  return Parse<v1::CheckpointRecord>(key, **bytes);
}

absl::Status Catalog::DeleteCheckpoint(const std::string& job, int64_t step) {
  return store_->Delete(CheckpointKey(job, step));
}

absl::StatusOr<std::vector<v1::CheckpointRecord>> Catalog::ListCheckpoints(const std::string& job) {
  return ScanMessages<v1::CheckpointRecord>(job.empty() ? "ckpt/" : absl::StrCat("ckpt/", job, "/"));
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
