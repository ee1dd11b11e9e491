// The embedded catalog store: RocksDB, every write synced.
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "absl/strings/str_cat.h"
#include "coordinator/internal/kv_store.h"

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

class RocksDbStore : public KvStore {
 public:
  RocksDbStore(std::unique_ptr<rocksdb::DB> db, std::string dir)
      : db_(std::move(db)), dir_(std::move(dir)) {
    sync_write_.sync = true;
  }

  absl::StatusOr<std::optional<std::string>> Get(const std::string& key) override {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return FromRocks(s, key);
    return std::optional<std::string>(std::move(value));
  }

  absl::Status Write(const std::vector<KvWrite>& batch) override {
    if (batch.empty()) return absl::OkStatus();
    if (batch.size() > kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("catalog write of ", batch.size(), " changes; at most ", kMaxBatch));
    }
    rocksdb::WriteBatch wb;
    for (const KvWrite& w : batch) {
      rocksdb::Status s;
      switch (w.op) {
        case KvWrite::Op::kPut:
          s = wb.Put(w.key, w.value);
          break;
        case KvWrite::Op::kDelete:
          s = wb.Delete(w.key);
          break;
        case KvWrite::Op::kDeletePrefix:
          s = wb.DeleteRange(w.key, PrefixEnd(w.key));
          break;
      }
      if (!s.ok()) return FromRocks(s, w.key);
    }
    return FromRocks(db_->Write(sync_write_, &wb), batch.front().key);
  }

  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      const std::string& prefix) override {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    if (!it->status().ok()) return FromRocks(it->status(), absl::StrCat("scan ", prefix));
    return out;
  }

  std::string Describe() const override { return absl::StrCat("rocksdb:", dir_); }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::string dir_;
  rocksdb::WriteOptions sync_write_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KvStore>> OpenRocksDbStore(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 5;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open ", dir));
  return std::unique_ptr<KvStore>(new RocksDbStore(std::unique_ptr<rocksdb::DB>(db), dir));
}

}  // namespace internal
}  // namespace cairn
