// The POSIX backend's file objects and filesystem helpers, shared by the
// backend (posix_storage.cc) and its files (posix_files.cc). Internal.
#ifndef CAIRN_STORAGE_BACKENDS_POSIX_FILES_H_
#define CAIRN_STORAGE_BACKENDS_POSIX_FILES_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// (ErrnoStatus, errno as a Status, is storage.h's.)
std::string DirName(const std::string& path);
absl::Status SyncDir(const std::string& dir);
// mkdir -p, syncing each new directory's parent.
absl::Status MakeDirs(const std::string& dir);

// Each takes ownership of `fd`. The writers write `temp` and publish it as
// `final_path` on Close (fsync, rename, directory fsync).
std::unique_ptr<ReadableFile> NewPosixReadableFile(std::string name, int fd, uint64_t size);
std::unique_ptr<WritableFile> NewPosixWritableFile(std::string final_path, std::string temp, int fd);
// `fd` opened with O_DIRECT: aligned double-buffered writes on a thread.
std::unique_ptr<WritableFile> NewDirectWritableFile(std::string final_path, std::string temp, int fd);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_POSIX_FILES_H_
