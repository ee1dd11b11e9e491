#include "storage/metered_storage.h"

#include <utility>

#include "observability/metrics.h"

namespace cairn {
namespace {

constexpr const char* kOps[] = {"open_read", "open_write", "read", "append", "close", "size",
                                "exists", "rename", "delete", "remove_dir", "list", "map"};

// Counts `s` if it is a failure; returns it unchanged.
class Meter {
 public:
  explicit Meter(std::string component) : component_(std::move(component)) {
    for (const char* op : kOps) Counter(op);
  }
  absl::Status Count(const char* op, absl::Status s) const {
    if (!s.ok() && !absl::IsNotFound(s) && !absl::IsUnimplemented(s) && !absl::IsOutOfRange(s)) {
      Counter(op).Add(1);
    }
    return s;
  }
  template <typename T>
  absl::StatusOr<T> Count(const char* op, absl::StatusOr<T> v) const {
    if (!v.ok()) Count(op, v.status()).IgnoreError();
    return v;
  }

 private:
  metrics::CounterMetric& Counter(const char* op) const {
    return metrics::Counter("cairn_storage_errors_total",
                            "Failed storage operations (reads, writes, renames, deletes, lists) "
                            "by component and operation; a missing file is not a failure.",
                            {{"component", component_}, {"op", op}});
  }
  std::string component_;
};

class MeteredReadableFile final : public ReadableFile {
 public:
  MeteredReadableFile(std::unique_ptr<ReadableFile> base, std::shared_ptr<const Meter> meter)
      : base_(std::move(base)), meter_(std::move(meter)) {}
  absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const override {
    return meter_->Count("read", base_->ReadAt(offset, n, dst));
  }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& name() const override { return base_->name(); }
  bool prefers_small_reads() const override { return base_->prefers_small_reads(); }
  absl::StatusOr<std::shared_ptr<char>> MapRange(uint64_t offset, size_t n) const override {
    return meter_->Count("map", base_->MapRange(offset, n));
  }

 private:
  std::unique_ptr<ReadableFile> base_;
  std::shared_ptr<const Meter> meter_;
};

class MeteredWritableFile final : public WritableFile {
 public:
  MeteredWritableFile(std::unique_ptr<WritableFile> base, std::shared_ptr<const Meter> meter)
      : base_(std::move(base)), meter_(std::move(meter)) {}
  absl::Status Append(absl::string_view data) override {
    return meter_->Count("append", base_->Append(data));
  }
  uint64_t Size() const override { return base_->Size(); }
  absl::Status Close() override { return meter_->Count("close", base_->Close()); }
  void Abandon() override { base_->Abandon(); }
  const std::string& name() const override { return base_->name(); }

 private:
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<const Meter> meter_;
};

class Metered final : public Storage {
 public:
  Metered(std::unique_ptr<Storage> base, const std::string& component)
      : base_(std::move(base)), meter_(std::make_shared<const Meter>(component)) {}

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(absl::string_view path) override {
    auto f = meter_->Count("open_read", base_->NewReadableFile(path));
    if (!f.ok()) return f.status();
    return std::unique_ptr<ReadableFile>(new MeteredReadableFile(*std::move(f), meter_));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(absl::string_view path) override {
    auto f = meter_->Count("open_write", base_->NewWritableFile(path));
    if (!f.ok()) return f.status();
    return std::unique_ptr<WritableFile>(new MeteredWritableFile(*std::move(f), meter_));
  }
  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    return meter_->Count("size", base_->FileSize(path));
  }
  absl::StatusOr<bool> Exists(absl::string_view path) override {
    return meter_->Count("exists", base_->Exists(path));
  }
  absl::Status Rename(absl::string_view from, absl::string_view to) override {
    return meter_->Count("rename", base_->Rename(from, to));
  }
  absl::Status RenameMany(const std::vector<std::pair<std::string, std::string>>& moves) override {
    return meter_->Count("rename", base_->RenameMany(moves));
  }
  absl::Status Delete(absl::string_view path) override {
    return meter_->Count("delete", base_->Delete(path));
  }
  absl::Status DeleteMany(const std::vector<std::string>& paths) override {
    return meter_->Count("delete", base_->DeleteMany(paths));
  }
  absl::Status RemoveDirIfEmpty(absl::string_view dir) override {
    return meter_->Count("remove_dir", base_->RemoveDirIfEmpty(dir));
  }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    return meter_->Count("list", base_->List(dir));
  }
  std::string uri() const override { return base_->uri(); }

 private:
  std::unique_ptr<Storage> base_;
  std::shared_ptr<const Meter> meter_;
};

}  // namespace

std::unique_ptr<Storage> MeteredStorage(std::unique_ptr<Storage> base, const std::string& component) {
  return std::make_unique<Metered>(std::move(base), component);
}

}  // namespace cairn
