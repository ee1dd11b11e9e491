// The scale benchmark (issue #14): how the commit path's cost grows with the
// number of shards of one step, and with many jobs at once, against a
// running cluster (bench/scale.sh starts one).
//
//   scale_bench --coordinator=ADDR --coordinator-pid=PID [--threads=64]
//       [--shards=1024,4096,16384] [--jobs=64] [--job-shards=64] [--repeat=3]
//
// Each shard is one tiny tensor saved with Client::SaveShard by a pool of
// client threads (the stand-in for thousands of workers); a step commits
// when its last shard is durable. The sizes are measured --repeat times in
// turn (a round of every size, then the next round), and each figure is the
// median of its rounds: the machine is shared and noisy. Printed, one
// `key=value` per line:
//   shardsN_s            wall time of a step of N shards, save to commit
//   shardsN_per_s        shard reports per second
//   shardsN_cpu_ms_per_shard   coordinator CPU per shard
//   shardsN_rss_mib_per_1k     coordinator peak RSS growth per 1k shards
//                              (the largest of the rounds)
//   ratio_largest_smallest     time(largest N) / time(smallest N)
//   jobs_s, jobs_per_s   --jobs jobs of --job-shards shards, all at once
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"

namespace {

struct Flags {
  std::string coordinator;
  int pid = 0;
  int threads = 64;
  std::vector<int> shards = {1024, 4096, 16384};
  int jobs = 64;
  int job_shards = 64;
  int repeat = 3;
};

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "scale_bench: %s\n", msg.c_str());
  std::exit(1);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Emit(const std::string& key, double value) {
  std::printf("%s=%.6g\n", key.c_str(), value);
  std::fflush(stdout);
}

// The coordinator's CPU seconds so far (user + system, /proc/PID/stat).
double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) Die("cannot read /proc/PID/stat");
  std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
  // Fields after the command: state is [0]; utime [11], stime [12].
  double utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) || !absl::SimpleAtod(fields[12], &stime)) {
    Die("cannot parse /proc/PID/stat");
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A /proc/PID/status field in KiB (VmHWM, VmRSS).
int64_t StatusKiB(int pid, const char* field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atoll(line.c_str() + std::strlen(field) + 1);
  }
  return -1;
}

void ResetPeak(int pid) {
  std::ofstream out(absl::StrCat("/proc/", pid, "/clear_refs"));
  out << "5";
}

