// cairn-demo: a simulated multi-worker training job checkpointing through a
// running Cairn service, then restoring onto a different number of workers
// and checking every byte. deploy/local/demo.sh runs it against a local
// cluster; it works against any coordinator.
//
//   cairn-demo --coordinator=HOST:PORT [--job=demo] [--workers=4] [--restore-workers=2]
//              [--steps=4] [--emb-rows=65536] [--emb-dim=64]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "proto/cmdline/flags.h"

namespace {

using cairn::DataType;
using cairn::TensorSlice;

// Deterministic "weights": a tensor's bytes depend on its name and the step.
std::string Weights(const std::string& name, int64_t step, size_t bytes) {
  std::string s(bytes, '\0');
  uint64_t x = std::hash<std::string>()(name) ^ (static_cast<uint64_t>(step) * 0x9e3779b97f4a7c15ull);
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    float f = static_cast<float>(static_cast<int32_t>(x >> 33)) / 2147483648.0f;
    std::memcpy(&s[i], &f, 4);
  }
  return s;
}

struct Job {
  int workers;
  int64_t emb_rows;
  int64_t emb_dim;
  // Whole-tensor bytes of the embedding at a step (what every worker's slice
  // is cut from).
  std::string Embedding(int64_t step) const {
    return Weights("embedding", step, static_cast<size_t>(emb_rows * emb_dim * 4));
  }
};

double MiB(uint64_t b) { return b / 1048576.0; }

