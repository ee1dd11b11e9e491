// The S3 storage backend: the Storage interface over the objects under a key
// prefix of one bucket ("s3://BUCKET/PREFIX"), on the requests of
// s3_client.h. Large files are written as multipart uploads
// (s3_multipart.cc), large reads split into ranged GETs fetched in parallel
// (remote_common.h), renames are server-side copies.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/backends/http_transport.h"
#include "storage/backends/remote_common.h"
#include "storage/backends/remote_storage.h"
#include "storage/backends/s3_client.h"
#include "storage/internal/path.h"
#include "storage/registry.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

class S3Storage : public Storage {
 public:
  // `prefix` has no trailing '/'; "" is the whole bucket.
  S3Storage(std::shared_ptr<const S3Client> client, std::string prefix)
      : client_(std::move(client)), prefix_(std::move(prefix)) {}

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    const std::string key = Key(path);
    ASSIGN_OR_RETURN(uint64_t size, client_->Head(key));
    FetchFn fetch = [client = client_, key](uint64_t offset, size_t n, char* dst) {
      return client->GetRange(key, offset, n, dst);
    };
    return NewRemoteReadableFile(client_->Describe(key), size, std::move(fetch), client_->options());
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return NewS3WritableFile(client_, client_->Describe(Key(path)), Key(path));
  }

  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return client_->Head(Key(path));
  }

  absl::StatusOr<bool> Exists(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    auto size = client_->Head(Key(path));
    if (size.ok()) return true;
    if (absl::IsNotFound(size.status())) {
      // A "directory": any object under path/.
      ASSIGN_OR_RETURN(auto keys, client_->List(absl::StrCat(Key(path), "/"), 1));
      return !keys.empty();
    }
    return size.status();
  }

  absl::Status Rename(absl::string_view from, absl::string_view to) override {
    RETURN_IF_ERROR(ValidateRelativePath(from));
    RETURN_IF_ERROR(ValidateRelativePath(to));
    const std::string src = Key(from), dst = Key(to);
    ASSIGN_OR_RETURN(uint64_t size, client_->Head(src));
    RETURN_IF_ERROR(client_->Copy(src, dst, size));
    return client_->Delete(src);
  }

  absl::Status Delete(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return client_->Delete(Key(path));
  }

  absl::Status DeleteMany(const std::vector<std::string>& paths) override {
    std::vector<std::string> keys;
    keys.reserve(paths.size());
    for (const std::string& path : paths) {
      RETURN_IF_ERROR(ValidateRelativePath(path));
      keys.push_back(Key(path));
    }
    return client_->DeleteMany(keys, client_->Describe(prefix_));
  }

  absl::Status RemoveDirIfEmpty(absl::string_view) override { return absl::OkStatus(); }

  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    RETURN_IF_ERROR(ValidateRelativePath(dir));
    const std::string key_prefix = dir.empty() ? (prefix_.empty() ? "" : prefix_ + "/")
                                               : absl::StrCat(Key(dir), "/");
    ASSIGN_OR_RETURN(auto keys, client_->List(key_prefix, 0));
    std::vector<std::string> out;
    const size_t strip = prefix_.empty() ? 0 : prefix_.size() + 1;
    for (const std::string& k : keys) out.push_back(k.substr(strip));
    return out;
  }

  std::string uri() const override {
    return prefix_.empty() ? absl::StrCat("s3://", client_->bucket())
                           : absl::StrCat("s3://", client_->bucket(), "/", prefix_);
  }

 private:
  std::string Key(absl::string_view path) const {
    return prefix_.empty() ? std::string(path) : JoinPath(prefix_, path);
  }

  // Shared with the files opened: they may outlive the storage object.
  const std::shared_ptr<const S3Client> client_;
  const std::string prefix_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> NewS3StorageForUri(absl::string_view uri,
                                                            const StorageOptions& options,
                                                            std::shared_ptr<HttpTransport> transport) {
  absl::string_view rest = uri.substr(5);  // after "s3://"
  const size_t slash = rest.find('/');
  std::string bucket(rest.substr(0, slash));
  std::string prefix = slash == absl::string_view::npos ? "" : std::string(rest.substr(slash + 1));
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (bucket.size() < 3 || bucket.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat("storage URI \"", uri, "\": bucket names are 3 to 63 characters"));
  }
  if (!prefix.empty()) RETURN_IF_ERROR(ValidateRelativePath(prefix));
  if (options.s3.endpoint.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage URI \"", uri, "\": no S3 endpoint (set AWS_ENDPOINT_URL or --s3-endpoint)"));
  }
  if (options.s3.access_key.empty() || options.s3.secret_key.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage URI \"", uri, "\": no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"));
  }
  ASSIGN_OR_RETURN(Url endpoint, ParseUrl(options.s3.endpoint));
  while (!endpoint.path.empty() && endpoint.path.back() == '/') endpoint.path.pop_back();
  if (!transport) transport = NewCurlTransport();
  auto client = std::make_shared<const S3Client>(std::move(bucket), options, std::move(transport),
                                                 std::move(endpoint));
  return std::unique_ptr<Storage>(new S3Storage(std::move(client), std::move(prefix)));
}

}  // namespace internal

namespace {

absl::StatusOr<std::unique_ptr<Storage>> Open(absl::string_view uri, const StorageOptions& options) {
  return internal::NewS3StorageForUri(uri, options);
}

const StorageSchemeRegistration kS3Scheme("s3", Open);

}  // namespace
}  // namespace cairn
