#include "coordinator/internal/catalog.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cairn {
namespace internal {
namespace {

// The one adapter from rocksdb::Status.
absl::Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat("catalog ", what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

std::string CheckpointKey(const std::string& job, int64_t step) {
  return absl::StrFormat("ckpt/%s/%020d", job, step);
}

}  // namespace

struct Catalog::Rep {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::WriteOptions sync_write;

  absl::Status Put(const std::string& key, const google::protobuf::Message& m) {
    return FromRocks(db->Put(sync_write, key, m.SerializeAsString()), key);
  }
};

Catalog::Catalog(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Catalog::~Catalog() = default;

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 5;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open ", dir));
  auto rep = std::make_unique<Rep>();
  rep->db.reset(db);
  rep->sync_write.sync = true;
  return std::unique_ptr<Catalog>(new Catalog(std::move(rep)));
}

absl::Status Catalog::PutCheckpoint(const v1::CheckpointRecord& record) {
  return rep_->Put(CheckpointKey(record.job(), record.step()), record);
}

absl::StatusOr<v1::CheckpointRecord> Catalog::GetCheckpoint(const std::string& job, int64_t step) {
  const std::string key = CheckpointKey(job, step);
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint for job ", job, " step ", step));
  }
  if (!s.ok()) return FromRocks(s, key);
  v1::CheckpointRecord record;
  if (!record.ParseFromString(value)) return absl::DataLossError(absl::StrCat("catalog record ", key, " is corrupt"));
  return record;
}

absl::Status Catalog::DeleteCheckpoint(const std::string& job, int64_t step) {
  const std::string key = CheckpointKey(job, step);
  return FromRocks(rep_->db->Delete(rep_->sync_write, key), key);
}

absl::StatusOr<std::vector<v1::CheckpointRecord>> Catalog::ListCheckpoints(const std::string& job) {
  const std::string prefix = job.empty() ? "ckpt/" : absl::StrCat("ckpt/", job, "/");
  std::vector<v1::CheckpointRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    v1::CheckpointRecord record;
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("catalog record ", it->key().ToString(), " is corrupt"));
    }
    out.push_back(std::move(record));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan");
  return out;
}

absl::StatusOr<v1::JobRecord> Catalog::GetJob(const std::string& job) {
  const std::string key = absl::StrCat("job/", job);
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("no record of job ", job));
  if (!s.ok()) return FromRocks(s, key);
  v1::JobRecord record;
  if (!record.ParseFromString(value)) return absl::DataLossError(absl::StrCat("catalog record ", key, " is corrupt"));
  return record;
}

absl::Status Catalog::PutJob(const v1::JobRecord& job) {
  return rep_->Put(absl::StrCat("job/", job.job()), job);
}

absl::Status Catalog::PutLease(const v1::LeaseRecord& lease) {
  return rep_->Put(absl::StrCat("lease/", lease.lease_id()), lease);
}

absl::Status Catalog::DeleteLease(const std::string& lease_id) {
  const std::string key = absl::StrCat("lease/", lease_id);
  return FromRocks(rep_->db->Delete(rep_->sync_write, key), key);
}

absl::StatusOr<std::vector<v1::LeaseRecord>> Catalog::ListLeases() {
  std::vector<v1::LeaseRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("lease/"); it->Valid() && it->key().starts_with("lease/"); it->Next()) {
    v1::LeaseRecord l;
    if (l.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      out.push_back(std::move(l));
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan leases");
  return out;
}

absl::StatusOr<std::string> Catalog::GetMeta(const std::string& name) {
  const std::string key = absl::StrCat("meta/", name);
  std::string value;
  rocksdb::Status s = rep_->db->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("catalog has no ", name));
  if (!s.ok()) return FromRocks(s, key);
  return value;
}

absl::Status Catalog::PutMeta(const std::string& name, const std::string& value) {
  const std::string key = absl::StrCat("meta/", name);
  return FromRocks(rep_->db->Put(rep_->sync_write, key, value), key);
}

absl::Status Catalog::PutWriter(const v1::WriterInfo& writer) {
  return rep_->Put(absl::StrCat("writer/", writer.writer_id()), writer);
}

absl::StatusOr<std::vector<v1::WriterInfo>> Catalog::ListWriters() {
  std::vector<v1::WriterInfo> out;
  std::unique_ptr<rocksdb::Iterator> it(rep_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("writer/"); it->Valid() && it->key().starts_with("writer/"); it->Next()) {
    v1::WriterInfo w;
    if (w.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      out.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace internal
}  // namespace cairn
