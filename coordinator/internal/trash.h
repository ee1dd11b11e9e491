// Deferred deletion of a deleted checkpoint's files on a local root.
//
// Retention deletes the previous checkpoint inside the commit that triggers
// it, and the save that committed waits for it. Unlinking big files is slow
// on some filesystems (ext4 mounted with online discard: ~60 ms per 256 MiB
// file here, so ~0.3 s added to every 1 GiB save with keep-last). Trash
// moves the files out of the checkpoint's directory instead (renames, a
// metadata operation) and unlinks them on a thread of its own. What a crash
// leaves in the trash is emptied by the next coordinator at start.
//
// Object stores delete by request, as fast as a rename would be: they do
// not use this.
#ifndef CAIRN_COORDINATOR_INTERNAL_TRASH_H_
#define CAIRN_COORDINATOR_INTERNAL_TRASH_H_

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// The trash directory, relative to the storage root. Job names cannot
// start with '.', so it is no job's.
inline constexpr char kTrashDir[] = ".cairn-trash";

class Trash {
 public:
  // `storage` (a local root) outlives this.
  explicit Trash(Storage* storage);
  ~Trash();  // stops the thread; what is left is emptied at the next start
  Trash(const Trash&) = delete;
  Trash& operator=(const Trash&) = delete;

  // Moves the files at `paths` (relative to the root; missing ones are
  // skipped) into a new directory of the trash, to be unlinked soon.
  absl::Status Discard(const std::vector<std::string>& paths);
  // Unlinks everything in the trash now (a coordinator's start).
  absl::Status Empty();

 private:
  void Loop();
  absl::Status Unlink(const std::string& dir);

  Storage* const storage_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // trash directories to unlink, guarded by mu_
  uint64_t next_ = 0;              // names the next directory, guarded by mu_
  bool stop_ = false;              // guarded by mu_
  std::thread thread_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_TRASH_H_
