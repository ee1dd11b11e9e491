// What a restore through the coordinator does before reading: the lease it
// holds on its checkpoint, so that retention cannot delete the files while
// they are read, and the check that the files are the ones the catalog
// recorded. Shared by Client::Restore and `cairn restore --coordinator`.
#ifndef CAIRN_CLIENT_INTERNAL_LEASE_H_
#define CAIRN_CLIENT_INTERNAL_LEASE_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "client/client.h"

namespace cairn {
namespace internal {

// How long a restore's lease lasts if it is never released (the client died).
constexpr int64_t kRestoreLeaseTtlMs = 60 * 60 * 1000;

// A held lease, released (best effort) on destruction or Release(). Empty
// (nothing held) when default-constructed or moved from.
class ScopedLease {
 public:
  ScopedLease() = default;
  ScopedLease(Client* client, std::string lease_id)
      : client_(client), lease_id_(std::move(lease_id)) {}
  ScopedLease(ScopedLease&& other) noexcept { *this = std::move(other); }
  ScopedLease& operator=(ScopedLease&& other) noexcept;
  ScopedLease(const ScopedLease&) = delete;
  ScopedLease& operator=(const ScopedLease&) = delete;
  ~ScopedLease() { Release(); }

  bool held() const { return !lease_id_.empty(); }
  const std::string& id() const { return lease_id_; }

  // Releases the lease now. A failure is ignored: the lease expires by
  // itself, and the restore it protected is not affected. Idempotent.
  void Release();

 private:
  Client* client_ = nullptr;
  std::string lease_id_;
};

// Prepares a restore of `checkpoint` (committed, from Client::Get): leases
// it (ttl kRestoreLeaseTtlMs), then checks that every file of its inventory
// exists with the size the catalog recorded at commit (one metadata read per
// file), so a root rewritten by something else (another catalog, a person)
// is caught before its bytes are taken for this checkpoint's: DataLoss. A
// coordinator that predates leases (UNIMPLEMENTED; it has no retention
// either) yields an empty ScopedLease; any other failure is returned, e.g.
// NotFound when the checkpoint is gone.
absl::StatusOr<ScopedLease> LeaseForRestore(Client* client, const CheckpointSummary& checkpoint,
                                            const StorageOptions& storage);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_LEASE_H_
