// The S3 storage backend: path-style requests signed with AWS Signature V4
// (internal/sigv4.cc) over the HttpTransport interface (curl lives only in
// internal/http_transport.cc).
//
// Reliability: every request is retried on transport failures (resets,
// timeouts), 500/502/503/504 and 429/SlowDown with exponential backoff and
// full jitter, within S3Options::retry_total_ms (internal/remote_common.h);
// the final error names the object and the last failure. Uploads carry
// Content-MD5 (signed), which the store verifies. Large files are uploaded
// by multipart upload, several parts in flight, aborted if the file is
// abandoned or fails. Large reads are split into ranged GETs fetched in
// parallel.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "storage/backends/http_transport.h"
#include "storage/internal/path.h"
#include "storage/backends/remote_common.h"
#include "storage/backends/remote_storage.h"
#include "storage/backends/s3_xml.h"
#include "storage/backends/sigv4.h"
#include "storage/registry.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

class S3Storage;

class S3WritableFile : public WritableFile {
 public:
  S3WritableFile(S3Storage* storage, std::string path, std::string key)
      : storage_(storage), path_(std::move(path)), key_(std::move(key)) {}
  ~S3WritableFile() override {
    if (!done_) Abandon();
  }
  absl::Status Append(absl::string_view data) override;
  uint64_t Size() const override { return size_; }
  absl::Status Close() override;
  void Abandon() override;
  const std::string& name() const override { return path_; }

 private:
  absl::Status StartPart();  // sends buffer_ as the next part
  absl::Status WaitForParts(size_t max_in_flight);

  S3Storage* storage_;
  std::string path_;
  std::string key_;
  std::string buffer_;
  uint64_t size_ = 0;
  bool done_ = false;
  absl::Status status_;
  std::string upload_id_;
  int next_part_ = 1;
  std::map<int, std::string> etags_;
  std::vector<std::future<absl::StatusOr<std::pair<int, std::string>>>> in_flight_;
};

class S3Storage : public Storage {
 public:
  S3Storage(std::string bucket, std::string prefix, StorageOptions options,
            std::shared_ptr<HttpTransport> transport, Url endpoint)
      : bucket_(std::move(bucket)),
        prefix_(std::move(prefix)),
        options_(std::move(options)),
        transport_(std::move(transport)),
        endpoint_(std::move(endpoint)) {}

  struct Call {
    std::string method = "GET";
    std::string key;  // full object key ("" = the bucket itself)
    std::vector<std::pair<std::string, std::string>> query;
    std::vector<std::pair<std::string, std::string>> headers;
    absl::string_view body;
    char* sink = nullptr;
    size_t sink_capacity = 0;
  };

