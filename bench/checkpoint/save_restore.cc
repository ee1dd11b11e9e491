// Figures 1-5: save, restore, async save and partial restore.
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

namespace fs = std::filesystem;


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
    o.step = 1001 + r;  // after the warm-up: saves move forward
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


}  // namespace cairn_bench
