// An in-process S3 behind the HttpTransport interface: the part of S3's REST
// API (path-style, 2006-03-01) that the S3 backend uses, kept in memory, so
// the backend runs in every build without a server.
//
//   auto s3 = std::make_shared<FakeS3Server>();
//   s3->CreateBucket("bucket");
//   StorageOptions options;
//   options.s3 = s3->ClientOptions();
//   auto storage = internal::NewS3StorageForUri("s3://bucket/prefix", options, s3);
//
// Served: HeadObject, GetObject (one Range), PutObject, DeleteObject,
// CopyObject (x-amz-copy-source), DeleteObjects (quiet or not; Content-MD5
// required, as S3 does), ListObjectsV2 (prefix, max-keys, start-after,
// opaque continuation tokens), CreateMultipartUpload, UploadPart,
// CompleteMultipartUpload (part order, ETags and the 5 MiB minimum checked),
// AbortMultipartUpload, ListMultipartUploads (prefix; one page of up to
// 1000). Anything else, including a query parameter an operation does not
// know, is 501 NotImplemented naming it, so a backend change that needs
// more of S3 fails loudly here. Not served: UploadPartCopy (copies over
// 5 GiB), versioning, ACLs, delimiters, checksums other than Content-MD5.
//
// Every request must be signed with AWS Signature V4 by the configured key
// (else 403 InvalidAccessKeyId / SignatureDoesNotMatch, as S3): the fake
// recomputes the signature from the request as it arrives (sigv4_check.h),
// so what is sent must be what was signed. Content-MD5, when sent, is
// checked (400 BadDigest). Error answers are S3's <Error> documents;
// answers to HEAD have no body.
#ifndef CAIRN_STORAGE_BACKENDS_TESTING_FAKE_S3_SERVER_H_
#define CAIRN_STORAGE_BACKENDS_TESTING_FAKE_S3_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/backends/http_transport.h"
#include "storage/storage.h"

namespace cairn {
namespace testing {

struct FakeS3Options {
  std::string host = "fake-s3.test";  // the endpoint's host in ClientOptions()
  std::string access_key = "FAKEACCESSKEYID";
  std::string secret_key = "fake/secret+key";
  std::string region = "us-east-1";
  // Every part of a completed multipart upload but the last has at least
  // this many bytes (S3: 5 MiB, else 400 EntityTooSmall).
  uint64_t min_part_size = 5 << 20;
};

// An S3 error answer: an <Error> document with `code`, `message` and
// `resource`, as S3 (and fault_proxy.py) send them.
internal::HttpResponse S3ErrorAnswer(long status, absl::string_view code, absl::string_view message,
                                     absl::string_view resource);

// Thread-safe.
class FakeS3Server : public internal::HttpTransport {
 public:
  explicit FakeS3Server(FakeS3Options options = {});

  // The settings a client of this server needs: endpoint, region, key and
  // secret; the other fields keep their defaults.
  S3Options ClientOptions() const;
  // Buckets must exist before use (else 404 NoSuchBucket).
  void CreateBucket(const std::string& bucket);

  absl::StatusOr<internal::HttpResponse> Send(const internal::HttpRequest& request) override;

  // What the store holds, for checks.
  std::vector<std::string> Keys(const std::string& bucket) const;
  // The open (neither completed nor aborted) multipart uploads as
  // "KEY upload UPLOAD_ID", sorted.
  std::vector<std::string> OpenUploads(const std::string& bucket) const;
  // Requests received by operation ("PutObject", "ListObjectsV2", ...;
  // refused ones too).
  std::map<std::string, int64_t> RequestCounts() const;

 private:
  struct Object {
    std::shared_ptr<const std::string> data;
    std::string etag;  // quoted, as S3 sends it
  };
  struct Upload {
    std::string bucket;
    std::string key;
    int64_t sequence;  // for listing in initiation order
    std::map<int, Object> parts;
  };
  struct Target;  // bucket, key and operation of a request

  internal::HttpResponse Handle(const internal::HttpRequest& request, const Target& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  internal::HttpResponse ListObjects(const Target& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  internal::HttpResponse ListUploads(const Target& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  internal::HttpResponse DeleteObjects(const internal::HttpRequest& request, const Target& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  internal::HttpResponse CopyObject(const internal::HttpRequest& request, const Target& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  internal::HttpResponse CompleteUpload(const internal::HttpRequest& request, const Target& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FakeS3Options options_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, Object>> buckets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Upload> uploads_ ABSL_GUARDED_BY(mu_);  // by upload id
  std::map<std::string, std::string> list_tokens_ ABSL_GUARDED_BY(mu_);  // token -> last key listed
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_TESTING_FAKE_S3_SERVER_H_
