// S3 requests: signing, retries, errors, and the object operations.
//
// Reliability: every request is retried on transport failures (resets,
// timeouts), 500/502/503/504 and 429/SlowDown with exponential backoff and
// full jitter, within S3Options::retry_total_ms (remote_common.h); the final
// error names the object and the last failure. Uploads carry Content-MD5
// (signed), which the store verifies.
#include "storage/backends/s3_client.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "storage/backends/s3_xml.h"
#include "storage/backends/sigv4.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

S3Client::S3Client(std::string bucket, StorageOptions options, std::shared_ptr<HttpTransport> transport,
                   Url endpoint)
    : bucket_(std::move(bucket)),
      options_(std::move(options)),
      transport_(std::move(transport)),
      endpoint_(std::move(endpoint)) {}

absl::StatusOr<HttpResponse> S3Client::Send(const Call& call) const {
  const std::string canonical_uri =
      absl::StrCat(endpoint_.path, "/", UriEncode(bucket_, true),
                   call.key.empty() ? "" : absl::StrCat("/", UriEncode(call.key, false)));
  const std::string query = CanonicalQuery(call.query);
  const AwsCredentials credentials{options_.s3.access_key, options_.s3.secret_key,
                                   options_.s3.session_token};
  Backoff backoff(options_.s3.retry_total_ms);
  while (true) {
    SigningInput in;
    in.method = call.method;
    in.host = endpoint_.host;
    in.canonical_uri = canonical_uri;
    in.query = call.query;
    in.headers = call.headers;
    in.payload_hash = call.body.empty() ? Sha256Hex("") : "UNSIGNED-PAYLOAD";
    in.amz_date = AmzDateNow();
    in.region = options_.s3.region;
    Signature sig = SignV4(credentials, in);
    HttpRequest req;
    req.method = call.method;
    req.url = absl::StrCat(endpoint_.base, canonical_uri, query.empty() ? "" : "?", query);
    req.headers = sig.headers;
    req.body = call.body;
    req.sink = call.sink;
    req.sink_capacity = call.sink_capacity;
    auto resp = transport_->Send(req);
    if (!Retryable(resp) || !backoff.Wait()) {
      if (Retryable(resp)) {
        const std::string last = resp.ok()
                                     ? absl::StrCat("HTTP ", resp->status, " ", ParseErrorBody(resp->body).code)
                                     : std::string(resp.status().message());
        return absl::UnavailableError(absl::StrCat(call.method, " ", Describe(call.key), " failed after ",
                                                   backoff.attempts(), " attempts: ", last));
      }
      return resp;
    }
  }
}

absl::Status S3Client::Error(const HttpResponse& r, absl::string_view what) const {
  const S3ErrorBody body = ParseErrorBody(r.body);
  const std::string msg = absl::StrCat(what, ": HTTP ", r.status, body.code.empty() ? "" : " ", body.code,
                                       body.message.empty() ? "" : ": ", body.message);
  switch (r.status) {
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(msg, " (check the credentials for bucket ", bucket_, ")"));
    case 404:
      if (body.code == "NoSuchBucket") {
        return absl::NotFoundError(absl::StrCat("bucket ", bucket_, " does not exist: ", msg));
      }
      return absl::NotFoundError(msg);
    case 400:
    case 411:
    case 413:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string S3Client::Describe(absl::string_view key) const { return absl::StrCat("s3://", bucket_, "/", key); }

absl::StatusOr<uint64_t> S3Client::Head(const std::string& key) const {
  Call c;
  c.method = "HEAD";
  c.key = key;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status == 404) return absl::NotFoundError(absl::StrCat(Describe(key), ": no such object"));
  if (r.status / 100 != 2) return Error(r, absl::StrCat("HEAD ", Describe(key)));
  uint64_t size = 0;
  if (!absl::SimpleAtoi(r.headers["content-length"], &size)) {
    return absl::DataLossError(absl::StrCat("HEAD ", Describe(key), ": no Content-Length"));
  }
  return size;
}

