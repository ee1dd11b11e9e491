// `cairn inspect: list a checkpoint's tensors.
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
#include "client/tools.h"

namespace cairn {
namespace cli {

int RunInspect(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args, {"json"},
                       "usage: cairn inspect PREFIX [--json]\n"
                       "Lists the tensors of the checkpoint at PREFIX: name, dtype, shape, data\n"
                       "file, offset, size, checksum and, for partitioned tensors, their slices.\n",
                       &flags);
  if (rc >= 0) return rc;
  if (flags.positional().size() != 1) return UsageError("inspect takes exactly one PREFIX");
  auto out = InspectCheckpoint(flags.positional()[0], flags.GetBool("json"), StorageFromFlags(flags));
  if (!out.ok()) return Failed(out.status());
  std::cout << *out;
  return kOk;
}

}  // namespace cli
}  // namespace cairn
