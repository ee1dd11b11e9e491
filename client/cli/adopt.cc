// `cairn adopt: register checkpoints TensorFlow wrote.
#include "client/cli/commands.h"

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/client.h"
#include "client/tools.h"

namespace cairn {
namespace cli {

int RunAdopt(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "from", "json", "step-pattern"},
      "usage: cairn adopt --coordinator=ADDR --job=JOB --from=DIR_OR_URI [--step-pattern=REGEX] [--json]\n"
      "Registers existing TensorFlow checkpoints with the service: DIR holds a\n"
      "`checkpoint` state file (as CheckpointManager, Saver and Keras write); the\n"
      "checkpoints it lists, and every other NAME.index beside it, are verified\n"
      "(every checksum) and saved as steps of JOB, so retention and restore work for\n"
      "them. A checkpoint's step is the last number in its name: ckpt-6 -> 6,\n"
      "model.ckpt-1000 -> 1000, cp-0005.ckpt -> 5. --step-pattern=REGEX (one capture\n"
      "group, searched in the name) takes the step from that group instead, e.g.\n"
      "--step-pattern='epoch(\\d+)' for epoch90-iteration0-loss0,0150.ckpt. One line\n"
      "per checkpoint says what was done; listed checkpoints whose files are missing\n"
      "are reported. Exit 1 if any checkpoint could not be adopted (no step, corrupt,\n"
      "or refused).\n"
      "Example: cairn adopt --coordinator=127.0.0.1:7070 --job=mnist --from=training/\n",
      &flags);
  if (rc >= 0) return rc;
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto from = flags.Get("from");
  if (!from || from->empty()) return UsageError("--from=DIR_OR_URI is required");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  const bool json = flags.GetBool("json");
  auto result = AdoptCheckpoints(**client, job, *from, [json](const std::string& line) {
    (json ? std::cerr : std::cout) << line << "\n";
  }, StorageFromFlags(flags), flags.Get("step-pattern").value_or(""));
  if (!result.ok()) return Failed(result.status());
  if (json) {
    nlohmann::json out = {{"job", job},
                          {"adopted", result->adopted},
                          {"already_present", result->already_present},
                          {"missing", result->missing},
                          {"failed", result->failed}};
    nlohmann::json each = nlohmann::json::array();
    for (const AdoptedCheckpoint& c : result->checkpoints) {
      each.push_back({{"path", c.path},
                      {"step", c.step ? nlohmann::json(*c.step) : nlohmann::json(nullptr)},
                      {"outcome", c.outcome},
                      {"detail", c.detail}});
    }
    out["checkpoints"] = each;
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << job << ": " << result->adopted.size() << " adopted, " << result->already_present.size()
              << " already present, " << result->missing.size() << " missing, " << result->failed.size()
              << " failed\n";
  }
  return result->failed.empty() ? kOk : kFailed;
}

}  // namespace cli
}  // namespace cairn
