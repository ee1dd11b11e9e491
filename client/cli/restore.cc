// `cairn restore: a checkpoint to a .safetensors file or a checkpoint prefix.
#include "client/cli/commands.h"

#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/cli/format.h"
#include "client/cli/safetensors_io.h"
#include "client/client.h"
#include "client/internal/stream_restore.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {
namespace cli {
namespace {

// Parallel tensor copies of a streamed restore: the copies run in the
// kernel and the checksums from the page cache, so more threads than cores
// only contend.
constexpr int kDefaultStreamThreads = 2;

std::string StripFileScheme(const std::string& path) {
  return absl::StartsWith(path, "file://") ? path.substr(7) : path;
}

}  // namespace

int RunRestore(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn restore (--coordinator=ADDR --job=JOB [--step=STEP] | --from=PREFIX)\n"
      "                     --to=DST [--tensor=NAME]... [--slice=NAME=SHAPE_AND_SLICE]...\n"
      "                     [--strict] [--threads=N] [--progress=auto|always|never]\n"
      "Restores checkpoint JOB/STEP (default: the newest committed step), or the\n"
      "checkpoint at PREFIX, to DST: a .safetensors file, or else a checkpoint\n"
      "prefix. By default every tensor; --tensor restores only the named ones.\n"
      "--slice restores that part of a tensor, given as its full shape and a\n"
      "TensorFlow slice, e.g. --slice=emb=1000 64 0,500:- (rows 0-499, all\n"
      "columns); partitioned tensors are reassembled or re-cut as needed. In a\n"
      ".safetensors file a slice is marked with \"cairn.slice.NAME\" metadata;\n"
      "tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning, or fail with --strict. --threads sets parallel reads (default 4;\n"
      "to a local .safetensors file, which is streamed tensor by tensor, 2).\n"
      "Examples: cairn restore --coordinator=127.0.0.1:7070 --job=bert --to=bert.safetensors\n"
      "          cairn restore --from=/data/bert/ckpt-1000/variables --to=/tmp/copy/variables\n",
      kProgressHelp);
  int rc = ParseOrExit(args,
                       {"coordinator", "job", "step", "from", "to", "tensor", "slice", "strict",
                        "threads", "progress"},
                       help.c_str(), &flags, {"tensor", "slice"});
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "restore", &rc);
  if (!bar) return rc;
  if (!flags.positional().empty()) return UsageError("restore takes no positional arguments");
  const bool from_prefix = flags.Has("from");
  if (from_prefix && flags.Has("coordinator")) {
    return UsageError("give either --from=PREFIX or --coordinator=ADDR --job=JOB, not both");
  }
  if (!from_prefix && !CoordinatorAddress(flags).has_value()) {
    return UsageError(
        "restore needs --coordinator=ADDR --job=JOB (or CAIRN_COORDINATOR and --job) or --from=PREFIX");
  }
  if (from_prefix && (flags.Has("job") || flags.Has("step"))) {
    return UsageError("--job and --step go with --coordinator, not with --from");
  }
  auto to = Required(flags, "to", &rc);
  if (!to) return rc;
  // A directory gets the checkpoint inside it, as DIR/variables.
  if (!IsSafetensorsPath(*to)) *to = internal::CheckpointPrefixAt(*to);
  auto threads = flags.GetInt("threads", 1, 256);
  if (!threads.ok()) return UsageError(std::string(threads.status().message()));

  RestoreRequest request;
  for (const std::string& name : flags.GetAll("tensor")) {
    if (name.empty() || name == "true") return UsageError("--tensor needs a tensor name");
    request.tensors.push_back(name);
  }
  std::map<std::string, std::vector<int64_t>> full_shapes;
  for (const std::string& spec : flags.GetAll("slice")) {
    // The shape-and-slice part never holds '=', so the last one separates.
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--slice=", spec,
                                     ": expected NAME=FULL_SHAPE SLICE, e.g. --slice=emb=1000 64 0,500:-"));
    }
    const std::string name = spec.substr(0, eq);
    std::vector<int64_t> full_shape;
    TensorSlice slice;
    absl::Status s = ParseShapeAndSlice(spec.substr(eq + 1), &full_shape, &slice);
    if (!s.ok()) return UsageError(absl::StrCat("--slice=", spec, ": ", s.message()));
    if (!request.slices.emplace(name, slice).second) {
      return UsageError(absl::StrCat("--slice for tensor \"", name, "\" given more than once"));
    }
    full_shapes[name] = std::move(full_shape);
  }

  request.full_shapes = std::move(full_shapes);

  // Streamed paths: `fn` reads the checkpoint at a prefix URI itself. Runs it
  // on --from's prefix, or on the step the coordinator names while holding
  // its lease (Client::ReadCommitted). Returns an exit code.
  std::string source;
  auto on_checkpoint = [&](const std::function<absl::Status(const std::string&)>& fn) -> int {
    absl::Status s;
    if (from_prefix) {
      auto from = Required(flags, "from", &rc);
      if (!from) return rc;
      source = *from;
      s = fn(*from);
    } else {
      std::string coordinator, job;
      if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
      auto step = flags.GetInt("step", 0, INT64_MAX);
      if (!step.ok()) return UsageError(std::string(step.status().message()));
      auto client = Client::Connect(ClientOptionsFromFlags(flags, coordinator));
      if (!client.ok()) return Failed(client.status());
      CheckpointSummary restored_from;
      s = (*client)->ReadCommitted(
          job, *step, [&](const CheckpointSummary& ckpt) { return fn(ckpt.prefix_uri); }, &restored_from);
      source = absl::StrCat(job, "/", restored_from.step);
    }
    // Errors writing the output name it; errors reading name the checkpoint's file.
    if (!s.ok()) return Failed(*bar, s);
    bar->Finish();
    return kOk;
  };
  auto print = [&](const internal::StreamRestoreSummary& summary) {
    std::cout << "restored " << summary.tensors << " tensors (" << HumanBytes(summary.bytes)
              << ") from " << source << " to " << *to;
    if (summary.skipped > 0) std::cout << "; skipped " << summary.skipped;
    std::cout << "\n";
  };
  const bool local_dst = !absl::StrContains(StripFileScheme(*to), "://");
  const int stream_threads = static_cast<int>(threads->value_or(kDefaultStreamThreads));

  // The whole checkpoint to a local prefix: its files copied whole, every
  // checksum checked on the way (client/internal/stream_restore.h).
  if (!IsSafetensorsPath(*to) && local_dst && request.tensors.empty() && request.slices.empty()) {
    absl::StatusOr<internal::StreamRestoreSummary> summary;
    rc = on_checkpoint([&](const std::string& prefix_uri) {
      summary = internal::CopyCheckpointFiles(prefix_uri, StripFileScheme(*to), stream_threads,
                                              bar->Callback(), StorageFromFlags(flags));
      return summary.status();
    });
    if (rc == kOk) print(*summary);
    return rc;
  }

  // To a local .safetensors file: streamed, tensor by tensor, never holding
  // the checkpoint in memory.
  if (IsSafetensorsPath(*to) && local_dst) {
    internal::StreamRestoreOptions stream_options;
    stream_options.strict = flags.GetBool("strict");
    stream_options.warn = [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; };
    stream_options.threads = stream_threads;
    absl::StatusOr<internal::StreamRestoreSummary> summary;
    rc = on_checkpoint([&](const std::string& prefix_uri) {
      summary = internal::StreamRestoreToSafetensors(prefix_uri, request, StripFileScheme(*to),
                                                     stream_options, bar->Callback(),
                                                     StorageFromFlags(flags));
      return summary.status();
    });
    if (rc == kOk) print(*summary);
    return rc;
  }

  // Anything else (a remote destination, or chosen tensors or slices to a
  // prefix) is restored into memory, then written.
  // From a prefix, or through the coordinator: Client::Restore resolves the
  // step, checks it is committed and holds a lease on it while reading.
  absl::StatusOr<RestoredTensors> tensors;
  if (from_prefix) {
    auto from = Required(flags, "from", &rc);
    if (!from) return rc;
    source = *from;
    tensors = RestoreFromPrefix(*from, request, static_cast<int>(threads->value_or(4)),
                                bar->Callback(), StorageFromFlags(flags));
  } else {
    std::string coordinator, job;
    if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
    auto step = flags.GetInt("step", 0, INT64_MAX);
    if (!step.ok()) return UsageError(std::string(step.status().message()));
    ClientOptions client_options = ClientOptionsFromFlags(flags, coordinator);
    client_options.restore_threads = static_cast<int>(threads->value_or(4));
    auto client = Client::Connect(client_options);
    if (!client.ok()) return Failed(client.status());
    CheckpointSummary restored_from;
    tensors = (*client)->Restore(job, *step, request, bar->Callback(), &restored_from);
    source = absl::StrCat(job, "/", restored_from.step);
  }
  if (!tensors.ok()) return Failed(*bar, tensors.status());
  bar->Finish();
  RestoreOutputOptions out_options;
  out_options.strict = flags.GetBool("strict");
  out_options.storage = StorageFromFlags(flags);
  out_options.warn = [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; };
  auto summary = WriteRestoredTensors(*tensors, *to, out_options);
  if (!summary.ok()) return Failed(summary.status());
  std::cout << "restored " << summary->tensors << " tensors ("
            << HumanBytes(summary->bytes) << ") from " << source << " to " << *to;
  if (summary->skipped > 0) std::cout << "; skipped " << summary->skipped;
  std::cout << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
