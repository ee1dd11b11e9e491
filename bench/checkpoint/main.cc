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
#include "bench/checkpoint/bench_util.h"
#include "bench/checkpoint/figures.h"

namespace cairn_bench {
namespace {

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
}  // namespace cairn_bench

int main(int argc, char** argv) {
  using namespace cairn_bench;  // NOLINT: this program's own helpers
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

