#include "bench/checkpoint/bench_util.h"

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
#include "storage/bundle/bundle_reader.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"

namespace cairn_bench {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "checkpoint_bench: %s\n", msg.c_str());
  std::exit(1);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Join(const std::vector<double>& v) {
  std::string s;
  for (double d : v) absl::StrAppend(&s, s.empty() ? "" : ",", d);
  return s;
}

void Progress(const std::string& msg) { std::fprintf(stderr, "[bench] %s\n", msg.c_str()); }


void EmitRuns(const std::string& key, const std::vector<double>& runs) {
  Emit(key, Median(runs));
  Emit(key + "_runs", Join(runs));
}

// Touches every page (reads one byte per 4 KiB) so memory left alone for a
// while is resident again before a timing starts.
volatile uint64_t g_touch_sink = 0;
void Touch(const char* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i += 4096) s += static_cast<unsigned char>(p[i]);
  g_touch_sink = g_touch_sink + s;
}

// Pseudo-random float bytes (incompressible enough, never all zero).
void Fill(char* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(i);
}

void SyncAll() { ::sync(); }

void WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, 64 * kMiB));
    if (w < 0) {
      if (errno == EINTR) continue;
      Die("write " + path + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void ReadAll(int fd, char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, std::min<size_t>(n, 16 * kMiB));
    if (r < 0) {
      if (errno == EINTR) continue;
      Die("read " + path + ": " + std::strerror(errno));
    }
    if (r == 0) Die("short read " + path);
    p += r;
    n -= static_cast<size_t>(r);
  }
}

std::unique_ptr<cairn::Client> Connect(const Flags& f) {
  cairn::ClientOptions o;
  o.coordinator = f.coordinator;
  return Check(cairn::Client::Connect(o), "connect");
}


std::vector<WorkerState> MakeState(const Flags& f) {
  const uint64_t total = static_cast<uint64_t>(f.gib * static_cast<double>(kGiB));
  const uint64_t per_worker = total / static_cast<uint64_t>(f.workers) / 4 * 4;
  static const uint64_t kSizes[] = {64 * kMiB, 16 * kMiB, 4 * kMiB, 1 * kMiB,
                                    256 * 1024, 64 * 1024, 4 * 1024};
  std::vector<WorkerState> state(static_cast<size_t>(f.workers));
  for (int w = 0; w < f.workers; ++w) {
    WorkerState& ws = state[static_cast<size_t>(w)];
    ws.buf = cairn::Buffer(per_worker);
    Fill(ws.buf.data(), per_worker, static_cast<uint64_t>(w) + 1);
    uint64_t off = 0;
    for (int i = 0; off < per_worker; ++i) {
      const uint64_t size = std::min(kSizes[i % 7], per_worker - off);
      cairn::SaveTensor t;
      char name[64];
      std::snprintf(name, sizeof name, "w%d/layer%05d/kernel", w, i);
      t.name = name;
      t.dtype = cairn::DataType::kFloat;
      t.shape = {static_cast<int64_t>(size / 4)};
      t.data = absl::string_view(ws.buf.data() + off, size);
      ws.tensors.push_back(std::move(t));
      off += size;
    }
  }
  return state;
}

void WriteSizes(const std::vector<WorkerState>& state, const std::string& path) {
  std::ofstream out(path);
  for (size_t w = 0; w < state.size(); ++w)
    for (const auto& t : state[w].tensors) out << w << " " << t.name << " " << t.data.size() << "\n";
  if (!out) Die("cannot write " + path);
}

void TouchState(const std::vector<WorkerState>& state) {
  for (const auto& ws : state) Touch(ws.buf.data(), ws.buf.size());
}

uint64_t StateBytes(const std::vector<WorkerState>& state) {
  uint64_t n = 0;
  for (const auto& ws : state) n += ws.buf.size();
  return n;
}

