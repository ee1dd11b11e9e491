// The S3 requests under the S3 storage backend (internal to
// storage/backends/): one bucket on one endpoint, path-style requests
// signed with AWS Signature V4 (sigv4.h) over the HttpTransport interface,
// retried as remote_common.h says, and the S3 operations the backend is
// made of.
//
//   s3_client.cc     requests, errors, objects: HEAD, ranged GET, PUT,
//                    DELETE, batch delete, ListObjectsV2, server-side copy
//   s3_multipart.cc  multipart uploads and the writable file built on them
//   s3_storage.cc    the Storage interface over a key prefix, the factory
//                    and the "s3" scheme
#ifndef CAIRN_STORAGE_BACKENDS_S3_CLIENT_H_
#define CAIRN_STORAGE_BACKENDS_S3_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/backends/http_transport.h"
#include "storage/backends/remote_common.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// Thread-safe: every method may be called from several threads at once. No
// I/O until a method is called.
class S3Client {
 public:
  // `endpoint`'s path has no trailing '/'; `transport` is shared with
  // whoever else holds it.
  S3Client(std::string bucket, StorageOptions options, std::shared_ptr<HttpTransport> transport,
           Url endpoint);

  // One request to the bucket.
  struct Call {
    std::string method = "GET";
    std::string key;  // full object key ("" = the bucket itself)
    std::vector<std::pair<std::string, std::string>> query;  // decoded
    std::vector<std::pair<std::string, std::string>> headers;  // signed with the request
    absl::string_view body;
    char* sink = nullptr;  // as HttpRequest::sink
    size_t sink_capacity = 0;
  };

  // Signs and sends with retries. Returns the final response, whatever its
  // status, or Unavailable naming the object and the last failure once the
  // retry budget (S3Options::retry_total_ms) is spent.
  absl::StatusOr<HttpResponse> Send(const Call& call) const;
  // Maps a failed answer to a status: "WHAT: HTTP 404 NoSuchKey: message",
  // coded by the HTTP status (403 PermissionDenied naming the bucket, 404
  // NotFound, 400/411/413 InvalidArgument, else Internal).
  absl::Status Error(const HttpResponse& r, absl::string_view what) const;
  // "s3://BUCKET/KEY", for messages.
  std::string Describe(absl::string_view key) const;
  const std::string& bucket() const { return bucket_; }
  const StorageOptions& options() const { return options_; }

  // Objects (s3_client.cc).

  // The object's size; NotFound if there is none.
  absl::StatusOr<uint64_t> Head(const std::string& key) const;
  // Bytes [offset, offset+n) of the object into dst (one ranged GET).
  // REQUIRES: n > 0.
  absl::Status GetRange(const std::string& key, uint64_t offset, size_t n, char* dst) const;
  // One PUT with Content-MD5, which the store verifies.
  absl::Status Put(const std::string& key, absl::string_view data) const;
  // OK if the object is absent.
  absl::Status Delete(const std::string& key) const;
  // Batch deletes of up to 1000 keys a request; `what` names the set in
  // messages.
  absl::Status DeleteMany(const std::vector<std::string>& keys, absl::string_view what) const;
  // Keys starting with `key_prefix`, sorted: ListObjectsV2, page after page
  // of S3Options::list_page_size; max = 0: all, else stops after at least
  // `max` keys.
  absl::StatusOr<std::vector<std::string>> List(const std::string& key_prefix, size_t max) const;
  // Server-side copy of an object of `size` bytes: CopyObject up to 5 GiB,
  // a multipart upload of UploadPartCopy parts above.
  absl::Status Copy(const std::string& src, const std::string& dst, uint64_t size) const;

  // Multipart uploads (s3_multipart.cc).

  // Starts one and returns its upload id. Aborts any other open upload of
  // `key`: one a lost answer to an earlier attempt left behind.
  absl::StatusOr<std::string> CreateUpload(const std::string& key) const;
  // Uploads part `number` (1-based) with Content-MD5; returns its ETag.
  absl::StatusOr<std::string> UploadPart(const std::string& key, const std::string& upload_id,
                                         int number, absl::string_view data) const;
  // Completes the upload of the parts `etags` (part number -> ETag); the
  // object then has `size` bytes. Aborts the upload if that fails.
  absl::Status CompleteUpload(const std::string& key, const std::string& upload_id,
                              const std::map<int, std::string>& etags, uint64_t size) const;
  // Best effort: a failure leaves what the store's lifecycle rules clean.
  void AbortUpload(const std::string& key, const std::string& upload_id) const;

 private:
  void AbortOtherUploads(const std::string& key, const std::string& keep) const;

  const std::string bucket_;
  const StorageOptions options_;
  const std::shared_ptr<HttpTransport> transport_;
  const Url endpoint_;
};

// A file written to `key` (named `name` in messages): kept in memory and
// PUT at Close while it is smaller than one part (S3Options::part_size,
// at least 5 MiB), else streamed as a multipart upload with up to
// S3Options::upload_parallelism parts in flight, completed at Close and
// aborted if abandoned or failed (s3_multipart.cc).
std::unique_ptr<WritableFile> NewS3WritableFile(std::shared_ptr<const S3Client> client, std::string name,
                                                std::string key);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_S3_CLIENT_H_
