// `cairn gc: apply retention now, or show what it would do.
#include "client/cli/commands.h"

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/cli/format.h"
#include "client/client.h"

namespace cairn {
namespace cli {

int RunGc(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "dry-run", "json"},
      "usage: cairn gc --coordinator=ADDR --job=JOB [--dry-run] [--json]\n"
      "Applies JOB's retention policy now: deletes the committed checkpoints no\n"
      "rule keeps. Prints, per checkpoint, keep (with the rules keeping it) or\n"
      "delete (with the reason), then a summary. --dry-run deletes nothing and\n"
      "prints what would be deleted and why. --json prints {\"job\", \"dry_run\",\n"
      "\"deleted\", \"decisions\": [{\"step\", \"keep\", \"kept_by\", \"reason\"}]}\n"
      "(in a dry run, \"deleted\" counts what would be deleted).\n"
      "Example: cairn gc --coordinator=127.0.0.1:7070 --job=bert --dry-run\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("gc takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  const bool dry_run = flags.GetBool("dry-run");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto result = (*client)->Gc(job, dry_run);
  if (!result.ok()) return Failed(result.status());
  std::cout << (flags.GetBool("json") ? GcJson(job, dry_run, *result)
                                      : GcText(job, dry_run, *result));
  return kOk;
}

}  // namespace cli
}  // namespace cairn
