// Load: several jobs × shards saving repeatedly through real processes on
// loopback for a bounded time (CAIRN_LOAD_SECONDS, default 15), with
// retention on. No save may fail, and every server's peak memory stays
// bounded. Prints its counts.
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/safetensors.h"
#include "tests/testing/process.h"
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

TEST(Load, ManyJobsAndShardsSavingAtOnceStayCorrectAndBounded) {
  const char* env = std::getenv("CAIRN_LOAD_SECONDS");
  const int seconds = env ? std::atoi(env) : 15;
  constexpr int kJobs = 3, kShards = 4;
  testing::TempDir dir;
  Cluster cluster(dir.path(), 2);
  ASSERT_TRUE(cluster.ok());
  // 2 MiB per shard: a 1 MiB tensor and 1 MiB of a partitioned one.
  std::vector<std::string> files;
  for (int s = 0; s < kShards; ++s) {
    std::vector<SafetensorsTensor> infos = {{absl::StrCat("w", s), DataType::kFloat, {256, 1024}},
                                            {"emb", DataType::kFloat, {256, 1024}}};
    std::string bytes = *BuildSafetensorsPrefix(
        &infos, {{"cairn.slice.emb", absl::StrCat(256 * kShards, " 1024 ", 256 * s, ",256:-")}});
    bytes += std::string(2 << 20, static_cast<char>('a' + s));
    files.push_back(dir.Join(absl::StrCat("shard", s, ".safetensors")));
    testing::WriteFile(files.back(), bytes);
  }
  for (int j = 0; j < kJobs; ++j) {
    auto r = testing::Run({testing::BinPath("cairn"), "policy", "--coordinator=" + cluster.coordinator(),
                           absl::StrCat("--job=load", j), "--keep-last=2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::atomic<int> saves{0}, failures{0}, steps{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> jobs;
  for (int j = 0; j < kJobs; ++j) {
    jobs.emplace_back([&, j] {
      for (int64_t step = 1; std::chrono::steady_clock::now() < deadline; ++step) {
        std::vector<std::future<testing::RunResult>> shards;
        for (int s = 0; s < kShards; ++s) {
          shards.push_back(std::async(std::launch::async, [&, j, s, step] {
            return testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(),
                                 absl::StrCat("--job=load", j), absl::StrCat("--step=", step),
                                 "--from=" + files[s], absl::StrCat("--shard=", s, "/", kShards)});
          }));
        }
        for (auto& f : shards) {
          auto r = f.get();
          ++saves;
          if (r.exit_code != 0) {
            ++failures;
            ADD_FAILURE() << r.err;
          }
        }
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
  EXPECT_LT(coordinator_mib, limit);
  EXPECT_LT(writer_mib, limit);
  for (int j = 0; j < kJobs; ++j) {
    auto r = testing::Run({testing::BinPath("cairn"), "list", "--coordinator=" + cluster.coordinator(),
                           absl::StrCat("--job=load", j), "--json"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("\"num_shards\": 4"), std::string::npos);
  }
}

}  // namespace
}  // namespace cairn
