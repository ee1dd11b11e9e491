// `cairn list: a job's committed checkpoints.
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

int RunList(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "json"},
      "usage: cairn list --coordinator=ADDR --job=JOB [--json]\n"
      "Lists JOB's committed checkpoints, oldest first: step, commit time (UTC),\n"
      "size, shards, metrics, whether pinned, and which retention rules keep it.\n"
      "--json prints {\"job\", \"checkpoints\": [{\"step\", \"committed_at\", \"bytes\",\n"
      "\"num_shards\", \"metrics\", \"pinned\", \"kept_by\", \"prefix\"}]}.\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("list takes no positional arguments");
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto ckpts = (*client)->List(job);
  if (!ckpts.ok()) return Failed(ckpts.status());
  std::cout << (flags.GetBool("json") ? CheckpointJson(job, *ckpts)
                                      : CheckpointTable(job, *ckpts));
  return kOk;
}

}  // namespace cli
}  // namespace cairn