absl::Status S3Client::GetRange(const std::string& key, uint64_t offset, size_t n, char* dst) const {
  Call c;
  c.key = key;
  c.headers.emplace_back("Range", absl::StrCat("bytes=", offset, "-", offset + n - 1));
  c.sink = dst;
  c.sink_capacity = n;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status != 206 && r.status != 200) return Error(r, absl::StrCat("GET ", Describe(key)));
  if (r.sink_bytes != n) {
    return absl::UnavailableError(absl::StrCat("GET ", Describe(key), ": got ", r.sink_bytes, " of ", n, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status S3Client::Put(const std::string& key, absl::string_view data) const {
  Call c;
  c.method = "PUT";
  c.key = key;
  c.headers = {{"Content-MD5", Md5Base64(data)}};
  c.body = data;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status / 100 != 2) return Error(r, absl::StrCat("PUT ", Describe(key)));
  return absl::OkStatus();
}

absl::Status S3Client::Delete(const std::string& key) const {
  Call c;
  c.method = "DELETE";
  c.key = key;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status / 100 != 2 && r.status != 404) return Error(r, absl::StrCat("DELETE ", Describe(key)));
  return absl::OkStatus();
}

absl::Status S3Client::DeleteMany(const std::vector<std::string>& keys, absl::string_view what) const {
  constexpr size_t kMaxKeysPerRequest = 1000;  // S3's DeleteObjects limit
  for (size_t i = 0; i < keys.size(); i += kMaxKeysPerRequest) {
    const std::vector<std::string> batch(keys.begin() + i,
                                         keys.begin() + std::min(keys.size(), i + kMaxKeysPerRequest));
    const std::string xml = DeleteObjectsXml(batch);
    Call c;
    c.method = "POST";
    c.query = {{"delete", ""}};
    c.headers = {{"Content-MD5", Md5Base64(xml)}, {"Content-Type", "application/xml"}};
    c.body = xml;
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("batch delete in ", what));
    auto failed = ParseDeleteResult(r.body);
    if (!failed.ok()) {
      return absl::InternalError(absl::StrCat("batch delete in ", what, ": ", failed.status().message()));
    }
    if (!failed->empty()) {
      const DeleteError& e = failed->front();
      return absl::InternalError(absl::StrCat(
          "batch delete in ", what, ": ", e.key, ": ", e.code, e.message.empty() ? "" : ": ", e.message,
          failed->size() > 1 ? absl::StrCat(" (and ", failed->size() - 1, " more keys)") : ""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> S3Client::List(const std::string& key_prefix, size_t max) const {
  std::vector<std::string> keys;
  std::string token;
  while (true) {
    Call c;
    c.query = {{"list-type", "2"}, {"prefix", key_prefix}};
    if (!token.empty()) c.query.emplace_back("continuation-token", token);
    c.query.emplace_back("max-keys", absl::StrCat(max ? max : static_cast<size_t>(
                                                      std::max(1, options_.s3.list_page_size))));
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("list ", Describe(key_prefix)));
    auto page = ParseListObjectsV2(r.body);
    if (!page.ok()) {
      return absl::InternalError(absl::StrCat("list ", Describe(key_prefix), ": ", page.status().message()));
    }
    keys.insert(keys.end(), page->keys.begin(), page->keys.end());
    if (max && keys.size() >= max) break;
    if (!page->truncated) break;
    token = page->next_token;
    if (token.empty()) break;
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

absl::Status S3Client::Copy(const std::string& src, const std::string& dst, uint64_t size) const {
  const std::string source = absl::StrCat("/", UriEncode(bucket_, true), "/", UriEncode(src, false));
  constexpr uint64_t kMaxSingleCopy = 5ULL << 30;  // S3's CopyObject limit
  if (size <= kMaxSingleCopy) {
    Call c;
    c.method = "PUT";
    c.key = dst;
    c.headers = {{"x-amz-copy-source", source}};
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2 || BodyReportsFailure(r.body)) {
      return Error(r, absl::StrCat("copy ", Describe(src), " to ", Describe(dst)));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string upload_id, CreateUpload(dst));
  std::map<int, std::string> etags;
  const uint64_t part = 1ULL << 30;
  int number = 1;
  for (uint64_t off = 0; off < size; off += part, ++number) {
    Call c;
    c.method = "PUT";
    c.key = dst;
    c.query = {{"partNumber", absl::StrCat(number)}, {"uploadId", upload_id}};
    c.headers = {{"x-amz-copy-source", source},
                 {"x-amz-copy-source-range", absl::StrCat("bytes=", off, "-", std::min(size, off + part) - 1)}};
    auto r = Send(c);
    if (!r.ok() || r->status / 100 != 2 || BodyReportsFailure(r->body)) {
      AbortUpload(dst, upload_id);
      return r.ok() ? Error(*r, absl::StrCat("copy part of ", Describe(dst))) : r.status();
    }
    auto etag = ParseCopyPartResult(r->body);
    if (!etag.ok()) {
      AbortUpload(dst, upload_id);
      return absl::InternalError(absl::StrCat("copy part of ", Describe(dst), ": ", etag.status().message()));
    }
    etags[number] = *etag;
  }
  return CompleteUpload(dst, upload_id, etags, size);
}

}  // namespace internal
}  // namespace cairn