// Saves shards [0, n) of job/step from `threads` threads; returns when all
// returned (the last one after the commit).
void SaveStep(const Flags& f, const std::string& job, int64_t step, int n) {
  std::atomic<int> next{0};
  std::atomic<int> errors{0};
  std::string first_error;
  std::mutex mu;
  std::vector<std::thread> pool;
  const float value = 1.0f;
  for (int t = 0; t < f.threads; ++t) {
    pool.emplace_back([&] {
      cairn::ClientOptions o;
      o.coordinator = f.coordinator;
      auto client = cairn::Client::Connect(o);
      if (!client.ok()) Die(std::string(client.status().message()));
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        cairn::SaveShardOptions so;
        so.job = job;
        so.step = step;
        so.shard_index = i;
        so.num_shards = n;
        cairn::SaveTensor t;
        t.name = absl::StrCat("w", i);
        t.dtype = cairn::DataType::kFloat;
        t.shape = {1};
        t.data = absl::string_view(reinterpret_cast<const char*>(&value), sizeof(value));
        auto r = (*client)->SaveShard(so, {t});
        if (!r.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (errors.fetch_add(1) == 0) first_error = std::string(r.status().message());
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  if (errors.load() > 0) Die(absl::StrCat(errors.load(), " shard saves failed; first: ", first_error));
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      const std::string prefix = absl::StrCat("--", name, "=");
      return a.rfind(prefix, 0) == 0 ? a.substr(prefix.size()) : std::string("\x01");
    };
    if (std::string v = value("coordinator"); v != "\x01") {
      f.coordinator = v;
    } else if (std::string v = value("coordinator-pid"); v != "\x01") {
      f.pid = std::atoi(v.c_str());
    } else if (std::string v = value("threads"); v != "\x01") {
      f.threads = std::atoi(v.c_str());
    } else if (std::string v = value("shards"); v != "\x01") {
      f.shards.clear();
      for (absl::string_view s : absl::StrSplit(v, ',')) f.shards.push_back(std::atoi(std::string(s).c_str()));
    } else if (std::string v = value("jobs"); v != "\x01") {
      f.jobs = std::atoi(v.c_str());
    } else if (std::string v = value("job-shards"); v != "\x01") {
      f.job_shards = std::atoi(v.c_str());
    } else if (std::string v = value("repeat"); v != "\x01") {
      f.repeat = std::atoi(v.c_str());
    } else {
      Die("unknown flag " + a);
    }
  }
  if (f.coordinator.empty() || f.pid <= 0) Die("--coordinator and --coordinator-pid are required");
  if (f.threads < 1 || f.shards.empty() || f.repeat < 1) Die("bad --threads/--shards/--repeat");
  std::sort(f.shards.begin(), f.shards.end());
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = Parse(argc, argv);
  Emit("threads", f.threads);
  // Warm-up: connections, the writers' first files, page cache.
  SaveStep(f, "warmup", 1, 64);
  struct Sample {
    double secs, cpu_ms_per_shard, rss_mib_per_1k;
  };
  std::map<int, std::vector<Sample>> samples;
  for (int round = 0; round < f.repeat; ++round) {
    for (int n : f.shards) {
      const std::string job = absl::StrCat("scale", n, "-", round);
      ResetPeak(f.pid);
      const int64_t rss0 = StatusKiB(f.pid, "VmRSS:");
      const double cpu0 = CpuSeconds(f.pid);
      const double t0 = Now();
      SaveStep(f, job, 1, n);
      const double secs = Now() - t0;
      const double cpu = CpuSeconds(f.pid) - cpu0;
      const int64_t peak = StatusKiB(f.pid, "VmHWM:");
      std::fprintf(stderr, "[scale] round %d, %d shards: %.2f s, coordinator %.2f CPU s, peak RSS %+.1f MiB\n",
                   round, n, secs, cpu, (peak - rss0) / 1024.0);
      samples[n].push_back({secs, cpu * 1000 / n, (peak - rss0) / 1024.0 / (n / 1000.0)});
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  double first_s = 0, last_s = 0;
  for (int n : f.shards) {
    std::vector<double> secs, cpu, rss;
    for (const Sample& x : samples[n]) {
      secs.push_back(x.secs);
      cpu.push_back(x.cpu_ms_per_shard);
      rss.push_back(x.rss_mib_per_1k);
    }
    const double s = median(secs);
    Emit(absl::StrCat("shards", n, "_s"), s);
    Emit(absl::StrCat("shards", n, "_per_s"), n / s);
    Emit(absl::StrCat("shards", n, "_cpu_ms_per_shard"), median(cpu));
    // RSS: the largest growth (later rounds reuse memory the first freed).
    Emit(absl::StrCat("shards", n, "_rss_mib_per_1k"), *std::max_element(rss.begin(), rss.end()));
    if (first_s == 0) first_s = s;
    last_s = s;
  }
  Emit("ratio_largest_smallest", last_s / first_s);
  Emit("size_ratio", static_cast<double>(f.shards.back()) / f.shards.front());

  // Many jobs at once: each job's steps from its own threads.
  if (f.jobs > 0) {
    const double cpu0 = CpuSeconds(f.pid);
    const double t0 = Now();
    std::vector<std::thread> jobs;
    Flags per_job = f;
    per_job.threads = std::max(1, f.threads / std::min(f.jobs, f.threads));
    for (int j = 0; j < f.jobs; ++j) {
      jobs.emplace_back([&, j] { SaveStep(per_job, absl::StrCat("many", j), 1, f.job_shards); });
    }
    for (auto& t : jobs) t.join();
    const double secs = Now() - t0;
    const int total = f.jobs * f.job_shards;
    Emit("jobs_s", secs);
    Emit("jobs_per_s", total / secs);
    Emit("jobs_cpu_ms_per_shard", (CpuSeconds(f.pid) - cpu0) * 1000 / total);
  }
  return 0;
}
