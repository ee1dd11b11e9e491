#include "storage/internal/path.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cairn {
namespace internal {

absl::Status ValidateRelativePath(absl::string_view path) {
  if (absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("path \"", path, "\" must be relative to the storage root"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("path \"", path, "\" escapes the storage root"));
    }
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("path contains a NUL byte");
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace cairn
