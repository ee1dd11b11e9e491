// The HTTP transport behind the S3 and HTTP backends: the only code that
// includes <curl/curl.h>. Requests are synchronous; the transport keeps a
// pool of curl handles so connections are reused across calls and threads.
#ifndef CAIRN_STORAGE_BACKENDS_HTTP_TRANSPORT_H_
#define CAIRN_STORAGE_BACKENDS_HTTP_TRANSPORT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, PUT, POST, DELETE
  std::string url;             // complete, already encoded
  std::vector<std::pair<std::string, std::string>> headers;
  absl::string_view body;      // sent as-is with Content-Length (PUT/POST)
  // If set, a 2xx response body is written here (at most `sink_capacity`
  // bytes; more is an error) instead of into HttpResponse::body.
  char* sink = nullptr;
  size_t sink_capacity = 0;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  size_t sink_bytes = 0;  // bytes written to HttpRequest::sink
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Performs one request. A transport failure (connection refused or reset,
  // timeout) is Unavailable; any HTTP status, even 5xx, is a response.
  virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

struct HttpTransportOptions {
  int64_t connect_timeout_ms = 5000;
  // A transfer slower than 1 KiB/s for this long is aborted (Unavailable).
  int64_t low_speed_timeout_ms = 30000;
  // Upper bound on one whole request.
  int64_t request_timeout_ms = 15 * 60 * 1000;
};

std::shared_ptr<HttpTransport> NewCurlTransport(const HttpTransportOptions& options = {});

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_HTTP_TRANSPORT_H_
