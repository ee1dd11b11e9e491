// Opening the storage that holds a checkpoint prefix or a file named by URI.
#ifndef CAIRN_CLIENT_INTERNAL_LOCATE_H_
#define CAIRN_CLIENT_INTERNAL_LOCATE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// A storage backend with a checkpoint prefix (or file name) inside it.
struct Located {
  std::unique_ptr<Storage> storage;
  std::string name;
};

// "/d/ckpt-1/variables" → the storage at "/d" and the name "ckpt-1/variables"
// (SplitPrefixUri), opened with `options`.
absl::StatusOr<Located> Locate(absl::string_view uri, const StorageOptions& options);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_LOCATE_H_
