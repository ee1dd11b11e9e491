#ifndef CAIRN_STORAGE_INTERNAL_PATH_H_
#define CAIRN_STORAGE_INTERNAL_PATH_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

// OK if `path` is a relative '/'-separated name with no ".." component and no
// NUL byte, i.e. it cannot name anything outside a storage root.
absl::Status ValidateRelativePath(absl::string_view path);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_INTERNAL_PATH_H_
