// Where a job's checkpoints live under a storage root
// (../shared/CONTRACT.md "Layout of a job's checkpoints"):
//
//   ROOT/JOB/ckpt-STEP/variables.index
//   ROOT/JOB/ckpt-STEP/variables.data-0000i-of-0000N
//   ROOT/JOB/checkpoint                      TensorFlow CheckpointState
//   ROOT/JOB/.cairn-staging/ckpt-STEP/...    shards of uncommitted saves
//
// Nothing appears under ckpt-STEP/ before the checkpoint is committed.
#ifndef CAIRN_PROTO_LAYOUT_H_
#define CAIRN_PROTO_LAYOUT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cairn {

// Job names: 1–128 characters of [A-Za-z0-9._-], not starting with '.'.
absl::Status ValidateJobName(absl::string_view job);
// Steps: 0 … 2^63−1.
absl::Status ValidateStep(int64_t step);

std::string CheckpointDir(absl::string_view job, int64_t step);     // JOB/ckpt-STEP
std::string CheckpointPrefix(absl::string_view job, int64_t step);  // JOB/ckpt-STEP/variables
std::string StateFilePath(absl::string_view job);                   // JOB/checkpoint
// "ckpt-STEP/variables": how the state file names a checkpoint.
std::string StateFileEntry(int64_t step);
std::string StagingDir(absl::string_view job, int64_t step);  // JOB/.cairn-staging/ckpt-STEP

}  // namespace cairn

#endif  // CAIRN_PROTO_LAYOUT_H_