  // Signs and sends with retries. Returns the final response, whatever its
  // status, or the last transport error once the retry budget is spent.
  absl::StatusOr<HttpResponse> Send(const Call& call) {
    const std::string canonical_uri =
        absl::StrCat(endpoint_.path, "/", UriEncode(bucket_, true),
                     call.key.empty() ? "" : absl::StrCat("/", UriEncode(call.key, false)));
    const std::string query = CanonicalQuery(call.query);
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
      Signature sig = SignV4(credentials(), in);
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
          const std::string last = resp.ok() ? absl::StrCat("HTTP ", resp->status, " ", ParseErrorBody(resp->body).code)
                                             : std::string(resp.status().message());
          return absl::UnavailableError(absl::StrCat(call.method, " ", Describe(call.key), " failed after ",
                                                     backoff.attempts(), " attempts: ", last));
        }
        return resp;
      }
    }
  }

  // Maps a non-2xx response to a status naming the object.
  absl::Status Error(const HttpResponse& r, const std::string& what) const {
    const S3ErrorBody body = ParseErrorBody(r.body);
    const std::string& code = body.code;
    const std::string msg = absl::StrCat(what, ": HTTP ", r.status, code.empty() ? "" : " ", code,
                                         body.message.empty() ? "" : ": ", body.message);
    switch (r.status) {
      case 403:
        return absl::PermissionDeniedError(absl::StrCat(msg, " (check the credentials for bucket ", bucket_, ")"));
      case 404:
        if (code == "NoSuchBucket") return absl::NotFoundError(absl::StrCat("bucket ", bucket_, " does not exist: ", msg));
        return absl::NotFoundError(msg);
      case 400:
      case 411:
      case 413:
        return absl::InvalidArgumentError(msg);
      default:
        return absl::InternalError(msg);
    }
  }

  std::string Describe(const std::string& key) const { return absl::StrCat("s3://", bucket_, "/", key); }
  std::string Key(absl::string_view path) const { return prefix_.empty() ? std::string(path) : JoinPath(prefix_, path); }
  AwsCredentials credentials() const {
    return {options_.s3.access_key, options_.s3.secret_key, options_.s3.session_token};
  }
  const StorageOptions& options() const { return options_; }

  absl::StatusOr<uint64_t> Head(const std::string& key) {
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

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    const std::string key = Key(path);
    ASSIGN_OR_RETURN(uint64_t size, Head(key));
    FetchFn fetch = [this, key](uint64_t offset, size_t n, char* dst) -> absl::Status {
      Call c;
      c.key = key;
      c.headers.emplace_back("Range", absl::StrCat("bytes=", offset, "-", offset + n - 1));
      c.sink = dst;
      c.sink_capacity = n;
      ASSIGN_OR_RETURN(HttpResponse r, Send(c));
      if (r.status != 206 && r.status != 200) return Error(r, absl::StrCat("GET ", Describe(key)));
      if (r.sink_bytes != n) {
        return absl::UnavailableError(absl::StrCat("GET ", Describe(key), ": got ", r.sink_bytes,
                                                   " of ", n, " bytes"));
      }
      return absl::OkStatus();
    };
    return NewRemoteReadableFile(Describe(key), size, std::move(fetch), options_);
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return std::unique_ptr<WritableFile>(new S3WritableFile(this, Describe(Key(path)), Key(path)));
  }

  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return Head(Key(path));
  }

  absl::StatusOr<bool> Exists(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    auto size = Head(Key(path));
    if (size.ok()) return true;
    if (absl::IsNotFound(size.status())) {
      // A "directory": any object under path/.
      ASSIGN_OR_RETURN(auto keys, ListKeys(absl::StrCat(Key(path), "/"), 1));
      return !keys.empty();
    }
    return size.status();
  }

  absl::Status Rename(absl::string_view from, absl::string_view to) override {
    RETURN_IF_ERROR(ValidateRelativePath(from));
    RETURN_IF_ERROR(ValidateRelativePath(to));
    const std::string src = Key(from), dst = Key(to);
    ASSIGN_OR_RETURN(uint64_t size, Head(src));
    RETURN_IF_ERROR(Copy(src, dst, size));
    return DeleteKey(src);
  }

  absl::Status Delete(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return DeleteKey(Key(path));
  }

  absl::Status DeleteMany(const std::vector<std::string>& paths) override {
    for (size_t i = 0; i < paths.size(); i += 1000) {
      std::vector<std::string> keys;
      for (size_t j = i; j < std::min(paths.size(), i + 1000); ++j) {
        RETURN_IF_ERROR(ValidateRelativePath(paths[j]));
        keys.push_back(Key(paths[j]));
      }
      const std::string xml = DeleteObjectsXml(keys);
      Call c;
      c.method = "POST";
      c.query = {{"delete", ""}};
      c.headers = {{"Content-MD5", Md5Base64(xml)}, {"Content-Type", "application/xml"}};
      c.body = xml;
      ASSIGN_OR_RETURN(HttpResponse r, Send(c));
      if (r.status / 100 != 2) return Error(r, absl::StrCat("batch delete in ", Describe(prefix_)));
      auto failed = ParseDeleteResult(r.body);
      if (!failed.ok()) {
        return absl::InternalError(absl::StrCat("batch delete in ", Describe(prefix_), ": ",
                                                failed.status().message()));
      }
      if (!failed->empty()) {
        const DeleteError& e = failed->front();
        return absl::InternalError(absl::StrCat("batch delete in ", Describe(prefix_), ": ", e.key, ": ",
                                                e.code, e.message.empty() ? "" : ": ", e.message,
                                                failed->size() > 1 ? absl::StrCat(" (and ", failed->size() - 1,
                                                                                  " more keys)") : ""));
      }
    }
    return absl::OkStatus();
  }

  absl::Status RemoveDirIfEmpty(absl::string_view) override { return absl::OkStatus(); }

  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    RETURN_IF_ERROR(ValidateRelativePath(dir));
    const std::string key_prefix = dir.empty() ? (prefix_.empty() ? "" : prefix_ + "/")
                                               : absl::StrCat(Key(dir), "/");
    ASSIGN_OR_RETURN(auto keys, ListKeys(key_prefix, 0));
    std::vector<std::string> out;
    const size_t strip = prefix_.empty() ? 0 : prefix_.size() + 1;
    for (const std::string& k : keys) out.push_back(k.substr(strip));
    return out;
  }

  std::string uri() const override {
    return prefix_.empty() ? absl::StrCat("s3://", bucket_) : absl::StrCat("s3://", bucket_, "/", prefix_);
  }

  // ListObjectsV2 with pagination; max = 0: all.
  absl::StatusOr<std::vector<std::string>> ListKeys(const std::string& key_prefix, size_t max) {
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

  absl::Status DeleteKey(const std::string& key) {
    Call c;
    c.method = "DELETE";
    c.key = key;
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2 && r.status != 404) return Error(r, absl::StrCat("DELETE ", Describe(key)));
    return absl::OkStatus();
  }

  // Server-side copy: CopyObject up to 5 GiB, multipart UploadPartCopy above.
  absl::Status Copy(const std::string& src, const std::string& dst, uint64_t size) {
    const std::string source = absl::StrCat("/", UriEncode(bucket_, true), "/", UriEncode(src, false));
    constexpr uint64_t kMaxSingleCopy = 5ULL << 30;
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
                   {"x-amz-copy-source-range",
                    absl::StrCat("bytes=", off, "-", std::min(size, off + part) - 1)}};
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

  absl::StatusOr<std::string> CreateUpload(const std::string& key) {
    Call c;
    c.method = "POST";
    c.key = key;
    c.query = {{"uploads", ""}};
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("start multipart upload of ", Describe(key)));
    auto parsed = ParseInitiateMultipartUpload(r.body);
    if (!parsed.ok()) {
      return absl::InternalError(absl::StrCat("start multipart upload of ", Describe(key), ": ",
                                              parsed.status().message()));
    }
    const std::string id = *parsed;
    if (id.empty()) return absl::InternalError(absl::StrCat("no UploadId for ", Describe(key)));
    // Starting an upload is not idempotent: an earlier attempt whose answer
    // was lost may have opened one the store keeps (and bills) for good —
    // our retry, or libcurl's own silent resend on a reused connection that
    // closed, which we cannot see. Keys are written by one file at a time,
    // so every other open upload of this key is such an orphan: one listing
    // per multipart file finds them.
    AbortOtherUploads(key, id);
    return id;
  }

  // Aborts every open multipart upload of exactly `key` but `keep`. Best
  // effort: a failure leaves what the store's lifecycle rules would clean.
  void AbortOtherUploads(const std::string& key, const std::string& keep) {
    Call c;
    c.method = "GET";
    c.query = {{"prefix", key}, {"uploads", ""}};
    auto r = Send(c);
    if (!r.ok() || r->status / 100 != 2) return;
    auto uploads = ParseListMultipartUploads(r->body);
    if (!uploads.ok()) return;
    for (const MultipartUploadEntry& u : *uploads) {
      if (u.key == key && !u.upload_id.empty() && u.upload_id != keep) AbortUpload(key, u.upload_id);
    }
  }

  absl::StatusOr<std::string> UploadPart(const std::string& key, const std::string& upload_id,
                                         int number, absl::string_view data) {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"partNumber", absl::StrCat(number)}, {"uploadId", upload_id}};
    c.headers = {{"Content-MD5", Md5Base64(data)}};
    c.body = data;
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("upload part ", number, " of ", Describe(key)));
    return r.headers["etag"];
  }

  absl::Status CompleteUpload(const std::string& key, const std::string& upload_id,
                              const std::map<int, std::string>& etags, uint64_t size) {
    const std::string xml = CompleteMultipartUploadXml(etags);
    Call c;
    c.method = "POST";
    c.key = key;
    c.query = {{"uploadId", upload_id}};
    c.headers = {{"Content-MD5", Md5Base64(xml)}, {"Content-Type", "application/xml"}};
    c.body = xml;
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status == 404 && ParseErrorBody(r.body).code == "NoSuchUpload") {
      // A retried Complete whose first attempt succeeded but lost its reply.
      auto existing = Head(key);
      if (existing.ok() && *existing == size) return absl::OkStatus();
    }
    if (r.status / 100 != 2 || BodyReportsFailure(r.body)) {
      AbortUpload(key, upload_id);
      return Error(r, absl::StrCat("complete multipart upload of ", Describe(key)));
    }
    return absl::OkStatus();
  }

  void AbortUpload(const std::string& key, const std::string& upload_id) {
    Call c;
    c.method = "DELETE";
    c.key = key;
    c.query = {{"uploadId", upload_id}};
    Send(c).IgnoreError();
  }

  absl::Status PutObject(const std::string& key, absl::string_view data) {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.headers = {{"Content-MD5", Md5Base64(data)}};
    c.body = data;
    ASSIGN_OR_RETURN(HttpResponse r, Send(c));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("PUT ", Describe(key)));
    return absl::OkStatus();
  }

 private:
  std::string bucket_;
  std::string prefix_;
  StorageOptions options_;
  std::shared_ptr<HttpTransport> transport_;
  Url endpoint_;
};

