// The library's side of progress reporting: counts an operation's bytes and
// calls its ProgressFn under the contract of client/progress.h.
#ifndef CAIRN_CLIENT_INTERNAL_PROGRESS_H_
#define CAIRN_CLIENT_INTERNAL_PROGRESS_H_

#include <cstdint>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "client/progress.h"

namespace cairn {
namespace internal {

// One operation's progress. Thread-safe: Add may be called from any number
// of threads; the callback is called under a lock (never twice at once),
// with `done` clamped to the total and never decreasing. With an empty
// callback every method does nothing.
class ProgressCounter {
 public:
  // `fn` is copied; `total` is the bytes the operation expects to process.
  ProgressCounter(ProgressFn fn, uint64_t total) : fn_(std::move(fn)), total_(total) {}

  // Reports (0, total). Call once, before any data moves.
  void Begin();
  // Counts `bytes` more and reports.
  void Add(uint64_t bytes);
  // Reports (total, total) unless that was already reported. Call on success.
  void Finish();

 private:
  void ReportLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ProgressFn fn_;
  const uint64_t total_;
  std::mutex mu_;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  bool reported_total_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_PROGRESS_H_
