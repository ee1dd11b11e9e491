// Restoring a checkpoint straight into a local safetensors file, tensor by
// tensor and range by range, with memory bounded by a few 8 MiB windows per
// thread instead of the whole checkpoint:
//
//   1. the index is read once and the request planned (restore_plan.h);
//   2. the safetensors header is computed and written first, so every
//      tensor's place in the output is known;
//   3. each whole stored tensor is copied range by range: from a local
//      data file, each 8 MiB window is mapped, checksummed from the page
//      cache and copied into the output by copy_file_range (no copy through
//      user memory); from remote storage, read into a reused buffer,
//      checksummed and written. The tensor's CRC32C is compared once its
//      last window is through; a mismatch fails the restore (DataLoss naming
//      tensor, file and offset) and removes the output.
//   4. slices cut from stored tensors and partitioned tensors reassembled
//      from slices go through BundleReader as before (memory: that tensor).
//
// The output is written to a temporary file beside `dst_path`, made durable
// (writeback starts as windows are written; fsync at the end) and renamed
// over `dst_path`: nothing is visible at `dst_path` before it is whole. It is
// byte-identical to what WriteRestoredTensors writes for the same request.
#ifndef CAIRN_CLIENT_INTERNAL_STREAM_RESTORE_H_
#define CAIRN_CLIENT_INTERNAL_STREAM_RESTORE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/client.h"
#include "client/progress.h"

namespace cairn {
namespace internal {

struct StreamRestoreOptions {
  // Fail (FailedPrecondition) instead of skipping tensors a safetensors file
  // cannot hold (strings, complex). Default: skip, each named through `warn`.
  bool strict = false;
  std::function<void(const std::string&)> warn;
  // Tensors copied in parallel (default 2; at least 1).
  int threads = 2;
};

struct StreamRestoreSummary {
  int64_t tensors = 0;  // tensors written
  uint64_t bytes = 0;   // their data bytes
  int64_t skipped = 0;  // tensors a safetensors file cannot hold
};

// Restores what `request` selects (RestoreRequest::into and map_files are
// ignored) from checkpoint `prefix_uri` into the local file `dst_path`.
// `progress` counts the restored bytes per window.
absl::StatusOr<StreamRestoreSummary> StreamRestoreToSafetensors(
    absl::string_view prefix_uri, const RestoreRequest& request, const std::string& dst_path,
    const StreamRestoreOptions& options, const ProgressFn& progress = nullptr,
    const StorageOptions& storage = {});

// Restores a whole checkpoint (every tensor, no slices asked) to the local
// checkpoint prefix `dst_prefix` by copying its files whole, window by
// window as above — the same number of data files, the index byte for byte
// — checking every stored entry's CRC32C on the way (string entries
// through BundleReader). Data files are published first, then the index,
// each from a temporary file, fsync'd and renamed: a reader that finds
// DST.index finds a whole checkpoint. `progress` counts data file bytes.
absl::StatusOr<StreamRestoreSummary> CopyCheckpointFiles(
    absl::string_view prefix_uri, const std::string& dst_prefix, int threads,
    const ProgressFn& progress = nullptr, const StorageOptions& storage = {});

// The checkpoint prefix a restore destination names: DST itself, or, when
// DST is a directory (one that exists locally, or any path ending in '/'),
// DST/variables (TensorFlow's layout) instead of hidden "DST/.index" files
// or files beside the directory.
std::string CheckpointPrefixAt(const std::string& dst);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_STREAM_RESTORE_H_
