// The plain-HTTP storage backend, read-only: GET/HEAD with ranges over the
// HttpTransport interface, retried as internal/remote_common.h says.
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
#include "storage/backends/sigv4.h"
#include "storage/registry.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {


class HttpStorage : public Storage {
 public:
  HttpStorage(std::string base_url, StorageOptions options, std::shared_ptr<HttpTransport> transport)
      : base_(std::move(base_url)), options_(std::move(options)), transport_(std::move(transport)) {}

  absl::StatusOr<HttpResponse> Send(HttpRequest req) {
    Backoff backoff(options_.s3.retry_total_ms);
    while (true) {
      auto r = transport_->Send(req);
      if (!Retryable(r) || !backoff.Wait()) {
        if (Retryable(r)) {
          return absl::UnavailableError(absl::StrCat(req.method, " ", req.url, " failed after ",
                                                     backoff.attempts(), " attempts: ",
                                                     r.ok() ? absl::StrCat("HTTP ", r->status)
                                                            : std::string(r.status().message())));
        }
        return r;
      }
    }
  }

  std::string Url(absl::string_view path) const { return absl::StrCat(base_, "/", UriEncode(path, false)); }

  absl::Status Error(const HttpResponse& r, const std::string& what) const {
    const std::string msg = absl::StrCat(what, ": HTTP ", r.status);
    if (r.status == 404) return absl::NotFoundError(msg);
    if (r.status == 401 || r.status == 403) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }

  absl::StatusOr<uint64_t> Head(absl::string_view path) {
    HttpRequest req;
    req.method = "HEAD";
    req.url = Url(path);
    ASSIGN_OR_RETURN(HttpResponse r, Send(req));
    if (r.status / 100 != 2) return Error(r, absl::StrCat("HEAD ", req.url));
    uint64_t size;
    if (!absl::SimpleAtoi(r.headers["content-length"], &size)) {
      return absl::DataLossError(absl::StrCat("HEAD ", req.url, ": no Content-Length"));
    }
    return size;
  }

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    ASSIGN_OR_RETURN(uint64_t size, Head(path));
    const std::string url = Url(path);
    FetchFn fetch = [this, url](uint64_t offset, size_t n, char* dst) -> absl::Status {
      HttpRequest req;
      req.url = url;
      req.headers = {{"Range", absl::StrCat("bytes=", offset, "-", offset + n - 1)}};
      req.sink = dst;
      req.sink_capacity = n;
      ASSIGN_OR_RETURN(HttpResponse r, Send(req));
      if (r.status != 206 && !(r.status == 200 && offset == 0)) {
        return Error(r, absl::StrCat("GET ", url, " (range)"));
      }
      if (r.sink_bytes != n) {
        return absl::UnavailableError(absl::StrCat("GET ", url, ": got ", r.sink_bytes, " of ", n, " bytes"));
      }
      return absl::OkStatus();
    };
    return NewRemoteReadableFile(url, size, std::move(fetch), options_);
  }

  absl::StatusOr<uint64_t> FileSize(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    return Head(path);
  }
  absl::StatusOr<bool> Exists(absl::string_view path) override {
    RETURN_IF_ERROR(ValidateRelativePath(path));
    auto size = Head(path);
    if (size.ok()) return true;
    if (absl::IsNotFound(size.status())) return false;
    return size.status();
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(absl::string_view path) override {
    return ReadOnly(path);
  }
  absl::Status Rename(absl::string_view from, absl::string_view) override { return ReadOnly(from); }
  absl::Status Delete(absl::string_view path) override { return ReadOnly(path); }
  absl::Status RemoveDirIfEmpty(absl::string_view) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<std::string>> List(absl::string_view dir) override {
    return absl::UnimplementedError(absl::StrCat(base_, ": plain HTTP cannot list ", dir));
  }
  std::string uri() const override { return base_; }

 private:
  absl::Status ReadOnly(absl::string_view path) const {
    return absl::PermissionDeniedError(
        absl::StrCat(base_, "/", path, ": HTTP storage is read-only (restore and inspect only)"));
  }

  std::string base_;
  StorageOptions options_;
  std::shared_ptr<HttpTransport> transport_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> NewHttpStorageForUri(absl::string_view uri,
                                                              const StorageOptions& options,
                                                              std::shared_ptr<HttpTransport> transport) {
  std::string base(uri);
  while (!base.empty() && base.back() == '/') base.pop_back();
  RETURN_IF_ERROR(ParseUrl(base).status());
  if (!transport) transport = NewCurlTransport();
  return std::unique_ptr<Storage>(new HttpStorage(std::move(base), options, std::move(transport)));
}

}  // namespace internal

namespace {

absl::StatusOr<std::unique_ptr<Storage>> Open(absl::string_view uri, const StorageOptions& options) {
  return internal::NewHttpStorageForUri(uri, options);
}

const StorageSchemeRegistration kHttpScheme("http", Open);
const StorageSchemeRegistration kHttpsScheme("https", Open);

}  // namespace
}  // namespace cairn
