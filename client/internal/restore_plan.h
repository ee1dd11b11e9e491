// Which stored entries a restore reads, and how: shared by RestoreFromPrefix
// (tensors into memory) and the streaming restore to a file
// (stream_restore.h).
#ifndef CAIRN_CLIENT_INTERNAL_RESTORE_PLAN_H_
#define CAIRN_CLIENT_INTERNAL_RESTORE_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/client.h"
#include "storage/bundle/bundle_reader.h"

namespace cairn {
namespace internal {

// One tensor (or slice) to restore, with its size in bytes once restored
// (string tensors: one byte per element), for scheduling and progress.
struct RestoreItem {
  BundleEntry entry;
  std::optional<TensorSlice> slice;
  uint64_t cost = 0;
};

// NotFound naming the tensor and the checkpoint.
absl::Status TensorNotFound(const std::string& name, absl::string_view prefix_uri);

// The items `request` selects from `reader`, in key order (every tensor, or
// the names in `tensors` and `slices`), after checking that every name
// exists, every requested slice fits its tensor, and every `full_shapes`
// entry matches; errors name the tensor and `prefix_uri`. Does not look at
// `into` (RestoreFromPrefix checks those).
absl::StatusOr<std::vector<RestoreItem>> PlanRestore(const BundleReader& reader,
                                                    const RestoreRequest& request,
                                                    absl::string_view prefix_uri);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_RESTORE_PLAN_H_
