// What the client tests (tests/client/*_test.cc, one client_test binary)
// share: tensor bytes, the `cairn` command run as a real process, a merged
// four-part checkpoint on disk, and a recorder of progress callbacks. The
// fake Coordinator and ShardWriter services are in fake_service.h.
#ifndef CAIRN_TESTS_CLIENT_CLIENT_FIXTURE_H_
#define CAIRN_TESTS_CLIENT_CLIENT_FIXTURE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/progress.h"
#include "storage/bundle/safetensors.h"
#include "storage/bundle/tensor_slice.h"
#include "storage/storage.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {

// The bytes of `n` floats start, start + 1, ... (host byte order).
std::string Floats(int64_t n, float start);

// Rows [r0, r0+nr) and columns [c0, c0+nc) of a row-major float matrix with
// `cols` columns.
std::string SubMatrix(const std::string& m, int64_t cols, int64_t r0, int64_t nr, int64_t c0,
                      int64_t nc);

// TensorSlice::Parse(text); a parse failure is a test failure (and a full
// slice).
TensorSlice Slice(const std::string& text);

// Runs build/bin/cairn with `args`.
testing::RunResult Cairn(std::vector<std::string> args);

bool Contains(absl::string_view haystack, absl::string_view needle);

using testing::WriteSafetensors;

// The checkpoint most tests restore from: four single-writer parts merged
// into DIR/job/ckpt-5/variables, as the service's commit does. Part k holds
// rows [25k, 25k+25) of "emb" (100 x 6 floats) and its own "w_k"; part 0
// also holds a string tensor "names" and an int64 scalar "step".
class FourPartCheckpoint {
 public:
  FourPartCheckpoint();

  // Corrupts the stored data of tensor `name` (its first byte).
  bool FlipFirstByteOf(const std::string& name);

  std::string prefix() const { return dir_.Join("job/ckpt-5/variables"); }
  std::string uri() const { return "file://" + prefix(); }
  const std::string& emb() const { return emb_; }
  const std::string& w(int k) const { return w_[k]; }
  const testing::TempDir& dir() const { return dir_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<Storage> storage_;
  std::string emb_;
  std::string w_[4];
};

// Records a ProgressFn's calls, checking as they come that no two overlap
// (client/progress.h: never two at once).
class ProgressLog {
 public:
  ProgressFn Fn();
  const std::vector<std::pair<uint64_t, uint64_t>>& calls() const { return calls_; }

  // The contract after a success: (0, total) first, (total, total) last and
  // only once, `done` never decreasing, `total` fixed.
  void ExpectComplete(uint64_t total) const;

 private:
  std::atomic<int> inside_{0};
  std::atomic<bool> overlapped_{false};
  std::vector<std::pair<uint64_t, uint64_t>> calls_;
};

}  // namespace client_test
}  // namespace cairn

#endif  // CAIRN_TESTS_CLIENT_CLIENT_FIXTURE_H_
