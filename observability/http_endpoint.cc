#include "observability/http_endpoint.h"

#include <httplib.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "observability/metrics.h"

namespace cairn {

struct HttpEndpoint::Rep {
  httplib::Server server;
  std::thread thread;
  std::string address;
  std::map<std::string, HttpHandler> handlers;
};

HttpEndpoint::HttpEndpoint(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
HttpEndpoint::~HttpEndpoint() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(
    const std::string& listen, std::map<std::string, HttpHandler> handlers) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen=", listen, ": expected HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen=", listen, ": bad port"));
  }
  auto rep = std::make_unique<Rep>();
  rep->handlers = std::move(handlers);
  Rep* r = rep.get();
  rep->server.Get(".*", [r](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/metrics") {
      res.set_content(metrics::Render(), "text/plain; version=0.0.4; charset=utf-8");
      return;
    }
    const HttpHandler* best = nullptr;
    size_t best_len = 0;
    for (const auto& [prefix, handler] : r->handlers) {
      if (req.path.rfind(prefix, 0) == 0 && prefix.size() >= best_len) {
        best = &handler;
        best_len = prefix.size();
      }
    }
    if (best == nullptr) {
      res.status = 404;
      res.set_content("not found\n", "text/plain");
      return;
    }
    HttpRequest request;
    request.path = req.path;
    request.query.insert(req.params.begin(), req.params.end());
    const std::string authorization = req.get_header_value("Authorization");
    constexpr char kBearer[] = "Bearer ";
    if (authorization.rfind(kBearer, 0) == 0) request.bearer_token = authorization.substr(sizeof(kBearer) - 1);
    HttpResponseBody out = (*best)(request);
    res.status = out.status;
    res.set_content(out.body, out.content_type.c_str());
  });
  const int bound = port == 0 ? rep->server.bind_to_any_port(host.c_str()) : (rep->server.bind_to_port(host.c_str(), port) ? port : -1);
  if (bound <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " (HTTP)"));
  rep->address = absl::StrCat(host, ":", bound);
  rep->thread = std::thread([r] { r->server.listen_after_bind(); });
  return std::unique_ptr<HttpEndpoint>(new HttpEndpoint(std::move(rep)));
}

std::string HttpEndpoint::address() const { return rep_->address; }

void HttpEndpoint::Stop() {
  if (!rep_ || !rep_->thread.joinable()) return;
  rep_->server.stop();
  rep_->thread.join();
}

}  // namespace cairn
