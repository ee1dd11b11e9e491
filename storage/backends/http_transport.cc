#include "storage/backends/http_transport.h"

#include <curl/curl.h>

#include <cstring>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace cairn {
namespace internal {
namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
  size_t upload_offset = 0;
  bool overflow = false;
};

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  const bool to_sink = t->request->sink != nullptr && t->response->status >= 200 &&
                       t->response->status < 300;
  if (to_sink) {
    if (t->response->sink_bytes + n > t->request->sink_capacity) {
      t->overflow = true;
      return 0;  // aborts the transfer
    }
    std::memcpy(t->request->sink + t->response->sink_bytes, data, n);
    t->response->sink_bytes += n;
  } else {
    t->response->body.append(data, n);
  }
  return n;
}

size_t OnHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (e.g. after "100 Continue"): start over.
    t->response->headers.clear();
    const size_t sp = line.find(' ');
    if (sp != absl::string_view::npos) t->response->status = std::atol(std::string(line.substr(sp + 1, 3)).c_str());
    return n;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    t->response->headers[name] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return n;
}

size_t OnUpload(char* buffer, size_t size, size_t nitems, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = std::min(size * nitems, t->request->body.size() - t->upload_offset);
  std::memcpy(buffer, t->request->body.data() + t->upload_offset, n);
  t->upload_offset += n;
  return n;
}

class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(const HttpTransportOptions& options) : options_(options) {
    static CurlGlobal global;
  }
  ~CurlTransport() override {
    for (CURL* h : pool_) curl_easy_cleanup(h);
  }

  absl::StatusOr<HttpResponse> Send(const HttpRequest& req) override {
    CURL* h = Take();
    HttpResponse resp;
    Transfer t{&req, &resp};
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout_ms));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(std::max<int64_t>(1, options_.low_speed_timeout_ms / 1000)));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
    if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT" || req.method == "POST") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, OnUpload);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      if (req.method == "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
    } else if (req.method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    struct curl_slist* headers = nullptr;
    for (const auto& [name, value] : req.headers) {
      headers = curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
    }
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      curl_easy_cleanup(h);  // the connection may be broken: do not reuse it
      if (t.overflow) {
        return absl::DataLossError(absl::StrCat(req.method, " ", req.url, ": response longer than the ",
                                                req.sink_capacity, " bytes expected"));
      }
      return absl::UnavailableError(
          absl::StrCat(req.method, " ", req.url, ": ", curl_easy_strerror(rc)));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    Give(h);
    return resp;
  }

 private:
  CURL* Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (pool_.empty()) return curl_easy_init();
    CURL* h = pool_.back();
    pool_.pop_back();
    return h;
  }
  void Give(CURL* h) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.push_back(h);
  }

  const HttpTransportOptions options_;
  std::mutex mu_;
  std::vector<CURL*> pool_;
};

}  // namespace

std::shared_ptr<HttpTransport> NewCurlTransport(const HttpTransportOptions& options) {
  return std::make_shared<CurlTransport>(options);
}

}  // namespace internal
}  // namespace cairn
