// A small HTTP endpoint (cpp-httplib) that every Cairn server can run beside
// its gRPC port: /metrics (Prometheus) and whatever pages the server adds.
#ifndef CAIRN_OBSERVABILITY_HTTP_ENDPOINT_H_
#define CAIRN_OBSERVABILITY_HTTP_ENDPOINT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace cairn {

struct HttpResponseBody {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpRequest {
  std::string path;                          // without the query
  std::map<std::string, std::string> query;  // decoded parameters
  std::string bearer_token;                  // from "Authorization: Bearer T", else ""
};

// A GET handler.
using HttpHandler = std::function<HttpResponseBody(const HttpRequest& request)>;

class HttpEndpoint {
 public:
  // Serves GET requests on `listen` (HOST:PORT, port 0 = any free port).
  // `/metrics` is always served; `handlers` maps path prefixes ("/api/") to
  // handlers (the longest matching prefix wins).
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const std::string& listen, std::map<std::string, HttpHandler> handlers);
  ~HttpEndpoint();
  std::string address() const;
  void Stop();

 private:
  struct Rep;
  explicit HttpEndpoint(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace cairn

#endif  // CAIRN_OBSERVABILITY_HTTP_ENDPOINT_H_
