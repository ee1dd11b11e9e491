// What the checkpoint benchmark's figures share: flags, timing and output
// helpers, the training state they save, and the plain-file baselines.
#ifndef CAIRN_BENCH_CHECKPOINT_BENCH_UTIL_H_
#define CAIRN_BENCH_CHECKPOINT_BENCH_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "storage/bundle/tensor.h"

namespace cairn_bench {

inline constexpr uint64_t kMiB = 1ull << 20;
inline constexpr uint64_t kGiB = 1ull << 30;

struct Flags {
  std::string coordinator;
  std::string cluster;
  double gib = 2;
  int workers = 4;
  int repeats = 3;
  double big_shard_gib = 4;
  double small_shard_gib = 1;
  int64_t tiny = 100000;
  int64_t tiny_large = 1000000;
  int64_t partial_tensors = 10000;
  std::set<int> only = {1, 2, 4, 5, 6, 7};
  std::string sizes_out;
  std::string torch_script;  // empty: no PyTorch baseline (figure 3)
};

// The training state of figures 1-4: per worker one buffer cut into float
// tensors of mixed sizes (64 MiB down to 4 KiB, cycling).

struct WorkerState {
  cairn::Buffer buf;
  std::vector<cairn::SaveTensor> tensors;
};

[[noreturn]] void Die(const std::string& msg);
double Now();
double Median(std::vector<double> v);
std::string Join(const std::vector<double>& v);
void Progress(const std::string& msg);
void EmitRuns(const std::string& key, const std::vector<double>& runs);
void Touch(const char* p, size_t n);
// Pseudo-random float bytes (incompressible enough, never all zero).
void Fill(char* p, size_t n, uint64_t seed);
void SyncAll();
void WriteAll(int fd, const char* p, size_t n, const std::string& path);
void ReadAll(int fd, char* p, size_t n, const std::string& path);
std::unique_ptr<cairn::Client> Connect(const Flags& f);
std::vector<WorkerState> MakeState(const Flags& f);
void WriteSizes(const std::vector<WorkerState>& state, const std::string& path);
void TouchState(const std::vector<WorkerState>& state);
uint64_t StateBytes(const std::vector<WorkerState>& state);
// All workers save `step` of `job` in parallel; returns the wall time until
// the last SaveShard returned (the checkpoint is committed by then).
double CairnSave(const Flags& f, std::vector<std::unique_ptr<cairn::Client>>& clients,
                 const std::vector<WorkerState>& state, const std::string& job, int64_t step);
// The save baseline: the same bytes, one file per worker, write() + fsync,
// one file after the other.
double PlainWrite(const std::vector<WorkerState>& state, const std::string& dir);
std::vector<std::string> CheckpointFiles(const std::string& dir);
// The restore baseline: read() of every file of the checkpoint, one after
// the other, into one fresh buffer, or into `reuse` (memory already in use,
// the baseline of restoring into existing memory).
double PlainRead(const std::vector<std::string>& files, uint64_t* bytes,
                 cairn::Buffer* reuse = nullptr);
void VerifyRestore(const cairn::RestoredTensors& got, const std::vector<WorkerState>& state);
// `n` rounded up to a multiple of `m`: rotating through m contenders, each
// then takes every position (first, right after another, ...) equally often.
int RoundUp(int n, int m);
// Runs each step once, in an order rotated by `round`, so every contender
// goes first, second, ... equally often.
void RunRotated(const std::vector<std::function<void()>>& steps, int round);

template <typename T>
T Check(absl::StatusOr<T> s, const char* what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.status().ToString()));
  return *std::move(s);
}

// Emits `key=value` on stdout (the machine-readable result).
template <typename T>
void Emit(const std::string& key, const T& value) {
  std::ostringstream os;
  os.precision(9);
  os << key << "=" << value << "\n";
  std::fputs(os.str().c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace cairn_bench

#endif  // CAIRN_BENCH_CHECKPOINT_BENCH_UTIL_H_
