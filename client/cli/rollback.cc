// `cairn rollback: make a step the newest.
#include "client/cli/commands.h"

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/client.h"

namespace cairn {
namespace cli {

int RunRollback(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "to", "dry-run"},
      "usage: cairn rollback --coordinator=ADDR --job=JOB --to=STEP [--dry-run]\n"
      "Makes checkpoint JOB/STEP the newest, to resume training from it: deletes\n"
      "every committed checkpoint above STEP, aborts every pending one, and\n"
      "rewrites the TensorFlow 'checkpoint' file so STEP is the latest. Refused,\n"
      "naming them, if a checkpoint above STEP is pinned or leased. Saves move\n"
      "forward: a step below the newest committed one is refused until a\n"
      "rollback makes room for it. --dry-run deletes nothing and prints what\n"
      "would go.\n"
      "Example: cairn rollback --coordinator=127.0.0.1:7070 --job=bert --to=1000\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("rollback takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  auto to = flags.GetInt("to", 0, INT64_MAX);
  if (!to.ok()) return UsageError(std::string(to.status().message()));
  if (!to->has_value()) return UsageError("--to=STEP is required");
  const bool dry_run = flags.GetBool("dry-run");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto result = (*client)->Rollback(job, **to, dry_run);
  if (!result.ok()) return Failed(result.status());
  const char* verb = dry_run ? "would delete" : "deleted";
  for (int64_t step : result->deleted_steps) std::cout << verb << " " << job << "/" << step << "\n";
  for (int64_t step : result->aborted_steps) {
    std::cout << (dry_run ? "would abort pending " : "aborted pending ") << job << "/" << step << "\n";
  }
  std::cout << (dry_run ? "dry run: " : "") << job << " " << (dry_run ? "would roll" : "rolled")
            << " back to step " << **to << " (" << result->deleted_steps.size()
            << " deleted, " << result->aborted_steps.size() << " pending aborted)\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
