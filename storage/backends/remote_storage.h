// Factories of the remote backends (S3 and read-only HTTP), used by
// OpenStorage.
#ifndef CAIRN_STORAGE_BACKENDS_REMOTE_STORAGE_H_
#define CAIRN_STORAGE_BACKENDS_REMOTE_STORAGE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/backends/http_transport.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// "s3://BUCKET[/PREFIX]". `transport` = nullptr uses libcurl.
absl::StatusOr<std::unique_ptr<Storage>> NewS3StorageForUri(
    absl::string_view uri, const StorageOptions& options,
    std::shared_ptr<HttpTransport> transport = nullptr);
// "http(s)://HOST[:PORT]/PATH": read-only.
absl::StatusOr<std::unique_ptr<Storage>> NewHttpStorageForUri(
    absl::string_view uri, const StorageOptions& options,
    std::shared_ptr<HttpTransport> transport = nullptr);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_REMOTE_STORAGE_H_
