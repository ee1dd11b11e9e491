// Offline checkpoint tools behind `cairn inspect`, `cairn verify` and
// `cairn convert`. Each works on a checkpoint prefix given as a path or URI
// ("/d/ckpt-1/variables", "file:///d/ckpt-1/variables") and never modifies
// its input.
//
//   ASSIGN_OR_RETURN(std::string json, cairn::InspectCheckpoint(prefix, /*json=*/true));
//   ASSIGN_OR_RETURN(cairn::VerifyReport r, cairn::VerifyCheckpoint(prefix));
//   RETURN_IF_ERROR(cairn::ConvertSafetensorsToBundle("in.safetensors", "/d/out", {3}));
#ifndef CAIRN_CLIENT_TOOLS_H_
#define CAIRN_CLIENT_TOOLS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/progress.h"
#include "storage/storage.h"

namespace cairn {

// A human-readable listing, or the JSON of ../shared/CONTRACT.md:
// {"num_shards": M, "tensors": [{"name", "dtype", "shape", "shard", "offset",
//  "size", "crc32c", "slices": [...]}]} (slice entries listed under their
// tensor; "crc32c" is the masked value as stored).
absl::StatusOr<std::string> InspectCheckpoint(absl::string_view prefix_uri, bool json,
                                             const StorageOptions& storage = {});

struct VerifyReport {
  uint64_t tensors = 0;        // whole tensors and slice entries checked
  uint64_t bytes = 0;          // data bytes read and checksummed
  std::vector<std::string> problems;  // each names tensor, file and offset
  bool ok() const { return problems.empty(); }
};
// Reads every tensor and checks every checksum. Problems with individual
// tensors are collected in the report; an error status means the index
// itself could not be read. `progress` (client/progress.h) counts the data
// bytes of the tensors checked, one tensor at a time (a corrupt one counts
// as checked).
absl::StatusOr<VerifyReport> VerifyCheckpoint(absl::string_view prefix_uri,
                                              const ProgressFn& progress = nullptr,
                                              const StorageOptions& storage = {});

// A file and the digests the catalog recorded for it at commit.
struct ExpectedFile {
  std::string path;     // relative to the storage root
  uint64_t size = 0;
  uint32_t crc32c = 0;  // of the whole file, unmasked; 0 = not recorded
  std::string sha256;   // raw; empty = not recorded (writers record it only
                        // with --inventory-sha256=true, and for indexes)
};
// `cairn verify --deep`: reads every file whole and compares its size,
// CRC32C and SHA-256 with the recorded ones. Each mismatch or unreadable file
// is one problem naming the file; `bytes` counts what was read. `progress`
// counts the recorded sizes of the files, per read of up to 8 MiB (a file
// that cannot be checked counts as done).
absl::StatusOr<VerifyReport> VerifyFiles(absl::string_view root_uri,
                                         const std::vector<ExpectedFile>& files,
                                         const ProgressFn& progress = nullptr,
                                         const StorageOptions& storage = {});

class Client;

// `cairn adopt`: registers existing TensorFlow checkpoints — a directory with
// a `checkpoint` state file naming checkpoints — with the service. A
// checkpoint's step is the last number in its name ("ckpt-6" -> 6,
// "model.ckpt-1000" -> 1000, "training/cp-0005.ckpt" -> 5), or with
// `step_pattern` (an ECMAScript regex with exactly one capture group, searched
// in the name, e.g. "epoch(\d+)") that group; a name whose last number is the
// fraction of a decimal ("loss0,015") or two names with one step fail.
// Each listed checkpoint whose files are there is verified (every CRC), then
// saved through the service as step N of `job` (one shard; partitioned
// tensors keep their slices), so retention and restore work for it. Listed
// checkpoints without files are reported as missing; steps already in the
// catalog are skipped. `log` receives one line per checkpoint, and
// `checkpoints` says what happened to each, in the state file's order.
struct AdoptedCheckpoint {
  std::string path;             // as the state file lists it
  std::optional<int64_t> step;  // none if the name gave none
  std::string outcome;          // "adopted", "already_present", "missing", "failed"
  std::string detail;           // what was saved, or why not
};
struct AdoptResult {
  std::vector<int64_t> adopted;
  std::vector<int64_t> already_present;
  std::vector<std::string> missing;  // listed in the state file, files absent
  std::vector<std::string> failed;   // corrupt or unsaveable, with the reason
  std::vector<AdoptedCheckpoint> checkpoints;
};
absl::StatusOr<AdoptResult> AdoptCheckpoints(Client& client, const std::string& job,
                                             absl::string_view dir_uri,
                                             const std::function<void(const std::string&)>& log,
                                             const StorageOptions& storage = {},
                                             absl::string_view step_pattern = "");

struct ConvertOptions {
  int shards = 1;       // data files to spread tensors over (bundle output)
  bool strict = false;  // fail instead of skipping tensors safetensors cannot hold
  // Receives warnings (skipped tensors, dropped metadata). Default: none.
  std::function<void(const std::string&)> warn;
  StorageOptions storage;  // how to reach remote sources and destinations
  // Bytes of tensor data copied, of all that will be (client/progress.h):
  // per read of up to 8 MiB from a safetensors file, per tensor from a
  // checkpoint. Merging a multi-shard output moves no tensor data and is
  // not counted. Default: none.
  ProgressFn progress = nullptr;
};

// safetensors → bundle. Tensors with "cairn.slice.NAME" metadata become
// slices of NAME. With shards > 1 the tensors are balanced by size over
// that many data files (written as parts and merged, as TensorFlow does).
absl::Status ConvertSafetensorsToBundle(absl::string_view src_path, absl::string_view dst_prefix,
                                        const ConvertOptions& options);

// bundle → safetensors. Whole tensors are written whole (partitioned ones
// reassembled); a tensor of which the bundle holds only some slices is
// written as the box those slices form, marked with "cairn.slice.NAME"
// metadata (FailedPrecondition if they do not form one box). Tensors
// safetensors cannot hold (string, complex, ...) are skipped with a warning,
// or fail with `strict`.
absl::Status ConvertBundleToSafetensors(absl::string_view src_prefix, absl::string_view dst_path,
                                        const ConvertOptions& options);

}  // namespace cairn

#endif  // CAIRN_CLIENT_TOOLS_H_
