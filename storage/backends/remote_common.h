// What the remote backends (S3, plain HTTP) share: which failures are worth
// a retry, exponential backoff with full jitter within a time budget, URL
// splitting, and a readable file that fetches large reads as parallel
// ranged requests.
#ifndef CAIRN_STORAGE_BACKENDS_REMOTE_COMMON_H_
#define CAIRN_STORAGE_BACKENDS_REMOTE_COMMON_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/backends/http_transport.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// Transport failures (resets, timeouts), 500/502/503/504, 429/SlowDown and
// S3's RequestTimeout: worth another attempt.
bool Retryable(const absl::StatusOr<HttpResponse>& r);

// Exponential backoff with full jitter within a total time budget.
class Backoff {
 public:
  explicit Backoff(int64_t budget_ms);
  // Sleeps before the next attempt; false if the budget is spent.
  bool Wait();
  int attempts() const { return attempts_ + 1; }

 private:
  std::chrono::steady_clock::time_point deadline_;
  std::mt19937_64 rng_;
  int attempts_ = 0;
};

// "scheme://host[:port]/path" split into base ("scheme://host:port"), the
// host header and the path.
struct Url {
  std::string base;
  std::string host;
  std::string path;
};
absl::StatusOr<Url> ParseUrl(absl::string_view url);

// Fetches [offset, offset+n) of one remote object into dst (one request,
// retried by the implementation).
using FetchFn = std::function<absl::Status(uint64_t offset, size_t n, char* dst)>;

// A remote object of known size: reads of more than one read_chunk go out
// as ranged fetches, at most read_parallelism at a time.
std::unique_ptr<ReadableFile> NewRemoteReadableFile(std::string name, uint64_t size, FetchFn fetch,
                                                    const StorageOptions& options);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_REMOTE_COMMON_H_
