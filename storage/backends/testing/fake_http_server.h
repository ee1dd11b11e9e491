// In-process servers behind the HttpTransport interface
// (storage/backends/http_transport.h), for tests of the remote backends
// without a network: this file's plain static-file server (what nginx does
// for the read-only HTTP backend), fake_s3_server.h's S3, and
// faulty_transport.h, which puts faults in front of either.
//
//   auto server = std::make_shared<FakeHttpServer>();
//   server->Put("/ckpt/variables.index", bytes);
//   auto storage = internal::NewHttpStorageForUri("http://fake-http.test/ckpt", {}, server);
//
// Both servers answer as the curl transport would: an answer to a request
// with a sink goes into the sink when it is 2xx (DataLoss if it is longer
// than sink_capacity), into HttpResponse::body otherwise; header names are
// lower case.
#ifndef CAIRN_STORAGE_BACKENDS_TESTING_FAKE_HTTP_SERVER_H_
#define CAIRN_STORAGE_BACKENDS_TESTING_FAKE_HTTP_SERVER_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/backends/http_transport.h"

namespace cairn {
namespace testing {

// --- What both fake servers share.

// A request URL taken apart: "http://HOST[:PORT]/PATH?QUERY".
struct FakeUrl {
  std::string host;
  std::string raw_path;  // as sent (percent-encoded), "/" at least
  std::string path;      // percent-decoded
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  bool Has(absl::string_view name) const;
  std::string Get(absl::string_view name) const;  // "" if absent
};
absl::StatusOr<FakeUrl> ParseFakeUrl(absl::string_view url);

// %XX decoded; InvalidArgument on a bad escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view s);

// The value of request header `name` (any case); "" if absent.
std::string HeaderValue(const internal::HttpRequest& request, absl::string_view name);

// A "Range: bytes=FIRST-[LAST]" header resolved against an object of `size`
// bytes: [first, last], last clamped to the end. Unsatisfiable (first past
// the end) is `satisfiable = false`; an absent or unreadable header is the
// whole object (as S3 and nginx ignore a Range they cannot read).
struct ByteRange {
  bool partial = false;  // a Range header was honoured
  bool satisfiable = true;
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive; meaningless for an empty whole object
};
ByteRange ResolveRange(absl::string_view header, uint64_t size);

// `response`, its body the payload, handed over as the curl transport
// would: a 2xx answer to a request with a sink moves its body into the sink
// (DataLoss if longer than sink_capacity); an answer to HEAD has no body.
absl::StatusOr<internal::HttpResponse> Deliver(const internal::HttpRequest& request,
                                               internal::HttpResponse response);

// The answer to a GET or HEAD of `data` honouring the request's Range (200,
// 206 or 416), before Deliver.
internal::HttpResponse AnswerBytes(const internal::HttpRequest& request, absl::string_view data);

// --- The plain HTTP server.

// Serves files put into it by path, read-only: GET (whole or one Range) and
// HEAD; 404 for anything else, 405 for other methods. Any host. Thread-safe.
class FakeHttpServer : public internal::HttpTransport {
 public:
  // Serves `data` at `path` ("/dir/name", not percent-encoded).
  void Put(const std::string& path, std::string data);
  absl::StatusOr<internal::HttpResponse> Send(const internal::HttpRequest& request) override;
  int64_t requests() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> files_ ABSL_GUARDED_BY(mu_);
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_TESTING_FAKE_HTTP_SERVER_H_
