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
  int rc = ParseOrExit(
      args, {"json", "coordinator", "job", "step"},
      "usage: cairn inspect PREFIX [--json]\n"
      "       cairn inspect --coordinator=ADDR --job=JOB [--step=STEP] [--json]\n"
      "Lists the tensors of the checkpoint at PREFIX (or of JOB/STEP, default the\n"
      "newest committed step): name, dtype, shape, data file, offset, size,\n"
      "checksum and, for partitioned tensors, their slices. PREFIX may also be a\n"
      "checkpoint's directory (ROOT/JOB/ckpt-4 for ROOT/JOB/ckpt-4/variables).\n"
      "Examples: cairn inspect /data/bert/ckpt-1000\n"
      "          cairn inspect --coordinator=127.0.0.1:7070 --job=bert --json\n",
      &flags);
  if (rc >= 0) return rc;
  CheckpointTarget target;
  if ((rc = ResolveCheckpoint(flags, "inspect", &target)) >= 0) return rc;
  auto out = InspectCheckpoint(target.prefix, flags.GetBool("json"), StorageFromFlags(flags));
  if (!out.ok()) return Failed(out.status());
  std::cout << *out;
  return kOk;
}

}  // namespace cli
}  // namespace cairn
