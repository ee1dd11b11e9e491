// Load: several jobs × shards saving repeatedly through real processes on
// loopback for a bounded time (CAIRN_LOAD_SECONDS, default 15), with
// retention on. No save may fail, the checkpoints retention keeps restore
// to exactly the bytes saved, and every server's peak memory stays bounded
// (and must be readable). Prints its counts.
#include <atomic>
#include <cstdio>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::Cluster;

// Peak resident memory of a process in MiB (VmHWM), or -1.
int64_t PeakRssMiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  }
  return -1;
}

constexpr int kJobs = 3, kShards = 4;
constexpr size_t kTensorBytes = 1 << 20;

// The 1 MiB of tensor `name` ("w<s>" or shard s's rows of "emb") that shard
// s of job j saves at `step`. Different for every job, step, shard, tensor
// and position, so a mixed-up or misplaced chunk shows in the restored bytes.
std::string TensorData(const std::string& name, int j, int64_t step, int s) {
  const uint32_t seed = static_cast<uint32_t>(j * 1000003 + step * 16 + s) * 2 + (name == "emb" ? 1 : 0);
  return testing::PatternBytes(kTensorBytes, seed);
}

TEST(Load, ManyJobsAndShardsSavingAtOnceStayCorrectAndBounded) {
  const char* env = std::getenv("CAIRN_LOAD_SECONDS");
  const int seconds = env ? std::atoi(env) : 15;
  testing::TempDir dir;
  Cluster cluster(dir.path(), 2);
  ASSERT_TRUE(cluster.ok());
  // 2 MiB per shard: a 1 MiB tensor and 1 MiB of a partitioned one.
  std::vector<std::string> prefixes;
  std::vector<std::vector<std::string>> order(kShards);  // tensor names in file order
  for (int s = 0; s < kShards; ++s) {
    std::vector<SafetensorsTensor> infos = {{absl::StrCat("w", s), DataType::kFloat, {256, 1024}},
                                            {"emb", DataType::kFloat, {256, 1024}}};
    prefixes.push_back(*BuildSafetensorsPrefix(
        &infos, {{"cairn.slice.emb", absl::StrCat(256 * kShards, " 1024 ", 256 * s, ",256:-")}}));
    for (const auto& info : infos) order[s].push_back(info.name);  // as the prefix laid them out
  }
  for (int j = 0; j < kJobs; ++j) {
    auto r = testing::Run({testing::BinPath("cairn"), "policy", "--coordinator=" + cluster.coordinator(),
                           absl::StrCat("--job=load", j), "--keep-last=2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::atomic<int> saves{0}, failures{0}, steps{0};
  std::vector<int64_t> last_step(kJobs, 0);  // newest step of job j whose every shard saved
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> jobs;
  for (int j = 0; j < kJobs; ++j) {
    jobs.emplace_back([&, j] {
      for (int64_t step = 1; std::chrono::steady_clock::now() < deadline; ++step) {
        std::vector<std::future<testing::RunResult>> shards;
        for (int s = 0; s < kShards; ++s) {
          shards.push_back(std::async(std::launch::async, [&, j, s, step] {
            const std::string file = dir.Join(absl::StrCat("load", j, "-", step, "-", s, ".safetensors"));
            std::string bytes = prefixes[s];
            for (const std::string& name : order[s]) bytes += TensorData(name, j, step, s);
            testing::WriteFile(file, bytes);
            auto r = testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(),
                                   absl::StrCat("--job=load", j), absl::StrCat("--step=", step),
                                   "--from=" + file, absl::StrCat("--shard=", s, "/", kShards)});
            std::remove(file.c_str());
            return r;
          }));
        }
        bool all_saved = true;
        for (auto& f : shards) {
          auto r = f.get();
          ++saves;
          if (r.exit_code != 0) {
            ++failures;
            all_saved = false;
            ADD_FAILURE() << r.err;
          }
        }
        if (all_saved) last_step[j] = step;
        ++steps;
      }
    });
  }
  for (auto& t : jobs) t.join();
  const int64_t coordinator_mib = PeakRssMiB(cluster.coordinator_process().pid());
  int64_t writer_mib = 0;
  for (int w = 0; w < cluster.num_writers(); ++w) {
    writer_mib = std::max(writer_mib, PeakRssMiB(cluster.writer_process(w).pid()));
  }
  std::cout << "load: " << kJobs << " jobs x " << kShards << " shards for " << seconds << " s: "
            << steps << " checkpoints, " << saves << " shard saves (" << (saves * 2) << " MiB), "
            << failures << " failures; peak RSS coordinator " << coordinator_mib << " MiB, writers "
            << writer_mib << " MiB\n";
  EXPECT_EQ(failures, 0);
  EXPECT_GT(steps, kJobs);
#if defined(__SANITIZE_ADDRESS__)
  const int64_t limit = 1024;  // AddressSanitizer's shadow memory and quarantine
#else
  const int64_t limit = 300;
#endif
  // -1 means /proc/PID/status had no VmHWM (or the process is gone): a bound
  // that cannot be measured is not met.
  EXPECT_GT(coordinator_mib, 0) << "could not read the coordinator's peak RSS";
  EXPECT_LT(coordinator_mib, limit);
  EXPECT_GT(writer_mib, 0) << "could not read the writers' peak RSS";
  EXPECT_LT(writer_mib, limit);
  for (int j = 0; j < kJobs; ++j) {
    auto r = testing::Run({testing::BinPath("cairn"), "list", "--coordinator=" + cluster.coordinator(),
                           absl::StrCat("--job=load", j), "--json"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("\"num_shards\": 4"), std::string::npos);
  }
  // The two newest steps of each job (keep-last=2) restore to exactly the
  // bytes their shards saved.
  for (int j = 0; j < kJobs; ++j) {
    ASSERT_GE(last_step[j], 1) << "job load" << j << " saved no whole step";
    for (int64_t step = std::max<int64_t>(1, last_step[j] - 1); step <= last_step[j]; ++step) {
      SCOPED_TRACE(absl::StrCat("job load", j, " step ", step));
      const std::string out = dir.Join(absl::StrCat("restored", j, "-", step, ".safetensors"));
      auto r = testing::Run({testing::BinPath("cairn"), "restore", "--coordinator=" + cluster.coordinator(),
                             absl::StrCat("--job=load", j), absl::StrCat("--step=", step), "--to=" + out});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      auto tensors = testing::ReadSafetensorsTensors(out);
      EXPECT_EQ(tensors.size(), static_cast<size_t>(kShards + 1));
      std::string emb;
      for (int s = 0; s < kShards; ++s) {
        const std::string w = absl::StrCat("w", s);
        EXPECT_TRUE(tensors[w] == TensorData(w, j, step, s)) << w;
        emb += TensorData("emb", j, step, s);
      }
      EXPECT_TRUE(tensors["emb"] == emb) << "emb";
      std::remove(out.c_str());
    }
  }
}

}  // namespace
}  // namespace cairn