// All workers save `step` of `job` in parallel; returns the wall time until
// the last SaveShard returned (the checkpoint is committed by then).
double CairnSave(const Flags& f, std::vector<std::unique_ptr<cairn::Client>>& clients,
                 const std::vector<WorkerState>& state, const std::string& job, int64_t step) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  std::vector<std::string> errors(state.size());
  for (size_t w = 0; w < state.size(); ++w) {
    threads.emplace_back([&, w] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      cairn::SaveShardOptions o;
      o.job = job;
      o.step = step;
      o.shard_index = static_cast<int>(w);
      o.num_shards = f.workers;
      auto r = clients[w]->SaveShard(o, state[w].tensors);
      if (!r.ok()) errors[w] = r.status().ToString();
    });
  }
  while (ready.load() < static_cast<int>(state.size())) std::this_thread::yield();
  const double t0 = Now();
  go.store(true);
  for (auto& t : threads) t.join();
  const double secs = Now() - t0;
  for (const auto& e : errors)
    if (!e.empty()) Die("save: " + e);
  return secs;
}

// The save baseline: the same bytes, one file per worker, write() + fsync,
// one file after the other.
double PlainWrite(const std::vector<WorkerState>& state, const std::string& dir) {
  fs::create_directories(dir);
  const double t0 = Now();
  for (size_t w = 0; w < state.size(); ++w) {
    const std::string path = absl::StrCat(dir, "/worker", w, ".bin");
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) Die("open " + path + ": " + std::strerror(errno));
    WriteAll(fd, state[w].buf.data(), state[w].buf.size(), path);
    if (::fsync(fd) != 0) Die("fsync " + path);
    ::close(fd);
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  const double secs = Now() - t0;
  fs::remove_all(dir);
  return secs;
}

std::vector<std::string> CheckpointFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.rfind("variables.", 0) == 0) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) Die("no checkpoint files in " + dir);
  return files;
}

// The restore baseline: read() of every file of the checkpoint, one after
// the other, into one fresh buffer, or into `reuse` (memory already in use,
// the baseline of restoring into existing memory).
double PlainRead(const std::vector<std::string>& files, uint64_t* bytes,
                 cairn::Buffer* reuse) {
  uint64_t total = 0;
  for (const auto& p : files) total += fs::file_size(p);
  const double t0 = Now();
  cairn::Buffer fresh(reuse == nullptr ? total : 0);
  cairn::Buffer& buf = reuse == nullptr ? fresh : *reuse;
  if (buf.size() < total) Die("PlainRead: buffer too small");
  uint64_t off = 0;
  for (const auto& p : files) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open " + p);
    const uint64_t n = fs::file_size(p);
    ReadAll(fd, buf.data() + off, n, p);
    ::close(fd);
    off += n;
  }
  const double secs = Now() - t0;
  *bytes = total;
  return secs;
}

void VerifyRestore(const cairn::RestoredTensors& got, const std::vector<WorkerState>& state) {
  size_t n = 0;
  for (const auto& ws : state) {
    for (const auto& t : ws.tensors) {
      auto it = got.find(t.name);
      if (it == got.end()) Die("restore lacks " + t.name);
      if (it->second.tensor.data.view() != t.data) Die("restore differs in " + t.name);
      ++n;
    }
  }
  if (n != got.size()) Die("restore returned extra tensors");
}

// The PyTorch baseline (bench/torch_baseline.py) as a coprocess driven over
// pipes, so its runs interleave with Cairn's.
// then takes every position (first, right after another, ...) equally often.
int RoundUp(int n, int m) { return (n + m - 1) / m * m; }

// Runs each step once, in an order rotated by `round`, so every contender
// goes first, second, ... equally often.
void RunRotated(const std::vector<std::function<void()>>& steps, int round) {
  const size_t n = steps.size();
  for (size_t k = 0; k < n; ++k) steps[(k + static_cast<size_t>(round)) % n]();
}


}  // namespace cairn_bench
