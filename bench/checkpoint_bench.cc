// The checkpoint performance benchmark (the performance issue's figures),
// against a running local cluster. bench/run.sh starts the cluster, runs this,
// runs the PyTorch baseline and prints the table; this program prints one
// `key=value` line per measurement on stdout and progress on stderr.
//
//   checkpoint_bench --coordinator=HOST:PORT --cluster=DIR [--gib=2] [--workers=4]
//       [--repeats=3] [--big-shard-gib=4] [--small-shard-gib=1] [--tiny=100000]
//       [--tiny-large=1000000] [--partial-tensors=10000] [--only=1,2,4,5,6,7]
//       [--sizes-out=FILE] [--torch-script=bench/torch_baseline.py]
//
// DIR is the folder given to deploy/local/cluster.sh (storage/ holds the
// checkpoints, writerN.pid the writers' pids). Every figure is measured
// against its baseline in the same run, both on warmed buffers (every page
// touched just before timing), after a sync() so earlier dirty pages do not
// bleed into the timing; medians over --repeats rounds (restores: 3 x), each
// rounded up to a multiple of the contenders so the rotation is balanced.
//
//  1 save     4 workers (threads, one Client each) save --gib of mixed-size
//             float tensors as one step (SaveShard; the last returns once
//             committed) vs the same bytes written with write() + fsync, one
//             file per worker, one file after the other.
//             With --torch-script, torch.save + fsync of the same tensors
//             (figure 3a) takes its turn in the same loop; the order rotates
//             each repeat, so drift in the machine hits all alike.
//  2 restore  Client::Restore of that whole step into memory (every CRC
//             checked), copying and with map_files (copy-on-write views of
//             the page cache), vs read() of the same checkpoint files into
//             one fresh buffer from the same allocator (cairn::Buffer); also
//             restoring into memory already in use (RestoreRequest::into) vs
//             read() into a reused buffer; and torch.load of torch's files
//             (figure 3b), in rotating order.
//  4 async    SaveShardAsync of one worker's state (--gib/--workers, one
//             shard): time the call blocks vs one memcpy of the same bytes
//             into a warmed buffer; plus durable_after_micros.
//  5 partial  BundleReader::bytes_read() after Open + ReadTensor of one
//             tensor of a --partial-tensors checkpoint vs tensor + index size.
//  6 memory   writer VmHWM (reset through /proc/PID/clear_refs) while it
//             ingests a shard of --big-shard-gib and of --small-shard-gib
//             (the highest of three each)
//             (256 MiB tensors all pointing at one buffer).
//  7 scale    SaveShard wall time (stream + merge + catalog commit) of one
//             shard of --tiny-large vs --tiny scalar float tensors.
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
#include "client/client.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"

namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

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

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "checkpoint_bench: %s\n", msg.c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> s, const char* what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.status().ToString()));
  return *std::move(s);
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

// Emits `key=value` on stdout (the machine-readable result).
template <typename T>
void Emit(const std::string& key, const T& value) {
  std::ostringstream os;
  os.precision(9);
  os << key << "=" << value << "\n";
  std::fputs(os.str().c_str(), stdout);
  std::fflush(stdout);
}

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

// ---------------------------------------------------------------------------
// The training state of figures 1-4: per worker one buffer cut into float
// tensors of mixed sizes (64 MiB down to 4 KiB, cycling).

