// `cairn delete`: delete one checkpoint.
#include "client/cli/commands.h"

#include <iostream>
#include <string>
#include <vector>

#include "client/cli/common.h"
#include "client/client.h"

namespace cairn {
namespace cli {

int RunDelete(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "step", "force"},
      "usage: cairn delete --coordinator=ADDR --job=JOB --step=STEP [--force]\n"
      "Deletes the committed checkpoint JOB/STEP as retention deletes: the catalog\n"
      "marks it, the TensorFlow 'checkpoint' file stops naming it, then its files\n"
      "go (only the files Cairn wrote). A crash midway is finished by the next\n"
      "coordinator. Refuses the job's newest checkpoint, a pinned one and one a\n"
      "restore is reading, saying which; --force deletes it anyway. Exit 1 if\n"
      "JOB/STEP is not a committed checkpoint.\n"
      "Example: cairn delete --coordinator=127.0.0.1:7070 --job=bert --step=1000\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("delete takes no positional arguments");
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  if (!step->has_value()) return UsageError("--step=STEP is required");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  if (absl::Status s = (*client)->Delete(job, **step, flags.GetBool("force")); !s.ok()) {
    return Failed(s);
  }
  std::cout << "deleted " << job << "/" << **step << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
