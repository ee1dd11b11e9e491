// Checks of what a client sends before any RPC, shared by the client library
// and the CLI (which reports a bad job name or step as a usage error).
#ifndef CAIRN_CLIENT_INTERNAL_VALIDATE_H_
#define CAIRN_CLIENT_INTERNAL_VALIDATE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/client.h"

namespace cairn {
namespace internal {


// Metrics: non-empty names, finite values.
absl::Status ValidateMetrics(const std::map<std::string, double>& metrics);


// Everything SaveShard checks before talking to the coordinator: the
// options (ValidateSaveOptions), and each tensor (see ValidateSaveTensors),
// at least one when num_shards is 1. InvalidArgument naming the culprit.
absl::Status ValidateSaveShard(const SaveShardOptions& options,
                               const std::vector<SaveTensor>& tensors);
// Job, step, 0 <= shard_index < num_shards, metrics.
absl::Status ValidateSaveOptions(const SaveShardOptions& options);
// InvalidArgument "nothing to save" for a lone shard without tensors.
absl::Status ValidateNotEmpty(const SaveShardOptions& options, size_t num_tensors);

// Each tensor: a non-empty name without NUL bytes; a storable dtype; a shape
// without negative dimensions whose element count does not overflow; a slice
// (if any) of the same rank that fits the shape; data of exactly
// elements * element size bytes (overflow-checked) for fixed-size dtypes, or,
// for DT_STRING, exactly `elements` strings, no data and no slice. A name may
// appear once as a whole tensor, or as any number of distinct slices with the
// same dtype and full shape. InvalidArgument naming the tensor otherwise.
absl::Status ValidateSaveTensors(const std::vector<SaveTensor>& tensors);

// The same checks one tensor at a time, for tensors given while a save is
// already streaming (SaveStream). Names are kept as views: each tensor must
// outlive the checker, at the same address.
class SaveTensorChecker {
 public:
  SaveTensorChecker();
  ~SaveTensorChecker();
  void Reserve(size_t n);
  // `t` is the save's tensor #index (for messages).
  absl::Status Add(const SaveTensor& t, size_t index);

 private:
  struct Seen;
  std::unique_ptr<Seen> seen_;
};


}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_VALIDATE_H_