int Fail(const std::string& msg) {
  std::cerr << "cairn-demo: FAILED: " << msg << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = cairn::cmdline::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc),
      {"coordinator", "job", "workers", "restore-workers", "steps", "emb-rows", "emb-dim", "help"});
  if (!flags.ok() || flags->GetBool("help") || !flags->Has("coordinator")) {
    std::cerr << "usage: cairn-demo --coordinator=HOST:PORT [--job=demo] [--workers=4]\n"
                 "                  [--restore-workers=2] [--steps=4] [--emb-rows=65536] [--emb-dim=64]\n";
    return flags.ok() && flags->GetBool("help") ? 0 : 2;
  }
  const std::string job = flags->Get("job").value_or("demo");
  auto get = [&](const char* name, int64_t def) {
    auto v = flags->GetInt(name, 1, 1 << 24);
    return v.ok() && v->has_value() ? **v : def;
  };
  Job spec{static_cast<int>(get("workers", 4)), get("emb-rows", 65536), get("emb-dim", 64)};
  const int restore_workers = static_cast<int>(get("restore-workers", 2));
  const int steps = static_cast<int>(get("steps", 4));
  if (spec.emb_rows % spec.workers || spec.emb_rows % restore_workers) {
    return Fail("--emb-rows must divide by both worker counts");
  }

  cairn::ClientOptions client_options;
  client_options.coordinator = *flags->Get("coordinator");
  auto client = cairn::Client::Connect(client_options);
  if (!client.ok()) return Fail(std::string(client.status().message()));
  const auto t_start = std::chrono::steady_clock::now();
  uint64_t saved_bytes = 0;

  std::cout << "== training job \"" << job << "\": " << spec.workers << " workers, embedding "
            << spec.emb_rows << "x" << spec.emb_dim << " partitioned by rows, " << steps
            << " checkpoints\n";
  for (int s = 1; s <= steps; ++s) {
    const int64_t step = s * 100;
    const std::string emb = spec.Embedding(step);
    const int64_t rows = spec.emb_rows / spec.workers;
    const size_t row_bytes = static_cast<size_t>(spec.emb_dim * 4);
    std::vector<std::future<absl::StatusOr<cairn::SaveShardResult>>> saves;
    std::vector<std::string> dense(spec.workers);
    for (int w = 0; w < spec.workers; ++w) {
      dense[w] = Weights(absl::StrCat("tower", w, "/kernel"), step, 512 * 512 * 4);
    }
    const std::string counter(reinterpret_cast<const char*>(&step), 8);
    const auto t0 = std::chrono::steady_clock::now();
    for (int w = 0; w < spec.workers; ++w) {
      saves.push_back(std::async(std::launch::async, [&, w] {
        std::vector<cairn::SaveTensor> mine;
        mine.push_back({"embedding", DataType::kFloat, {spec.emb_rows, spec.emb_dim},
                        TensorSlice({{w * rows, rows}, {}}),
                        absl::string_view(emb).substr(w * rows * row_bytes, rows * row_bytes), {}});
        mine.push_back({absl::StrCat("tower", w, "/kernel"), DataType::kFloat, {512, 512},
                        std::nullopt, dense[w], {}});
        if (w == 0) mine.push_back({"global_step", DataType::kInt64, {}, std::nullopt, counter, {}});
        return (*client)->SaveShard({job, step, w, spec.workers, {{"loss", 1.0 / s}}}, mine);
      }));
    }
    bool committed = false;
    uint64_t bytes = 0;
    for (auto& f : saves) {
      auto r = f.get();
      if (!r.ok()) return Fail(absl::StrCat("saving step ", step, ": ", r.status().message()));
      committed |= r->committed;
      bytes += r->bytes;
    }
    saved_bytes += bytes;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  step %-5lld %d/%d shards saved, %s, %.1f MiB in %.2f s\n",
                static_cast<long long>(step), spec.workers, spec.workers,
                committed ? "committed" : "NOT committed", MiB(bytes), secs);
    if (!committed) return Fail("no shard reported the commit");
  }

  std::cout << "== checkpoints listed by the coordinator\n";
  auto list = (*client)->List(job);
  if (!list.ok()) return Fail(std::string(list.status().message()));
  for (const auto& c : *list) {
    std::printf("  step %-5lld %d shards %8.1f MiB  loss=%.3f  %s\n", static_cast<long long>(c.step),
                c.num_shards, MiB(c.bytes), c.metrics.count("loss") ? c.metrics.at("loss") : 0.0,
                c.prefix_uri.c_str());
  }
  if (static_cast<int>(list->size()) < steps) return Fail("not every step is listed");

  // Restore the newest and an older step onto a different number of workers.
  const std::vector<int64_t> restore_steps = {list->back().step, list->front().step};
  uint64_t checked = 0;
  for (int64_t step : restore_steps) {
    const std::string emb = spec.Embedding(step);
    const int64_t rows = spec.emb_rows / restore_workers;
    const size_t row_bytes = static_cast<size_t>(spec.emb_dim * 4);
    for (int w = 0; w < restore_workers; ++w) {
      cairn::RestoreRequest req;
      req.tensors = {"embedding", "global_step"};
      req.slices.emplace("embedding", TensorSlice({{w * rows, rows}, {}}));
      auto got = (*client)->Restore(job, step, req);
      if (!got.ok()) return Fail(absl::StrCat("restoring step ", step, ": ", got.status().message()));
      const auto& part = got->at("embedding").tensor.data;
      if (part.view() != absl::string_view(emb).substr(w * rows * row_bytes, rows * row_bytes)) {
        return Fail(absl::StrCat("step ", step, " worker ", w, ": embedding rows differ"));
      }
      int64_t counter;
      std::memcpy(&counter, got->at("global_step").tensor.data.data(), 8);
      if (counter != step) return Fail(absl::StrCat("step ", step, ": global_step is ", counter));
      checked += part.size() + 8;
    }
    // Every dense tower, whole.
    cairn::RestoreRequest dense_req;
    for (int w = 0; w < spec.workers; ++w) dense_req.tensors.push_back(absl::StrCat("tower", w, "/kernel"));
    auto dense = (*client)->Restore(job, step, dense_req);
    if (!dense.ok()) return Fail(std::string(dense.status().message()));
    for (int w = 0; w < spec.workers; ++w) {
      const std::string name = absl::StrCat("tower", w, "/kernel");
      if (dense->at(name).tensor.data.view() != Weights(name, step, 512 * 512 * 4)) {
        return Fail(absl::StrCat("step ", step, ": ", name, " differs"));
      }
      checked += 512 * 512 * 4;
    }
    std::printf("  restored step %-5lld onto %d workers: every byte matches\n",
                static_cast<long long>(step), restore_workers);
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::printf("== summary: %d checkpoints of %d shards saved (%.1f MiB), %zu restored onto %d workers "
              "(%.1f MiB checked), %.1f s\n",
              steps, spec.workers, MiB(saved_bytes), restore_steps.size(), restore_workers,
              MiB(checked), total);
  std::cout << "demo OK\n";
  return 0;
}
