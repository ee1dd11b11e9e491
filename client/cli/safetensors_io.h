// The CLI's side of save and restore: turning a safetensors file into the
// SaveTensors of one shard, and writing restored tensors to a safetensors
// file or a checkpoint prefix.
#ifndef CAIRN_CLIENT_CLI_SAFETENSORS_IO_H_
#define CAIRN_CLIENT_CLI_SAFETENSORS_IO_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"

namespace cairn {
namespace cli {

using WarnFn = std::function<void(const std::string&)>;

// A safetensors file mapped read-only into memory, presented as the
// SaveTensors of one shard. Their `data` views point into the mapping, so
// they stay valid as long as this object lives; nothing is copied.
// Tensors with "cairn.slice.NAME" metadata become slices of NAME (the
// metadata must parse and match the tensor's shape); other metadata is not
// saved and is reported through `warn`.
class SafetensorsSource {
 public:
  // `path` is a local path or a file:// URI. InvalidArgument naming the file
  // and tensor for malformed content, NotFound if absent.
  static absl::StatusOr<std::unique_ptr<SafetensorsSource>> Open(const std::string& path,
                                                                 const WarnFn& warn);
  ~SafetensorsSource();
  SafetensorsSource(const SafetensorsSource&) = delete;
  SafetensorsSource& operator=(const SafetensorsSource&) = delete;

  const std::vector<SaveTensor>& tensors() const { return tensors_; }
  // Sum of the tensors' data sizes.
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  SafetensorsSource() = default;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<SaveTensor> tensors_;
  uint64_t data_bytes_ = 0;
};

struct RestoreOutputOptions {
  // Fail (FailedPrecondition) instead of skipping tensors a safetensors file
  // cannot hold.
  bool strict = false;
  WarnFn warn;  // receives one warning per skipped tensor
  StorageOptions storage;  // how to reach a remote destination
};

struct RestoreOutputSummary {
  int64_t tensors = 0;   // tensors written
  uint64_t bytes = 0;    // their data bytes (string values counted by length)
  int64_t skipped = 0;   // tensors a safetensors file cannot hold
};

// True if `dst` names a safetensors file (ends in ".safetensors"); otherwise
// it is a checkpoint prefix.
bool IsSafetensorsPath(const std::string& dst);

// Writes `tensors` to `dst`, atomically through the storage API:
//  - a .safetensors file: whole tensors whole; a tensor restored as a slice
//    that is not the whole tensor holds the slice's data, marked with
//    "cairn.slice.NAME" = "FULL_SHAPE SLICE" metadata. Tensors safetensors
//    cannot hold (string, complex, ...) are skipped with a warning, or fail
//    with `strict`.
//  - a checkpoint prefix: a one-data-file bundle; slices are added as slices
//    of their full tensor, strings as string tensors.
absl::StatusOr<RestoreOutputSummary> WriteRestoredTensors(const RestoredTensors& tensors,
                                                          const std::string& dst,
                                                          const RestoreOutputOptions& options);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_CLIENT_CLI_SAFETENSORS_IO_H_