absl::Status S3WritableFile::Append(absl::string_view data) {
  if (done_) return absl::FailedPreconditionError(absl::StrCat(path_, " is closed"));
  if (!status_.ok()) return status_;
  const size_t part = std::max<size_t>(storage_->options().s3.part_size, 5 << 20);
  size_ += data.size();
  while (!data.empty()) {
    const size_t take = std::min(part - buffer_.size(), data.size());
    buffer_.append(data.data(), take);
    data.remove_prefix(take);
    if (buffer_.size() == part) {
      status_ = StartPart();
      if (!status_.ok()) return status_;
    }
  }
  return absl::OkStatus();
}

absl::Status S3WritableFile::StartPart() {
  if (upload_id_.empty()) {
    ASSIGN_OR_RETURN(upload_id_, storage_->CreateUpload(key_));
  }
  RETURN_IF_ERROR(WaitForParts(static_cast<size_t>(std::max(1, storage_->options().s3.upload_parallelism)) - 1));
  const int number = next_part_++;
  auto data = std::make_shared<std::string>(std::move(buffer_));
  buffer_.clear();
  S3Storage* storage = storage_;
  std::string key = key_, upload_id = upload_id_;
  in_flight_.push_back(std::async(std::launch::async, [storage, key, upload_id, number, data]()
                                      -> absl::StatusOr<std::pair<int, std::string>> {
    ASSIGN_OR_RETURN(std::string etag, storage->UploadPart(key, upload_id, number, *data));
    return std::make_pair(number, etag);
  }));
  return absl::OkStatus();
}

