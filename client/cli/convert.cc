// `cairn convert: safetensors <-> checkpoint prefix.
#include "client/cli/commands.h"

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/common.h"
#include "client/client.h"
#include "client/tools.h"

namespace cairn {
namespace cli {

int RunConvert(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn convert SRC DST [--shards=N] [--strict] [--progress=auto|always|never]\n"
      "Converts SRC.safetensors to the checkpoint prefix DST, or the checkpoint\n"
      "prefix SRC to DST.safetensors. --shards spreads the tensors over N data\n"
      "files. Tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning; --strict makes that an error. Partitioned variables travel as\n"
      "\"cairn.slice.NAME\" metadata. Prints what it converted.\n"
      "Example: cairn convert /data/bert/ckpt-1000/variables bert.safetensors\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"shards", "strict", "progress"}, help.c_str(), &flags);
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "convert", &rc);
  if (!bar) return rc;
  if (flags.positional().size() != 2) return UsageError("convert takes SRC and DST");
  auto shards = flags.GetInt("shards", 1, 99999);
  if (!shards.ok()) return UsageError(std::string(shards.status().message()));
  ConvertOptions options;
  options.storage = StorageFromFlags(flags);
  options.shards = static_cast<int>(shards->value_or(1));
  options.strict = flags.GetBool("strict");
  options.warn = [bar = bar.get()](const std::string& msg) { bar->Note("cairn: warning: " + msg); };
  options.progress = bar->Callback();
  const std::string& src = flags.positional()[0];
  const std::string& dst = flags.positional()[1];
  const bool src_st = absl::EndsWith(src, ".safetensors");
  const bool dst_st = absl::EndsWith(dst, ".safetensors");
  absl::Status s;
  if (src_st && !dst_st) {
    s = ConvertSafetensorsToBundle(src, dst, options);
  } else if (!src_st && dst_st) {
    if (shards->has_value()) return UsageError("--shards applies only to a checkpoint output");
    s = ConvertBundleToSafetensors(src, dst, options);
  } else {
    return UsageError("convert needs exactly one side ending in .safetensors");
  }
  if (!s.ok()) return Failed(*bar, s);
  bar->Finish();
  std::cout << "converted " << src << " to " << dst << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
