#include "storage/backends/testing/fake_http_server.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cairn {
namespace testing {

using internal::HttpRequest;
using internal::HttpResponse;

bool FakeUrl::Has(absl::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return true;
  }
  return false;
}

std::string FakeUrl::Get(absl::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return "";
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size() || !absl::ascii_isxdigit(s[i + 1]) || !absl::ascii_isxdigit(s[i + 2])) {
      return absl::InvalidArgumentError(absl::StrCat("bad percent escape in \"", s, "\""));
    }
    auto hex = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10; };
    out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
    i += 2;
  }
  return out;
}

absl::StatusOr<FakeUrl> ParseFakeUrl(absl::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("bad URL ", url));
  absl::string_view rest = url.substr(scheme + 3);
  const size_t slash = rest.find_first_of("/?");
  FakeUrl out;
  out.host = std::string(rest.substr(0, slash));
  rest = slash == absl::string_view::npos ? "" : rest.substr(slash);
  const size_t q = rest.find('?');
  out.raw_path = std::string(rest.substr(0, q));
  if (out.raw_path.empty()) out.raw_path = "/";
  auto path = PercentDecode(out.raw_path);
  if (!path.ok()) return path.status();
  out.path = *std::move(path);
  if (q != absl::string_view::npos) {
    for (absl::string_view pair : absl::StrSplit(rest.substr(q + 1), '&', absl::SkipEmpty())) {
      const size_t eq = pair.find('=');
      auto k = PercentDecode(pair.substr(0, eq));
      auto v = PercentDecode(eq == absl::string_view::npos ? "" : pair.substr(eq + 1));
      if (!k.ok()) return k.status();
      if (!v.ok()) return v.status();
      out.query.emplace_back(*std::move(k), *std::move(v));
    }
  }
  return out;
}

std::string HeaderValue(const HttpRequest& request, absl::string_view name) {
  for (const auto& [k, v] : request.headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

ByteRange ResolveRange(absl::string_view header, uint64_t size) {
  ByteRange whole;
  whole.last = size == 0 ? 0 : size - 1;
  absl::string_view spec = header;
  if (!absl::ConsumePrefix(&spec, "bytes=") || absl::StrContains(spec, ',')) return whole;
  const size_t dash = spec.find('-');
  uint64_t first = 0, last = 0;
  if (dash == absl::string_view::npos || !absl::SimpleAtoi(spec.substr(0, dash), &first)) return whole;
  const absl::string_view last_text = spec.substr(dash + 1);
  if (last_text.empty()) {
    last = UINT64_MAX;
  } else if (!absl::SimpleAtoi(last_text, &last) || last < first) {
    return whole;
  }
  ByteRange r;
  r.partial = true;
  r.satisfiable = first < size;
  r.first = first;
  r.last = std::min(last, size == 0 ? 0 : size - 1);
  return r;
}

absl::StatusOr<HttpResponse> Deliver(const HttpRequest& request, HttpResponse response) {
  if (request.method == "HEAD") {
    response.body.clear();
  } else if (request.sink != nullptr && response.status / 100 == 2) {
    if (response.body.size() > request.sink_capacity) {
      return absl::DataLossError(absl::StrCat(request.method, " ", request.url, ": response longer than the ",
                                              request.sink_capacity, " bytes expected"));
    }
    if (!response.body.empty()) std::memcpy(request.sink, response.body.data(), response.body.size());
    response.sink_bytes = response.body.size();
    response.body.clear();
  }
  return response;
}

HttpResponse AnswerBytes(const HttpRequest& request, absl::string_view data) {
  HttpResponse r;
  r.headers["accept-ranges"] = "bytes";
  const ByteRange range = ResolveRange(HeaderValue(request, "Range"), data.size());
  if (!range.satisfiable) {
    r.status = 416;
    r.headers["content-range"] = absl::StrCat("bytes */", data.size());
    return r;
  }
  absl::string_view payload = data;
  r.status = 200;
  if (range.partial) {
    r.status = 206;
    payload = data.substr(range.first, range.last - range.first + 1);
    r.headers["content-range"] = absl::StrCat("bytes ", range.first, "-", range.last, "/", data.size());
  }
  r.headers["content-length"] = absl::StrCat(payload.size());
  r.body = std::string(payload);
  return r;
}

void FakeHttpServer::Put(const std::string& path, std::string data) {
  std::lock_guard<std::mutex> lock(mu_);
  files_[path] = std::move(data);
}

int64_t FakeHttpServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

absl::StatusOr<HttpResponse> FakeHttpServer::Send(const HttpRequest& request) {
  auto url = ParseFakeUrl(request.url);
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_;
  HttpResponse r;
  auto it = url.ok() ? files_.find(url->path) : files_.end();
  if (!url.ok()) {
    r.status = 400;
    r.body = "<html><body><h1>400 Bad Request</h1></body></html>";
  } else if (request.method != "GET" && request.method != "HEAD") {
    r.status = 405;
    r.body = "<html><body><h1>405 Not Allowed</h1></body></html>";
  } else if (it == files_.end()) {
    r.status = 404;
    r.body = "<html><body><h1>404 Not Found</h1></body></html>";
  } else {
    r = AnswerBytes(request, it->second);
  }
  return Deliver(request, std::move(r));
}

}  // namespace testing
}  // namespace cairn
