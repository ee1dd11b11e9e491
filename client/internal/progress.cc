#include "client/internal/progress.h"

#include <algorithm>

namespace cairn {
namespace internal {

void ProgressCounter::Begin() {
  if (!fn_) return;
  std::lock_guard<std::mutex> lock(mu_);
  ReportLocked();
}

void ProgressCounter::Add(uint64_t bytes) {
  if (!fn_) return;
  std::lock_guard<std::mutex> lock(mu_);
  done_ = bytes >= total_ - done_ ? total_ : done_ + bytes;
  ReportLocked();
}

void ProgressCounter::Finish() {
  if (!fn_) return;
  std::lock_guard<std::mutex> lock(mu_);
  done_ = total_;
  if (!reported_total_) ReportLocked();
}

void ProgressCounter::ReportLocked() {
  if (done_ == total_) {
    if (reported_total_) return;  // (total, total) is reported once
    reported_total_ = true;
  }
  fn_(done_, total_);
}

}  // namespace internal
}  // namespace cairn
