// Faults between a remote backend and its server, injected in process: what
// tests/servers/fault_proxy.py does in front of a real gateway, for any
// HttpTransport (the fakes of fake_s3_server.h and fake_http_server.h, or
// curl).
//
//   FaultOptions faults;
//   faults.rate = 0.2;
//   auto faulty = std::make_shared<FaultyTransport>(s3, faults);
//   auto storage = internal::NewS3StorageForUri("s3://bucket/p", options, faulty);
//
// Kinds, as the proxy's:
//   kError500     answers 500 InternalError (S3's XML) without forwarding
//   kSlowDown503  answers 503 SlowDown without forwarding
//   kDropBefore   Unavailable (a reset) without forwarding: nothing applied
//   kDropAfter    forwards (the server applies it), then Unavailable: the
//                 answer is lost
//   kResend       forwards twice and returns the second answer: libcurl's
//                 silent resend on a reused connection that closed, which
//                 the caller never sees
#ifndef CAIRN_STORAGE_BACKENDS_TESTING_FAULTY_TRANSPORT_H_
#define CAIRN_STORAGE_BACKENDS_TESTING_FAULTY_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "storage/backends/http_transport.h"

namespace cairn {
namespace testing {

enum class Fault { kNone, kError500, kSlowDown503, kDropBefore, kDropAfter, kResend };
const char* FaultName(Fault fault);

struct FaultOptions {
  // Fraction of requests that get a fault, drawn from a seeded generator in
  // the order requests arrive (so parallel requests replay only roughly).
  double rate = 0.2;
  uint64_t seed = 1;
  // The kinds to choose from, uniformly.
  std::vector<Fault> kinds = {Fault::kError500, Fault::kSlowDown503, Fault::kDropBefore, Fault::kDropAfter,
                              Fault::kResend};
  // If set, decides the fault of each request instead of rate and kinds
  // (e.g. "lose the answer to the first CreateMultipartUpload"). Called
  // with the transport's lock held, in arrival order.
  std::function<Fault(const internal::HttpRequest&)> choose;
};

// Thread-safe if `inner` is.
class FaultyTransport : public internal::HttpTransport {
 public:
  FaultyTransport(std::shared_ptr<internal::HttpTransport> inner, FaultOptions options);

  absl::StatusOr<internal::HttpResponse> Send(const internal::HttpRequest& request) override;

  int64_t requests() const;
  // Faults injected so far, by kind.
  std::map<Fault, int64_t> injected() const;
  // "N requests, M faults (error500=a slowdown503=b ...)".
  std::string Summary() const;

 private:
  Fault Draw(const internal::HttpRequest& request);

  const std::shared_ptr<internal::HttpTransport> inner_;
  const FaultOptions options_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<Fault, int64_t> injected_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_TESTING_FAULTY_TRANSPORT_H_
