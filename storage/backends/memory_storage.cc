// An in-memory storage backend: for tests, fuzzing and as a reference
// implementation of the Storage contract.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "storage/internal/path.h"
#include "storage/registry.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace {

struct Files {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const std::string>> files;  // GUARDED_BY(mu)
};

class MemoryReadableFile : public ReadableFile {
 public:
  MemoryReadableFile(std::string name, std::shared_ptr<const std::string> data)
      : name_(std::move(name)), data_(std::move(data)) {}
  absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const override {
    if (offset > data_->size() || n > data_->size() - offset) {
      return absl::OutOfRangeError(absl::StrCat("read of ", n, " bytes at offset ", offset,
                                                " is past the end of ", name_));
    }
    std::copy_n(data_->data() + offset, n, dst);
    return absl::OkStatus();
  }
  uint64_t Size() const override { return data_->size(); }
  const std::string& name() const override { return name_; }

 private:
  std::string name_;
  std::shared_ptr<const std::string> data_;
};

class MemoryWritableFile : public WritableFile {
 public:
  MemoryWritableFile(std::shared_ptr<Files> files, std::string name)
      : files_(std::move(files)), name_(std::move(name)) {}
  absl::Status Append(absl::string_view data) override {
    if (done_) return absl::FailedPreconditionError(absl::StrCat(name_, " is closed"));
    buffer_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  uint64_t Size() const override { return buffer_.size(); }
  absl::Status Close() override {
    if (done_) return absl::FailedPreconditionError(absl::StrCat(name_, " is closed"));
    done_ = true;
    std::lock_guard<std::mutex> lock(files_->mu);
    files_->files[name_] = std::make_shared<const std::string>(std::move(buffer_));
    return absl::OkStatus();
  }
  void Abandon() override {
    done_ = true;
    buffer_.clear();
  }
  const std::string& name() const override { return name_; }

 private:
  std::shared_ptr<Files> files_;
  std::string name_;
  std::string buffer_;
  bool done_ = false;
};

class MemoryStorage : public Storage {
 public:
  MemoryStorage(std::shared_ptr<Files> files, std::string uri)
      : files_(std::move(files)), uri_(std::move(uri)) {}

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      absl::string_view path) override {
    RETURN_IF_ERROR(internal::ValidateRelativePath(path));
    std::lock_guard<std::mutex> lock(files_->mu);
    auto it = files_->files.find(std::string(path));
    if (it == files_->files.end()) return NotFound(path);
    return std::unique_ptr<ReadableFile>(new MemoryReadableFile(std::string(path), it->second));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      absl::string_view path) override {
    RETURN_IF_ERROR(internal::ValidateRelativePath(path));
    return std::unique_ptr<WritableFile>(new MemoryWritableFile(files_, std::string(path)));
  }
  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    std::lock_guard<std::mutex> lock(files_->mu);
    auto it = files_->files.find(std::string(path));
    if (it == files_->files.end()) return NotFound(path);
    return it->second->size();
  }
  absl::StatusOr<bool> Exists(absl::string_view path) override {
    std::lock_guard<std::mutex> lock(files_->mu);
    if (files_->files.count(std::string(path))) return true;
    // A "directory" exists if some file lies beneath it.
    const std::string dir = absl::StrCat(path, "/");
    auto it = files_->files.lower_bound(dir);
    return it != files_->files.end() && absl::StartsWith(it->first, dir);
  }
  absl::Status Rename(absl::string_view from, absl::string_view to) override {
    RETURN_IF_ERROR(internal::ValidateRelativePath(to));
    std::lock_guard<std::mutex> lock(files_->mu);
    auto it = files_->files.find(std::string(from));
    if (it == files_->files.end()) return NotFound(from);
    auto data = it->second;
    files_->files.erase(it);
    files_->files[std::string(to)] = std::move(data);
    return absl::OkStatus();
  }
  absl::Status Delete(absl::string_view path) override {
    std::lock_guard<std::mutex> lock(files_->mu);
    files_->files.erase(std::string(path));
    return absl::OkStatus();
  }
  absl::Status RemoveDirIfEmpty(absl::string_view) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    std::lock_guard<std::mutex> lock(files_->mu);
    std::vector<std::string> out;
    const std::string prefix = dir.empty() ? "" : absl::StrCat(dir, "/");
    for (auto it = files_->files.lower_bound(prefix);
         it != files_->files.end() && absl::StartsWith(it->first, prefix); ++it) {
      out.push_back(it->first);
    }
    return out;
  }
  std::string uri() const override { return uri_; }

 private:
  absl::Status NotFound(absl::string_view path) const {
    return absl::NotFoundError(absl::StrCat(JoinPath(uri_, path), ": no such file"));
  }
  std::shared_ptr<Files> files_;
  std::string uri_;
};

// "memory://NAME": every opening of one NAME in a process shares its files
// (so a test can hand a URI to code that opens its own storage).
absl::StatusOr<std::unique_ptr<Storage>> OpenMemoryUri(absl::string_view uri,
                                                       const StorageOptions&) {
  static std::mutex mu;
  static auto* stores = new std::map<std::string, std::shared_ptr<Files>, std::less<>>;
  absl::string_view name = uri.substr(std::string_view("memory://").size());
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<Files>& files = (*stores)[std::string(name)];
  if (!files) files = std::make_shared<Files>();
  return std::unique_ptr<Storage>(new MemoryStorage(files, std::string(uri)));
}

const StorageSchemeRegistration kMemoryScheme("memory", OpenMemoryUri);

}  // namespace

std::unique_ptr<Storage> NewMemoryStorage() {
  return std::make_unique<MemoryStorage>(std::make_shared<Files>(), "memory://");
}

}  // namespace cairn
