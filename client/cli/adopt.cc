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
      args, {"coordinator", "job", "from", "json"},
      "usage: cairn adopt --coordinator=ADDR --job=JOB --from=DIR_OR_URI [--json]\n"
      "Registers existing TensorFlow checkpoints with the service: DIR holds a\n"
      "`checkpoint` state file naming NAME-STEP prefixes (as CheckpointManager and\n"
      "Saver write). Each listed checkpoint whose files are there is verified (every\n"
      "checksum) and saved as step STEP of JOB, so retention and restore work for\n"
      "it; listed checkpoints whose files are missing are reported. Exit 1 if any\n"
      "present checkpoint could not be adopted (corrupt, or refused).\n",
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
  }, StorageFromFlags(flags));
  if (!result.ok()) return Failed(result.status());
  if (json) {
    nlohmann::json out = {{"job", job},
                          {"adopted", result->adopted},
                          {"already_present", result->already_present},
                          {"missing", result->missing},
                          {"failed", result->failed}};
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
