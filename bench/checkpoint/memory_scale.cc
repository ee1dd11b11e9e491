// Figures 6 and 7: a writer's peak memory, and saves of many tiny tensors.
#include "bench/checkpoint/figures.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/checkpoint/torch_baseline.h"
#include "client/client.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"

namespace cairn_bench {
namespace {

namespace fs = std::filesystem;

std::vector<int> WriterPids(const std::string& cluster) {
  std::vector<int> pids;
  for (int i = 0;; ++i) {
    std::ifstream in(absl::StrCat(cluster, "/writer", i, ".pid"));
    int pid = 0;
    if (!(in >> pid)) break;
    pids.push_back(pid);
  }
  if (pids.empty()) Die("no writer pid files in " + cluster);
  return pids;
}

int64_t StatusKiB(int pid, const char* field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + key.size());
  }
  return -1;
}

bool ResetPeak(int pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// Saves one shard of `gib` GiB (256 MiB tensors sharing one buffer) and
// returns the highest writer VmHWM (KiB) seen during it.
int64_t PeakForShard(cairn::Client* client, const cairn::Buffer& chunk, double gib,
                     int64_t step, const std::vector<int>& pids) {
  const int64_t count = std::max<int64_t>(1, static_cast<int64_t>(gib * kGiB / chunk.size()));
  std::vector<cairn::SaveTensor> tensors;
  for (int64_t i = 0; i < count; ++i) {
    cairn::SaveTensor t;
    t.name = absl::StrCat("big/part", i);
    t.dtype = cairn::DataType::kFloat;
    t.shape = {static_cast<int64_t>(chunk.size() / 4)};
    t.data = chunk.view();
    tensors.push_back(std::move(t));
  }
  for (int pid : pids)
    if (!ResetPeak(pid)) Die(absl::StrCat("cannot reset VmHWM of writer ", pid, " (clear_refs)"));
  int64_t before = 0;
  for (int pid : pids) before = std::max(before, StatusKiB(pid, "VmRSS"));
  SyncAll();
  Touch(chunk.data(), chunk.size());
  cairn::SaveShardOptions o;
  o.job = "bench-memory";
  o.step = step;
  const double t0 = Now();
  Check(client->SaveShard(o, tensors), "memory save");
  const double secs = Now() - t0;
  int64_t peak = 0;
  for (int pid : pids) peak = std::max(peak, StatusKiB(pid, "VmHWM"));
  Progress(absl::StrCat("memory: ", count * chunk.size() / kMiB, " MiB shard in ", secs,
                        " s, writer RSS before ", before / 1024, " MiB, peak ", peak / 1024, " MiB"));
  return peak;
}

}  // namespace

void FigureMemory(const Flags& f) {
  const auto pids = WriterPids(f.cluster);
  cairn::Buffer chunk(256 * kMiB);
  Fill(chunk.data(), chunk.size(), 99);
  auto client = Connect(f);
  // The peak depends on how many chunks happen to be in flight: the highest
  // of three shards of each size, alternating.
  int64_t small = 0, big = 0;
  for (int round = 0; round < 3; ++round) {
    small = std::max(small, PeakForShard(client.get(), chunk, f.small_shard_gib, 1 + 2 * round, pids));
    big = std::max(big, PeakForShard(client.get(), chunk, f.big_shard_gib, 2 + 2 * round, pids));
  }
  Emit("memory_small_gib", f.small_shard_gib);
  Emit("memory_big_gib", f.big_shard_gib);
  Emit("memory_small_peak_kib", small);
  Emit("memory_big_peak_kib", big);
}

double TinySave(const Flags& f, int64_t count, int64_t step) {
  std::vector<float> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i);
  std::vector<cairn::SaveTensor> tensors(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "tiny/%08lld", static_cast<long long>(i));
    auto& t = tensors[static_cast<size_t>(i)];
    t.name = name;
    t.dtype = cairn::DataType::kFloat;
    t.data = absl::string_view(reinterpret_cast<const char*>(&values[static_cast<size_t>(i)]), 4);
  }
  auto client = Connect(f);
  cairn::SaveShardOptions o;
  o.job = absl::StrCat("bench-scale-", count);
  o.step = step;
  SyncAll();
  const double t0 = Now();
  Check(client->SaveShard(o, tensors), "tiny save");
  return Now() - t0;
}

void FigureScale(const Flags& f) {
  std::vector<double> small_s, large_s;
  for (int r = 0; r < f.repeats; ++r) {
    small_s.push_back(TinySave(f, f.tiny, r + 1));
    Progress(absl::StrCat("scale: ", f.tiny, " tiny tensors in ", small_s.back(), " s"));
  }
  // The large one once if it is slow (more than a minute projected for all).
  const int large_repeats = small_s.empty() || Median(small_s) * 10 * f.repeats > 60 ? 1 : f.repeats;
  for (int r = 0; r < large_repeats; ++r) {
    large_s.push_back(TinySave(f, f.tiny_large, r + 1));
    Progress(absl::StrCat("scale: ", f.tiny_large, " tiny tensors in ", large_s.back(), " s"));
  }
  Emit("scale_small_n", f.tiny);
  Emit("scale_large_n", f.tiny_large);
  EmitRuns("scale_small_s", small_s);
  EmitRuns("scale_large_s", large_s);
}


}  // namespace cairn_bench
