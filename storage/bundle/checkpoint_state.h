// The TensorFlow `checkpoint` state file (spec §12): a text-format
// tensorflow.CheckpointState naming the newest checkpoint and the retained
// ones, oldest first, with parallel timestamps.
#ifndef CAIRN_STORAGE_BUNDLE_CHECKPOINT_STATE_H_
#define CAIRN_STORAGE_BUNDLE_CHECKPOINT_STATE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {

struct CheckpointStateFile {
  std::string model_checkpoint_path;
  std::vector<std::string> all_model_checkpoint_paths;   // oldest first
  std::vector<double> all_model_checkpoint_timestamps;   // Unix seconds, parallel
  double last_preserved_timestamp = 0;
};

// Text format as Python's text_format writes it (one field per line, strings
// double-quoted with C escapes).
std::string FormatStateFile(const CheckpointStateFile& state);
// Parses the fields above; unknown fields are an error. InvalidArgument.
absl::StatusOr<CheckpointStateFile> ParseStateFile(absl::string_view text);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_CHECKPOINT_STATE_H_
