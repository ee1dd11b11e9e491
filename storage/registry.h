// How backends make themselves known to OpenStorage (storage/storage.h).
//
// Each backend registers the URI schemes it serves from its own file, with a
// namespace-scope registration object, as TensorStore's kvstore drivers do:
//
//   const StorageSchemeRegistration kS3("s3", OpenS3Uri);
//
// OpenStorage then dispatches on the text before "://"; a URI without one is
// a local path and goes to "file". The backends are linked whole into every
// program (storage/CMakeLists.txt), so no registration is dropped by the
// linker.
#ifndef CAIRN_STORAGE_REGISTRY_H_
#define CAIRN_STORAGE_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"

namespace cairn {

// Opens a backend for a whole URI (scheme included).
using StorageOpener = absl::StatusOr<std::unique_ptr<Storage>> (*)(absl::string_view uri,
                                                                  const StorageOptions& options);

class StorageSchemeRegistration {
 public:
  // Registers `opener` for "SCHEME://..." URIs. Registering a scheme twice
  // aborts the program (two backends claiming one scheme is a build error).
  StorageSchemeRegistration(absl::string_view scheme, StorageOpener opener);
};

// The registered schemes, sorted (for messages and tests).
std::vector<std::string> RegisteredStorageSchemes();

}  // namespace cairn

#endif  // CAIRN_STORAGE_REGISTRY_H_
