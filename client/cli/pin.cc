// `cairn pin, unpin: protect a checkpoint from retention, or not.
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

int RunPin(const std::vector<std::string>& args, bool pin) {
  const std::string command = pin ? "pin" : "unpin";
  Flags flags;
  const std::string help =
      pin ? "usage: cairn pin --coordinator=ADDR --job=JOB --step=STEP\n"
            "Pins checkpoint JOB/STEP: retention never deletes it until it is unpinned.\n"
            "Example: cairn pin --coordinator=127.0.0.1:7070 --job=bert --step=1000\n"
          : "usage: cairn unpin --coordinator=ADDR --job=JOB --step=STEP\n"
            "Unpins checkpoint JOB/STEP: retention rules decide about it again (at the\n"
            "next commit or cairn gc).\n"
            "Example: cairn unpin --coordinator=127.0.0.1:7070 --job=bert --step=1000\n";
  int rc = ParseOrExit(args, {"coordinator", "job", "step"}, help.c_str(), &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) {
    return UsageError(absl::StrCat(command, " takes no positional arguments"));
  }
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  if (!step->has_value()) return UsageError("--step=... is required");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  if (absl::Status s = (*client)->Pin(job, **step, pin); !s.ok()) return Failed(s);
  std::cout << (pin ? "pinned " : "unpinned ") << job << "/" << **step << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
