#include "storage/backends/testing/faulty_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/backends/testing/fake_s3_server.h"

namespace cairn {
namespace testing {

using internal::HttpRequest;
using internal::HttpResponse;

namespace {

HttpResponse InjectedError(long status, const char* code, const HttpRequest& request) {
  HttpResponse r = S3ErrorAnswer(status, code, "injected by FaultyTransport",
                                 absl::StrCat(request.method, " ", request.url));
  if (request.method == "HEAD") r.body.clear();
  return r;
}

}  // namespace

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kNone: return "none";
    case Fault::kError500: return "error500";
    case Fault::kSlowDown503: return "slowdown503";
    case Fault::kDropBefore: return "drop_before";
    case Fault::kDropAfter: return "drop_after";
    case Fault::kResend: return "resend";
  }
  return "?";
}

FaultyTransport::FaultyTransport(std::shared_ptr<internal::HttpTransport> inner, FaultOptions options)
    : inner_(std::move(inner)), options_(std::move(options)), rng_(options_.seed) {}

Fault FaultyTransport::Draw(const HttpRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_;
  Fault fault = Fault::kNone;
  if (options_.choose) {
    fault = options_.choose(request);
  } else if (!options_.kinds.empty() && std::uniform_real_distribution<double>(0, 1)(rng_) < options_.rate) {
    fault = options_.kinds[std::uniform_int_distribution<size_t>(0, options_.kinds.size() - 1)(rng_)];
  }
  if (fault != Fault::kNone) ++injected_[fault];
  return fault;
}

absl::StatusOr<HttpResponse> FaultyTransport::Send(const HttpRequest& request) {
  switch (Draw(request)) {
    case Fault::kNone:
      return inner_->Send(request);
    case Fault::kError500:
      return InjectedError(500, "InternalError", request);
    case Fault::kSlowDown503:
      return InjectedError(503, "SlowDown", request);
    case Fault::kDropBefore:
      return absl::UnavailableError(absl::StrCat(request.method, " ", request.url,
                                                 ": connection reset before the request was sent (injected)"));
    case Fault::kDropAfter:
      inner_->Send(request).IgnoreError();
      return absl::UnavailableError(absl::StrCat(request.method, " ", request.url,
                                                 ": connection reset before the answer arrived (injected)"));
    case Fault::kResend:
      inner_->Send(request).IgnoreError();
      return inner_->Send(request);
  }
  return absl::InternalError("unknown fault");
}

int64_t FaultyTransport::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::map<Fault, int64_t> FaultyTransport::injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_;
}

std::string FaultyTransport::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t total = 0;
  std::string kinds;
  for (const auto& [fault, n] : injected_) {
    total += n;
    absl::StrAppend(&kinds, kinds.empty() ? "" : " ", FaultName(fault), "=", n);
  }
  return absl::StrCat(requests_, " requests, ", total, " faults (", kinds, ")");
}

}  // namespace testing
}  // namespace cairn
