// The PyTorch baseline (bench/torch_baseline.py) as a coprocess driven over
// pipes, so its runs interleave with Cairn's.
#ifndef CAIRN_BENCH_CHECKPOINT_TORCH_BASELINE_H_
#define CAIRN_BENCH_CHECKPOINT_TORCH_BASELINE_H_

#include <sys/types.h>

#include <cstdio>
#include <string>

namespace cairn_bench {

class TorchBaseline {
 public:
  TorchBaseline(const std::string& script, const std::string& sizes, const std::string& dir);
  ~TorchBaseline();
  // "save" or "load": the seconds the torch side measured.
  double Run(const char* cmd);
  const std::string& version() const { return version_; }

 private:
  std::string ReadLine();
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  std::string version_;
};

}  // namespace cairn_bench

#endif  // CAIRN_BENCH_CHECKPOINT_TORCH_BASELINE_H_
