// `cairn save: one worker's shard of a checkpoint from a .safetensors file.
#include "client/cli/commands.h"

#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/cli/format.h"
#include "client/cli/safetensors_io.h"
#include "client/client.h"

namespace cairn {
namespace cli {

int RunSave(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn save --coordinator=ADDR --job=JOB --step=STEP --from=FILE.safetensors\n"
      "                  [--shard=I/N] [--metric=NAME=VALUE]... [--progress=auto|always|never]\n"
      "Saves the tensors of FILE.safetensors as shard I of N (default 0/1) of\n"
      "checkpoint JOB/STEP through the coordinator at ADDR. Tensors with\n"
      "\"cairn.slice.NAME\" metadata are saved as slices of the partitioned tensor\n"
      "NAME. Returns when the shard is durable; the save that completes the last\n"
      "shard returns once the checkpoint is committed. --metric values (numbers)\n"
      "are recorded with the checkpoint for retention (--keep-best).\n"
      "--wait makes any shard's save return only once the step is committed\n"
      "(exit 0) or aborted (exit 1, with the reason), as the last one does.\n"
      "Example: cairn save --coordinator=127.0.0.1:7070 --job=bert --step=1000 \\\n"
      "           --from=rank0.safetensors --shard=0/4 --metric=loss=0.25 --wait\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"coordinator", "job", "step", "from", "shard", "metric", "progress", "wait"},
                       help.c_str(), &flags, {"metric"});
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "save", &rc);
  if (!bar) return rc;
  if (!flags.positional().empty()) return UsageError("save takes no positional arguments");
  std::string coordinator_flag, job_flag;
  if ((rc = CoordinatorAndJob(flags, &coordinator_flag, &job_flag)) >= 0) return rc;
  const std::string* coordinator = &coordinator_flag;
  const std::string* job = &job_flag;
  auto from = Required(flags, "from", &rc);
  if (!from) return rc;
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  if (!step->has_value()) return UsageError("--step=... is required");

  SaveShardOptions options;
  options.job = *job;
  options.step = **step;
  if (auto shard = flags.Get("shard")) {
    const size_t slash = shard->find('/');
    int64_t i = -1, n = -1;
    if (slash == std::string::npos || !absl::SimpleAtoi(shard->substr(0, slash), &i) ||
        !absl::SimpleAtoi(shard->substr(slash + 1), &n) || n < 1 || n > INT32_MAX || i < 0 ||
        i >= n) {
      return UsageError(absl::StrCat("--shard=", *shard,
                                     ": expected I/N with N >= 1 and 0 <= I < N, e.g. --shard=0/4"));
    }
    options.shard_index = static_cast<int>(i);
    options.num_shards = static_cast<int>(n);
  }
  for (const std::string& metric : flags.GetAll("metric")) {
    const size_t eq = metric.find('=');
    double value;
    if (eq == std::string::npos || eq == 0 || !absl::SimpleAtod(metric.substr(eq + 1), &value) ||
        !std::isfinite(value)) {
      return UsageError(absl::StrCat("--metric=", metric,
                                     ": expected NAME=VALUE with a finite number, e.g. --metric=loss=0.25"));
    }
    if (!options.metrics.emplace(metric.substr(0, eq), value).second) {
      return UsageError(absl::StrCat("metric \"", metric.substr(0, eq), "\" given more than once"));
    }
  }

  if (!absl::EndsWith(*from, ".safetensors") &&
      (std::filesystem::exists(*from + ".index") || std::filesystem::is_directory(*from))) {
    return UsageError(absl::StrCat("--from=", *from,
                                   " is a checkpoint, not a .safetensors file; save expects a "
                                   ".safetensors file (cairn convert ",
                                   *from, " FILE.safetensors makes one)"));
  }
  auto source = SafetensorsSource::Open(
      *from, [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; });
  if (!source.ok()) return Failed(source.status());
  ClientOptions client_options = ClientOptionsFromFlags(flags, *coordinator);
  auto client = Client::Connect(client_options);
  if (!client.ok()) return Failed(client.status());
  options.progress = bar->Callback();
  auto result = (*client)->SaveShard(options, (*source)->tensors());
  if (!result.ok()) return Failed(*bar, result.status());
  bar->Finish();
  const int64_t num_tensors = result->num_tensors > 0
                                  ? result->num_tensors
                                  : static_cast<int64_t>((*source)->tensors().size());
  const uint64_t bytes = result->bytes > 0 ? result->bytes : (*source)->data_bytes();
  std::cout << "saved shard " << options.shard_index << "/" << options.num_shards << " of "
            << options.job << "/step " << options.step << ": " << num_tensors << " tensors, "
            << HumanBytes(bytes) << "\n";
  if (!result->committed && flags.GetBool("wait")) {
    auto decided =
        (*client)->WaitUntilDecided(options.job, options.step, client_options.save_timeout_ms);
    if (!decided.ok()) return Failed(decided.status());
    result->committed = true;
  }
  if (result->committed) {
    std::cout << "checkpoint " << options.job << "/" << options.step << " committed\n";
  } else {
    std::cout << "checkpoint " << options.job << "/" << options.step
              << " is pending: it commits once all " << options.num_shards
              << " shards are saved (--wait waits for that)\n";
  }
  return kOk;
}

}  // namespace cli
}  // namespace cairn
