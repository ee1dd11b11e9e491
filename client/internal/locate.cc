#include "client/internal/locate.h"

#include <utility>

#include "storage/status_macros.h"

namespace cairn {
namespace internal {

absl::StatusOr<Located> Locate(absl::string_view uri, const StorageOptions& options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(uri));
  Located out;
  ASSIGN_OR_RETURN(out.storage, OpenStorage(split.root_uri, options));
  out.name = std::move(split.prefix);
  return out;
}

}  // namespace internal
}  // namespace cairn
