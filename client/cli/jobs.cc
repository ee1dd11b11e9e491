// `cairn jobs`: the jobs the catalog knows.
#include "client/cli/commands.h"

#include <iostream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "client/cli/common.h"
#include "client/cli/format.h"
#include "client/client.h"

namespace cairn {
namespace cli {

int RunJobs(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "json"},
      "usage: cairn jobs --coordinator=ADDR [--json]\n"
      "Lists the jobs the coordinator's catalog knows: each job's newest committed\n"
      "step and how long ago it committed, and how many of its checkpoints are\n"
      "committed, pending and aborted. --json prints {\"jobs\": [{\"job\",\n"
      "\"newest_step\", \"newest_committed_at\", \"committed\", \"pending\",\n"
      "\"aborted\", \"bytes\"}]} (null where nothing committed).\n"
      "Example: cairn jobs --coordinator=127.0.0.1:7070\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("jobs takes no positional arguments");
  std::optional<std::string> coordinator = CoordinatorAddress(flags);
  if (!coordinator.has_value() || coordinator->empty()) {
    return UsageError("--coordinator=ADDR is required (or set CAIRN_COORDINATOR)");
  }
  auto client = ConnectTo(flags, *coordinator);
  if (!client.ok()) return Failed(client.status());
  auto jobs = (*client)->ListJobs();
  if (!jobs.ok()) return Failed(jobs.status());
  std::cout << (flags.GetBool("json") ? JobsJson(*jobs)
                                      : JobsTable(*jobs, absl::ToUnixMicros(absl::Now())));
  return kOk;
}

}  // namespace cli
}  // namespace cairn
