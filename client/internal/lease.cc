#include "client/internal/lease.h"

#include <utility>

namespace cairn {
namespace internal {

ScopedLease& ScopedLease::operator=(ScopedLease&& other) noexcept {
  if (this != &other) {
    Release();
    client_ = other.client_;
    lease_id_ = std::move(other.lease_id_);
    other.client_ = nullptr;
    other.lease_id_.clear();
  }
  return *this;
}

void ScopedLease::Release() {
  if (client_ != nullptr && !lease_id_.empty()) {
    // Best effort: an unreleased lease expires after its ttl.
    client_->ReleaseLease(lease_id_).IgnoreError();
  }
  client_ = nullptr;
  lease_id_.clear();
}

absl::StatusOr<ScopedLease> LeaseForRestore(Client* client, const std::string& job,
                                            int64_t step) {
  absl::StatusOr<std::string> lease = client->AcquireLease(job, step, kRestoreLeaseTtlMs);
  if (absl::IsUnimplemented(lease.status())) return ScopedLease();
  if (!lease.ok()) return lease.status();
  return ScopedLease(client, *std::move(lease));
}

}  // namespace internal
}  // namespace cairn