absl::Status S3WritableFile::WaitForParts(size_t max_in_flight) {
  absl::Status first;
  while (in_flight_.size() > max_in_flight) {
    auto r = in_flight_.front().get();
    in_flight_.erase(in_flight_.begin());
    if (!r.ok()) {
      if (first.ok()) first = r.status();
    } else {
      etags_[r->first] = r->second;
    }
  }
  return first;
}

absl::Status S3WritableFile::Close() {
  if (done_) return absl::FailedPreconditionError(absl::StrCat(path_, " is closed"));
  if (!status_.ok()) {
    Abandon();
    return status_;
  }
  if (upload_id_.empty()) {
    done_ = true;
    return storage_->PutObject(key_, buffer_);
  }
  absl::Status s = buffer_.empty() ? absl::OkStatus() : StartPart();
  absl::Status waited = WaitForParts(0);
  if (s.ok()) s = waited;
  if (!s.ok()) {
    Abandon();
    return s;
  }
  done_ = true;
  return storage_->CompleteUpload(key_, upload_id_, etags_, size_);
}

void S3WritableFile::Abandon() {
  if (done_) return;
  done_ = true;
  WaitForParts(0).IgnoreError();
  if (!upload_id_.empty()) storage_->AbortUpload(key_, upload_id_);
  buffer_.clear();
}

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
  return std::unique_ptr<Storage>(
      new S3Storage(std::move(bucket), std::move(prefix), options, std::move(transport), std::move(endpoint)));
}

}  // namespace internal

namespace {

absl::StatusOr<std::unique_ptr<Storage>> Open(absl::string_view uri, const StorageOptions& options) {
  return internal::NewS3StorageForUri(uri, options);
}

const StorageSchemeRegistration kS3Scheme("s3", Open);

}  // namespace
}  // namespace cairn
