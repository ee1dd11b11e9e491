#include "coordinator/internal/trash.h"

#include <chrono>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "observability/log.h"
#include "observability/sync_point.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Trash::Trash(Storage* storage) : storage_(storage) {
  // Directory names unique across coordinators that ever used this root.
  next_ = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
          (static_cast<uint64_t>(std::random_device()()) << 32);
  thread_ = std::thread([this] { Loop(); });
}

Trash::~Trash() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::Status Trash::Discard(const std::vector<std::string>& paths) {
  std::string dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dir = absl::StrCat(kTrashDir, "/", absl::Hex(next_++, absl::kZeroPad16));
  }
  std::vector<std::pair<std::string, std::string>> moves;
  std::set<std::string> names;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(bool exists, storage_->Exists(path));
    if (!exists) continue;  // deleted before (a deletion finished after a crash)
    std::string name = BaseName(path);
    while (!names.insert(name).second) name = absl::StrCat("_", name);
    moves.emplace_back(path, absl::StrCat(dir, "/", name));
  }
  if (moves.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(storage_->RenameMany(moves));
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(dir));
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status Trash::Unlink(const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, storage_->List(dir));
  CAIRN_SYNC_POINT("before_unlink");
  RETURN_IF_ERROR(storage_->DeleteMany(files));
  // Directories left empty, deepest first (List names files only).
  std::set<std::string, std::greater<>> dirs;
  for (const std::string& f : files) {
    for (size_t slash = f.rfind('/'); slash != std::string::npos && slash > dir.size();
         slash = f.rfind('/', slash - 1)) {
      dirs.insert(f.substr(0, slash));
    }
  }
  for (const std::string& d : dirs) storage_->RemoveDirIfEmpty(d).IgnoreError();
  storage_->RemoveDirIfEmpty(dir).IgnoreError();
  return absl::OkStatus();
}

absl::Status Trash::Empty() { return Unlink(kTrashDir); }

void Trash::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const std::string dir = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    absl::Status s = Unlink(dir);
    if (!s.ok()) {
      // Left for the next start's Empty(); the checkpoint is deleted either way.
      logging::Log(absl::StrCat("trash: unlinking ", dir, ": ", s.message()));
    }
    lock.lock();
  }
}

}  // namespace internal
}  // namespace cairn
