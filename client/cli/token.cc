// `cairn token: issue an authorization token (admin).
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
#include "proto/layout.h"
#include "proto/rpc/auth.h"

namespace cairn {
namespace cli {

int RunToken(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"auth-key-file", "job", "scope", "ttl"},
      "usage: cairn token --auth-key-file=FILE --job=JOB --scope=read|write [--ttl=SECONDS]\n"
      "Prints an authorization token for JOB (\"*\" = every job, an admin token),\n"
      "signed with the key the coordinator and writers were given\n"
      "(--auth-key-file). A write token also reads. --ttl defaults to 86400.\n"
      "Clients pass it with --token=TOKEN or $CAIRN_TOKEN.\n"
      "Example: cairn token --auth-key-file=/etc/cairn/auth.key --job=bert --scope=write\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("token takes no positional arguments");
  auto key_file = Required(flags, "auth-key-file", &rc);
  if (!key_file) return rc;
  auto job = Required(flags, "job", &rc);
  if (!job) return rc;
  if (*job != auth::kAnyJob) {
    if (absl::Status s = ValidateJobName(*job); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  }
  auto scope_name = Required(flags, "scope", &rc);
  if (!scope_name) return rc;
  if (*scope_name != "read" && *scope_name != "write") {
    return UsageError("--scope must be read or write");
  }
  auto ttl = flags.GetInt("ttl", 1, 10LL * 365 * 86400);
  if (!ttl.ok()) return UsageError(std::string(ttl.status().message()));
  auto key = auth::ReadKeyFile(*key_file);
  if (!key.ok()) return Failed(key.status());
  const auth::Scope scope = *scope_name == "write" ? auth::Scope::kWrite : auth::Scope::kRead;
  std::cout << auth::MintToken(*key, *job, scope, auth::NowUnixSeconds() + ttl->value_or(86400))
            << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
