#include "storage/backends/remote_common.h"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/backends/s3_xml.h"

namespace cairn {
namespace internal {

bool Retryable(const absl::StatusOr<HttpResponse>& r) {
  if (!r.ok()) return absl::IsUnavailable(r.status());
  const long s = r->status;
  return s == 500 || s == 502 || s == 503 || s == 504 || s == 429 ||
         (s == 400 && ParseErrorBody(r->body).code == "RequestTimeout");
}

Backoff::Backoff(int64_t budget_ms)
    : deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms)),
      rng_(std::random_device{}()) {}

bool Backoff::Wait() {
  ++attempts_;
  const int64_t cap = std::min<int64_t>(2000, 50LL << std::min(attempts_, 10));
  const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(1, cap)(rng_));
  if (std::chrono::steady_clock::now() + delay > deadline_) return false;
  std::this_thread::sleep_for(delay);
  return true;
}

absl::StatusOr<Url> ParseUrl(absl::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("bad URL ", url));
  const size_t slash = url.find('/', scheme + 3);
  Url out;
  out.base = std::string(url.substr(0, slash));
  out.host = std::string(url.substr(scheme + 3, slash == absl::string_view::npos ? absl::string_view::npos
                                                                                  : slash - scheme - 3));
  out.path = slash == absl::string_view::npos ? "" : std::string(url.substr(slash));
  if (out.host.empty()) return absl::InvalidArgumentError(absl::StrCat("URL ", url, " has no host"));
  return out;
}

namespace {


class RemoteReadableFile : public ReadableFile {
 public:
  RemoteReadableFile(std::string name, uint64_t size, FetchFn fetch, const StorageOptions& options)
      : name_(std::move(name)), size_(size), fetch_(std::move(fetch)), options_(options) {}

  absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const override {
    if (offset > size_ || n > size_ - offset) {
      return absl::OutOfRangeError(absl::StrCat("read of ", n, " bytes at offset ", offset,
                                                " is past the end of ", name_, " (", size_, " bytes)"));
    }
    if (n == 0) return absl::OkStatus();
    const size_t chunk = std::max<size_t>(options_.read_chunk, 1 << 20);
    const size_t chunks = (n + chunk - 1) / chunk;
    if (chunks <= 1 || options_.read_parallelism <= 1) return fetch_(offset, n, dst);
    // Parallel ranged GETs, at most read_parallelism at a time.
    std::mutex mu;
    size_t next = 0;
    absl::Status first_error;
    auto worker = [&] {
      while (true) {
        size_t i;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (next >= chunks || !first_error.ok()) return;
          i = next++;
        }
        const size_t begin = i * chunk;
        const size_t len = std::min(chunk, n - begin);
        absl::Status s = fetch_(offset + begin, len, dst + begin);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.ok()) first_error = s;
        }
      }
    };
    std::vector<std::thread> threads;
    const int parallel = static_cast<int>(std::min<size_t>(options_.read_parallelism, chunks));
    for (int t = 1; t < parallel; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    return first_error;
  }
  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return name_; }

 private:
  std::string name_;
  uint64_t size_;
  FetchFn fetch_;
  StorageOptions options_;
};

}  // namespace

std::unique_ptr<ReadableFile> NewRemoteReadableFile(std::string name, uint64_t size, FetchFn fetch,
                                                    const StorageOptions& options) {
  return std::make_unique<RemoteReadableFile>(std::move(name), size, std::move(fetch), options);
}

}  // namespace internal
}  // namespace cairn
