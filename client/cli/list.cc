// `cairn list`: a job's checkpoints.
#include "client/cli/commands.h"

#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli/common.h"
#include "client/cli/format.h"
#include "client/client.h"
#include "proto/cmdline/flags.h"

namespace cairn {
namespace cli {

int RunList(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "json", "all"},
      "usage: cairn list --coordinator=ADDR --job=JOB [--all] [--json]\n"
      "Lists JOB's committed checkpoints, oldest first: step, commit time (UTC),\n"
      "size, shards, metrics, whether pinned, and which retention rules keep it.\n"
      "--all also lists the steps not committed: pending ones with the shards\n"
      "durable so far (k/N) and their age, aborted ones with the reason.\n"
      "--json prints {\"job\", \"checkpoints\": [{\"step\", \"committed_at\", \"bytes\",\n"
      "\"num_shards\", \"metrics\", \"pinned\", \"kept_by\", \"prefix\"}]}; with --all\n"
      "each entry also has \"state\", \"shards_durable\", \"created_at\" and\n"
      "\"abort_reason\". A job the coordinator does not know is an error (exit 1).\n"
      "Example: cairn list --coordinator=127.0.0.1:7070 --job=bert --all\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("list takes no positional arguments");
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  const bool all = flags.GetBool("all");
  ListOptions options;
  options.include_uncommitted = all;
  options.require_job = true;
  auto ckpts = (*client)->List(job, options);
  if (absl::IsNotFound(ckpts.status())) {
    // A typo? Name the nearest job the catalog knows.
    std::string hint;
    if (auto jobs = (*client)->ListJobs(); jobs.ok()) {
      std::set<std::string> names;
      for (const JobSummary& j : *jobs) names.insert(j.job);
      hint = cmdline::DidYouMean(job, names);
    }
    return Failed(absl::NotFoundError(absl::StrCat(
        ckpts.status().message(),
        hint.empty() ? " ('cairn jobs' lists the jobs)" : absl::StrCat(" (did you mean ", hint, "?)"))));
  }
  if (!ckpts.ok()) return Failed(ckpts.status());
  std::cout << (flags.GetBool("json")
                    ? CheckpointJson(job, *ckpts, all)
                    : CheckpointTable(job, *ckpts, all, absl::ToUnixMicros(absl::Now())));
  return kOk;
}

}  // namespace cli
}  // namespace cairn