struct WorkerState {
  cairn::Buffer buf;
  std::vector<cairn::SaveTensor> tensors;
};

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
                 cairn::Buffer* reuse = nullptr) {
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
class TorchBaseline {
 public:
  TorchBaseline(const std::string& script, const std::string& sizes, const std::string& dir) {
    int to_child[2], from_child[2];
    if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) Die("pipe");
    pid_ = ::fork();
    if (pid_ < 0) Die("fork");
    if (pid_ == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      ::close(to_child[1]);
      ::close(from_child[0]);
      ::execl("/usr/bin/python3", "python3", script.c_str(), sizes.c_str(), dir.c_str(),
              static_cast<char*>(nullptr));
      std::perror("exec /usr/bin/python3");
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    in_ = ::fdopen(to_child[1], "w");
    out_ = ::fdopen(from_child[0], "r");
    const std::string ready = ReadLine();
    if (ready.rfind("ready ", 0) != 0) Die("torch baseline did not start: " + ready);
    version_ = ready.substr(6);
  }
  ~TorchBaseline() {
    std::fputs("quit\n", in_);
    std::fclose(in_);
    std::fclose(out_);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  // "save" or "load": the seconds the torch side measured.
  double Run(const char* cmd) {
    std::fprintf(in_, "%s\n", cmd);
    std::fflush(in_);
    const std::string reply = ReadLine();
    char* end = nullptr;
    const double secs = std::strtod(reply.c_str(), &end);
    if (reply.empty() || end == reply.c_str()) Die(absl::StrCat("torch ", cmd, ": ", reply));
    return secs;
  }
  const std::string& version() const { return version_; }

 private:
  std::string ReadLine() {
    char line[512];
    if (std::fgets(line, sizeof line, out_) == nullptr) return "(torch baseline exited)";
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  std::string version_;
};

// `n` rounded up to a multiple of `m`: rotating through m contenders, each
// then takes every position (first, right after another, ...) equally often.
int RoundUp(int n, int m) { return (n + m - 1) / m * m; }

// Runs each step once, in an order rotated by `round`, so every contender
// goes first, second, ... equally often.
void RunRotated(const std::vector<std::function<void()>>& steps, int round) {
  const size_t n = steps.size();
  for (size_t k = 0; k < n; ++k) steps[(k + static_cast<size_t>(round)) % n]();
}

// ---------------------------------------------------------------------------

void FigureSaveRestore(const Flags& f, std::vector<WorkerState>& state, const std::string& storage,
                       TorchBaseline* torch) {
  std::vector<std::unique_ptr<cairn::Client>> clients;
  for (int w = 0; w < f.workers; ++w) clients.push_back(Connect(f));
  const uint64_t bytes = StateBytes(state);
  Emit("state_bytes", bytes);
  Emit("state_tensors", state[0].tensors.size() * state.size());
  const std::string job = "bench-save";
  const std::string plain_dir = storage + "/../plain-baseline";
  if (torch != nullptr) Emit("torch_version", torch->version());

  // Old steps go, as in any real job: gigabytes of stale checkpoints in the
  // page cache would only make the machine reclaim memory mid-timing.
  cairn::RetentionPolicy keep_two;
  keep_two.keep_last = 2;
  if (absl::Status s = clients[0]->SetPolicy(job, keep_two); !s.ok()) Die(s.ToString());
  Progress(absl::StrCat("save: warm-up (", bytes / kMiB, " MiB, ", f.workers, " workers)"));
  TouchState(state);
  CairnSave(f, clients, state, job, 0);
  PlainWrite(state, plain_dir);
  if (torch != nullptr) torch->Run("save");

  std::vector<double> cairn_s, plain_s, torch_s;
  const int save_rounds = RoundUp(f.repeats, torch != nullptr ? 3 : 2);
  for (int r = 0; r < save_rounds; ++r) {
    std::vector<std::function<void()>> steps = {
        [&] {
          SyncAll();
          TouchState(state);
          cairn_s.push_back(CairnSave(f, clients, state, job, r + 1));
        },
        [&] {
          SyncAll();
          TouchState(state);
          plain_s.push_back(PlainWrite(state, plain_dir));
        }};
    if (torch != nullptr) steps.push_back([&] { torch_s.push_back(torch->Run("save")); });
    RunRotated(steps, r);
    Progress(absl::StrCat("save run ", r + 1, ": cairn ", cairn_s.back(), " s, plain ",
                          plain_s.back(), " s",
                          torch_s.empty() ? "" : absl::StrCat(", torch ", torch_s.back(), " s")));
  }
  EmitRuns("save_cairn_s", cairn_s);
  EmitRuns("save_plain_s", plain_s);
  if (torch != nullptr) EmitRuns("save_torch_s", torch_s);

  if (!f.only.count(2)) return;
  auto client = Connect(f);
  cairn::RestoreRequest mapped;
  mapped.map_files = true;
  // Every repeat restores the newest step (retention keeps two).
  const int64_t step = save_rounds;
  Progress("restore: warm-up + byte check");
  {
    VerifyRestore(Check(client->Restore(job, step, {}), "restore"), state);
    VerifyRestore(Check(client->Restore(job, step, mapped), "restore"), state);
    if (torch != nullptr) torch->Run("load");
  }
  std::vector<double> restore_s, mapped_s, read_s, load_s, into_s, warm_read_s;
  // Restoring into memory already in use (a model's parameters): every
  // tensor into its place in one buffer, against read() into another.
  cairn::Buffer into_buf(bytes);
  cairn::RestoreRequest into;
  {
    uint64_t off = 0;
    for (const auto& ws : state) {
      for (const auto& t : ws.tensors) {
        into.into[t.name] = absl::Span<char>(into_buf.data() + off, t.data.size());
        off += t.data.size();
      }
    }
  }
  std::memset(into_buf.data(), 0, into_buf.size());
  VerifyRestore(Check(client->Restore(job, step, into), "restore"), state);
  uint64_t file_bytes = 0;
  const auto files = CheckpointFiles(absl::StrCat(storage, "/", job, "/ckpt-", step));
  uint64_t files_total = 0;
  for (const auto& p : files) files_total += fs::file_size(p);
  cairn::Buffer warm(files_total);
  std::memset(warm.data(), 0, warm.size());
  // Restores take a second or so but swing widely here (memory another
  // process just freed, or pages idle for 30 s, come back slowly from the
  // host): three rounds per repeat.
  const int restore_rounds = RoundUp(3 * f.repeats, torch != nullptr ? 6 : 5);
  for (int r = 0; r < restore_rounds; ++r) {
    auto cairn_restore = [&](const cairn::RestoreRequest& request, std::vector<double>* out) {
      const double t0 = Now();
      auto got = Check(client->Restore(job, step, request), "restore");
      out->push_back(Now() - t0);
      uint64_t n = 0;
      for (const auto& [name, t] : got) n += t.tensor.data.size();
      if (n != bytes) Die("restore returned the wrong number of bytes");
    };
    std::vector<std::function<void()>> steps = {
        [&] { cairn_restore({}, &restore_s); },
        [&] { cairn_restore(mapped, &mapped_s); },
        [&] { read_s.push_back(PlainRead(files, &file_bytes)); },
        [&] { cairn_restore(into, &into_s); },
        [&] { warm_read_s.push_back(PlainRead(files, &file_bytes, &warm)); }};
    if (torch != nullptr) steps.push_back([&] { load_s.push_back(torch->Run("load")); });
    RunRotated(steps, r);
    Progress(absl::StrCat("restore run ", r + 1, ": cairn ", restore_s.back(), " s, mapped ",
                          mapped_s.back(), " s, into ", into_s.back(), " s, plain ", read_s.back(),
                          " s, plain into ", warm_read_s.back(), " s",
                          load_s.empty() ? "" : absl::StrCat(", torch.load ", load_s.back(), " s")));
  }
  Emit("restore_file_bytes", file_bytes);
  EmitRuns("restore_cairn_s", restore_s);
  EmitRuns("restore_mapped_s", mapped_s);
  EmitRuns("restore_into_s", into_s);
  EmitRuns("restore_plain_warm_s", warm_read_s);
  EmitRuns("restore_plain_s", read_s);
  if (torch != nullptr) EmitRuns("load_torch_s", load_s);
}

void FigureAsync(const Flags& f, std::vector<WorkerState>& state) {
  const WorkerState& ws = state[0];
  const size_t n = ws.buf.size();
  Emit("async_bytes", n);
  cairn::Buffer dst(n);
  std::memset(dst.data(), 1, n);
#if CAIRN_BENCH_HAVE_ASYNC
  auto client = Connect(f);
  const std::string job = "bench-async";
  cairn::SaveShardOptions o;
  o.job = job;
  o.num_shards = 1;
  Progress(absl::StrCat("async: warm-up (", n / kMiB, " MiB, one shard)"));
  o.step = 1000;
  {
    auto h = Check(client->SaveShardAsync(o, ws.tensors), "async save");
    Check(h->Wait(), "async wait");
  }
  std::vector<double> stall_s, durable_s, memcpy_s;
  for (int r = 0; r < f.repeats; ++r) {
    SyncAll();
    Touch(ws.buf.data(), n);
    Touch(dst.data(), n);
    double t0 = Now();
    std::memcpy(dst.data(), ws.buf.data(), n);
    memcpy_s.push_back(Now() - t0);

    SyncAll();
    Touch(ws.buf.data(), n);
    o.step = r + 1;
    t0 = Now();
    auto h = Check(client->SaveShardAsync(o, ws.tensors), "async save");
    stall_s.push_back(Now() - t0);
    Check(h->Wait(), "async wait");
    durable_s.push_back(static_cast<double>(h->durable_after_micros()) / 1e6);
    Progress(absl::StrCat("async run ", r + 1, ": blocked ", stall_s.back(), " s, durable after ",
                          durable_s.back(), " s, memcpy ", memcpy_s.back(), " s"));
  }
  EmitRuns("async_stall_s", stall_s);
  EmitRuns("async_durable_s", durable_s);
  EmitRuns("async_memcpy_s", memcpy_s);
#else
  (void)f;
  std::vector<double> memcpy_s;
  for (int r = 0; r < f.repeats; ++r) {
    Touch(ws.buf.data(), n);
    Touch(dst.data(), n);
    const double t0 = Now();
    std::memcpy(dst.data(), ws.buf.data(), n);
    memcpy_s.push_back(Now() - t0);
  }
  EmitRuns("async_memcpy_s", memcpy_s);
  Emit("async_skipped", "SaveShardAsync not in this build (re-run cmake once client implements it)");
  Progress("async: skipped, SaveShardAsync not implemented in this build");
#endif
}

void FigurePartial(const Flags& f, const std::string& storage) {
  // --partial-tensors tensors cycling 1, 4, 16, 64 KiB.
  const int64_t count = f.partial_tensors;
  static const size_t kSizes[] = {1024, 4096, 16384, 65536};
  size_t total = 0;
  for (int64_t i = 0; i < count; ++i) total += kSizes[i % 4];
  cairn::Buffer buf(total);
  Fill(buf.data(), total, 77);
  std::vector<cairn::SaveTensor> tensors;
  size_t off = 0;
  for (int64_t i = 0; i < count; ++i) {
    const size_t size = kSizes[i % 4];
    cairn::SaveTensor t;
    char name[64];
    std::snprintf(name, sizeof name, "model/block%03lld/var%06lld", static_cast<long long>(i / 100),
                  static_cast<long long>(i));
    t.name = name;
    t.dtype = cairn::DataType::kFloat;
    t.shape = {static_cast<int64_t>(size / 4)};
    t.data = absl::string_view(buf.data() + off, size);
    tensors.push_back(std::move(t));
    off += size;
  }
  Progress(absl::StrCat("partial: saving ", count, " tensors (", total / kMiB, " MiB)"));
  auto client = Connect(f);
  cairn::SaveShardOptions o;
  o.job = "bench-partial";
  o.step = 1;
  Check(client->SaveShard(o, tensors), "partial save");

  // The middle tensor with index i % 4 == 3 (64 KiB).
  int64_t pick = count / 2;
  pick = pick - pick % 4 + 3;
  if (pick >= count) pick = count - 1;
  const cairn::SaveTensor& want = tensors[static_cast<size_t>(pick)];
  auto st = Check(cairn::NewLocalStorage(storage), "local storage");
  const std::string prefix = "bench-partial/ckpt-1/variables";
  const uint64_t index_bytes = fs::file_size(storage + "/" + prefix + ".index");
  std::vector<double> read_bytes;
  for (int r = 0; r < f.repeats; ++r) {
    auto reader = Check(cairn::BundleReader::Open(st.get(), prefix), "open reader");
    auto t = Check(reader->ReadTensor(want.name), "read tensor");
    if (t.data.view() != want.data) Die("partial restore differs");
    read_bytes.push_back(static_cast<double>(reader->bytes_read()));
  }
  Emit("partial_tensors", count);
  Emit("partial_tensor_bytes", want.data.size());
  Emit("partial_index_bytes", index_bytes);
  EmitRuns("partial_bytes_read", read_bytes);
  Progress(absl::StrCat("partial: read ", Median(read_bytes), " bytes for a ", want.data.size(),
                        "-byte tensor, index ", index_bytes, " bytes"));
}

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

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      const std::string p = std::string("--") + name + "=";
      return a.rfind(p, 0) == 0 ? argv[i] + p.size() : nullptr;
    };
    if (const char* v = val("coordinator")) f.coordinator = v;
    else if (const char* v = val("cluster")) f.cluster = v;
    else if (const char* v = val("gib")) f.gib = std::atof(v);
    else if (const char* v = val("workers")) f.workers = std::atoi(v);
    else if (const char* v = val("repeats")) f.repeats = std::atoi(v);
    else if (const char* v = val("big-shard-gib")) f.big_shard_gib = std::atof(v);
    else if (const char* v = val("small-shard-gib")) f.small_shard_gib = std::atof(v);
    else if (const char* v = val("tiny")) f.tiny = std::atoll(v);
    else if (const char* v = val("tiny-large")) f.tiny_large = std::atoll(v);
    else if (const char* v = val("partial-tensors")) f.partial_tensors = std::atoll(v);
    else if (const char* v = val("sizes-out")) f.sizes_out = v;
    else if (const char* v = val("torch-script")) f.torch_script = v;
    else if (const char* v = val("only")) {
      f.only.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) f.only.insert(std::atoi(item.c_str()));
    } else {
      Die("unknown flag " + a);
    }
  }
  if (f.coordinator.empty() || f.cluster.empty()) Die("--coordinator and --cluster are required");
  if (f.workers < 1 || f.repeats < 1 || f.gib <= 0) Die("bad --workers/--repeats/--gib");
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  const std::string storage = f.cluster + "/storage";
  const double t0 = Now();
  Emit("workers", f.workers);
  Emit("repeats", f.repeats);
  if (f.only.count(1) || f.only.count(2) || f.only.count(4) || !f.sizes_out.empty()) {
    Progress(absl::StrCat("generating ", f.gib, " GiB of state for ", f.workers, " workers"));
    auto state = MakeState(f);
    if (!f.sizes_out.empty()) WriteSizes(state, f.sizes_out);
    if (f.only.count(1)) {
      std::unique_ptr<TorchBaseline> torch;
      if (!f.torch_script.empty()) {
        const std::string sizes = f.cluster + "/torch-sizes.txt";
        WriteSizes(state, sizes);
        Progress("starting the PyTorch baseline");
        torch = std::make_unique<TorchBaseline>(f.torch_script, sizes, f.cluster + "/torch");
      }
      FigureSaveRestore(f, state, storage, torch.get());
    }
    if (f.only.count(4)) FigureAsync(f, state);
  }
  if (f.only.count(5)) FigurePartial(f, storage);
  if (f.only.count(6)) FigureMemory(f);
  if (f.only.count(7)) FigureScale(f);
  Emit("bench_seconds", Now() - t0);
  return 0;
}
