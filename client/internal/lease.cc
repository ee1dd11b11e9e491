#include "client/internal/lease.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/layout.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

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

namespace {

absl::Status CheckInventorySizes(const CheckpointSummary& checkpoint,
                                 const StorageOptions& storage_options) {
  // Inventory paths are relative to the storage root: the prefix URI is
  // ROOT/JOB/ckpt-STEP/variables.
  const std::string suffix = absl::StrCat("/", CheckpointPrefix(checkpoint.job, checkpoint.step));
  if (!absl::EndsWith(checkpoint.prefix_uri, suffix)) {
    return absl::InternalError(absl::StrCat("checkpoint ", checkpoint.job, "/", checkpoint.step,
                                            ": unexpected prefix ", checkpoint.prefix_uri));
  }
  const std::string root =
      checkpoint.prefix_uri.substr(0, checkpoint.prefix_uri.size() - suffix.size());
  ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(root.empty() ? "/" : root, storage_options));
  for (const CheckpointFile& f : checkpoint.files) {
    auto file = storage->NewReadableFile(f.path);
    if (!file.ok()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", checkpoint.job, "/", checkpoint.step,
                                              ": file ", f.path, " of its inventory: ",
                                              file.status().message()));
    }
    if ((*file)->Size() != f.size) {
      return absl::DataLossError(absl::StrCat(
          "checkpoint ", checkpoint.job, "/", checkpoint.step, ": ", f.path, " is ",
          (*file)->Size(), " bytes, but ", f.size,
          " were committed: the storage holds other files than this coordinator's catalog "
          "recorded (rewritten, or another catalog over the same root?)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ScopedLease> LeaseForRestore(Client* client, const CheckpointSummary& checkpoint,
                                            const StorageOptions& storage) {
  absl::StatusOr<std::string> id =
      client->AcquireLease(checkpoint.job, checkpoint.step, kRestoreLeaseTtlMs);
  ScopedLease lease;
  if (!absl::IsUnimplemented(id.status())) {
    if (!id.ok()) return id.status();
    lease = ScopedLease(client, *std::move(id));
  }
  RETURN_IF_ERROR(CheckInventorySizes(checkpoint, storage));
  return lease;
}

}  // namespace internal
}  // namespace cairn
