// The local (POSIX) filesystem backend: "file:///ROOT" and plain paths.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "storage/backends/posix_files.h"
#include "storage/internal/path.h"
#include "storage/registry.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace {

using internal::DirName;
using internal::MakeDirs;
using internal::SyncDir;

class LocalStorage : public Storage {
 public:
  LocalStorage(std::string root, bool direct_io) : root_(std::move(root)), direct_io_(direct_io) {}

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      absl::string_view path) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(path));
    int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", full, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("stat", full, err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(full, " is not a regular file"));
    }
    return internal::NewPosixReadableFile(full, fd, static_cast<uint64_t>(st.st_size));
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      absl::string_view path) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(path));
    RETURN_IF_ERROR(MakeDirs(DirName(full)));
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    std::string temp = TemporaryNameOf(full, rng());
    if (direct_io_) {
      const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0644);
      if (fd >= 0) return internal::NewDirectWritableFile(full, temp, fd);
      // EINVAL: this filesystem (e.g. tmpfs) has no direct I/O; write through the cache.
      if (errno != EINVAL) return ErrnoStatus("create", temp, errno);
    }
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus("create", temp, errno);
    return internal::NewPosixWritableFile(full, temp, fd);
  }

  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(path));
    struct stat st;
    if (::stat(full.c_str(), &st) != 0) return ErrnoStatus("stat", full, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::StatusOr<bool> Exists(absl::string_view path) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(path));
    struct stat st;
    if (::stat(full.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return ErrnoStatus("stat", full, errno);
  }

  absl::Status Rename(absl::string_view from, absl::string_view to) override {
    ASSIGN_OR_RETURN(std::string src, Resolve(from));
    ASSIGN_OR_RETURN(std::string dst, Resolve(to));
    RETURN_IF_ERROR(MakeDirs(DirName(dst)));
    if (::rename(src.c_str(), dst.c_str()) != 0) return ErrnoStatus("rename", src, errno);
    RETURN_IF_ERROR(SyncDir(DirName(dst)));
    if (DirName(src) != DirName(dst)) RETURN_IF_ERROR(SyncDir(DirName(src)));
    return absl::OkStatus();
  }

  absl::Status RenameMany(const std::vector<std::pair<std::string, std::string>>& moves) override {
    std::set<std::string> made, touched;
    absl::Status status;
    for (const auto& [from, to] : moves) {
      auto src = Resolve(from);
      auto dst = Resolve(to);
      if (!src.ok()) status = src.status();
      if (status.ok() && !dst.ok()) status = dst.status();
      if (status.ok() && made.insert(DirName(*dst)).second) status = MakeDirs(DirName(*dst));
      if (status.ok() && ::rename(src->c_str(), dst->c_str()) != 0) status = ErrnoStatus("rename", *src, errno);
      if (!status.ok()) break;
      touched.insert(DirName(*dst));
      touched.insert(DirName(*src));
    }
    // The renames done are made durable even when a later one failed.
    for (const std::string& dir : touched) {
      absl::Status synced = SyncDir(dir);
      if (status.ok()) status = synced;
    }
    return status;
  }

  absl::Status Delete(absl::string_view path) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(path));
    if (::unlink(full.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("delete", full, errno);
    return absl::OkStatus();
  }

  absl::Status RemoveDirIfEmpty(absl::string_view dir) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(dir));
    if (::rmdir(full.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY &&
        errno != EEXIST) {
      return ErrnoStatus("rmdir", full, errno);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    ASSIGN_OR_RETURN(std::string full, Resolve(dir));
    std::vector<std::string> out;
    RETURN_IF_ERROR(ListInto(full, std::string(dir), &out));
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string uri() const override { return absl::StrCat("file://", root_); }

 private:
  absl::Status ListInto(const std::string& full, const std::string& rel,
                        std::vector<std::string>* out) {
    DIR* d = ::opendir(full.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) return absl::OkStatus();
      return ErrnoStatus("list", full, errno);
    }
    absl::Status s;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string child_full = absl::StrCat(full, "/", name);
      std::string child_rel = JoinPath(rel, name);
      struct stat st;
      if (::lstat(child_full.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        s = ListInto(child_full, child_rel, out);
        if (!s.ok()) break;
      } else if (S_ISREG(st.st_mode)) {
        out->push_back(child_rel);
      }
    }
    ::closedir(d);
    return s;
  }

  // Maps a relative name to a path under root_, refusing escapes.
  absl::StatusOr<std::string> Resolve(absl::string_view path) const {
    RETURN_IF_ERROR(internal::ValidateRelativePath(path));
    if (path.empty()) return root_;
    return root_ == "/" ? absl::StrCat("/", path) : absl::StrCat(root_, "/", path);
  }

  std::string root_;
  bool direct_io_;  // write new files with O_DIRECT where possible
};


absl::StatusOr<std::unique_ptr<Storage>> OpenFileUri(absl::string_view uri,
                                                     const StorageOptions& options) {
  absl::string_view path = uri;
  if (absl::ConsumePrefix(&path, "file://") && !absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage URI \"", uri, "\": file:// needs an absolute path"));
  }
  return NewLocalStorage(path, options.local_direct_io);
}

const StorageSchemeRegistration kFileScheme("file", OpenFileUri);

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> NewLocalStorage(absl::string_view root_dir,
                                                         bool direct_io) {
  std::string root(root_dir);
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root.empty()) root = ".";
  return std::unique_ptr<Storage>(new LocalStorage(root, direct_io));
}

}  // namespace cairn
