// `cairn verify: read every tensor (and, with --deep, every file) and check every checksum.
#include "client/cli/commands.h"

#include <algorithm>
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
#include "proto/layout.h"

namespace cairn {
namespace cli {

int RunVerify(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn verify PREFIX [--progress=auto|always|never]\n"
      "       cairn verify --coordinator=ADDR --job=JOB [--step=STEP] [--deep]\n"
      "                    [--progress=auto|always|never]\n"
      "Reads every tensor of the checkpoint and checks every checksum. Through the\n"
      "coordinator (default: the newest step), --deep also reads every file whole\n"
      "and checks its size and CRC32C against the catalog's record (and its\n"
      "SHA-256, where the catalog has one: writers with --inventory-sha256=true).\n"
      "Exit status 1 if anything is corrupt, naming tensor, file and offset.\n"
      "Examples: cairn verify /data/bert/ckpt-1000\n"
      "          cairn verify --coordinator=127.0.0.1:7070 --job=bert --deep\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"coordinator", "job", "step", "deep", "progress"}, help.c_str(),
                       &flags);
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "verify", &rc);
  if (!bar) return rc;
  CheckpointTarget target;
  if ((rc = ResolveCheckpoint(flags, "verify", &target)) >= 0) return rc;
  const std::string& prefix = target.prefix;
  std::vector<ExpectedFile> inventory;
  std::string root;
  if (target.record.has_value()) {
    const std::string suffix = CheckpointPrefix(target.record->job, target.record->step);
    root = prefix.substr(0, prefix.size() - suffix.size() - 1);
    for (const auto& f : target.record->files) inventory.push_back({f.path, f.size, f.crc32c, f.sha256});
  } else if (flags.GetBool("deep")) {
    return UsageError("--deep needs --coordinator and --job (the catalog's digests)");
  }
  auto report = VerifyCheckpoint(prefix, bar->Callback(), StorageFromFlags(flags));
  if (!report.ok()) return Failed(*bar, report.status());
  bar->Finish();
  if (flags.GetBool("deep")) {
    auto files_bar = ProgressBarFromFlags(flags, "verify files", &rc);
    auto files = VerifyFiles(root, inventory, files_bar->Callback(), StorageFromFlags(flags));
    if (!files.ok()) return Failed(*files_bar, files.status());
    files_bar->Finish();
    report->problems.insert(report->problems.end(), files->problems.begin(), files->problems.end());
    // Name the digests the catalog holds: writers record a SHA-256 only
    // when asked (--inventory-sha256=true), and older catalogs hold no CRC.
    const auto with_crc = std::count_if(inventory.begin(), inventory.end(),
                                        [](const ExpectedFile& f) { return f.crc32c != 0; });
    const auto with_sha = std::count_if(inventory.begin(), inventory.end(),
                                        [](const ExpectedFile& f) { return !f.sha256.empty(); });
    std::cout << prefix << ": " << files->tensors << " files, " << files->bytes
              << " bytes checked against the catalog's record (size of " << inventory.size()
              << ", CRC32C of " << with_crc << ", SHA-256 of " << with_sha << ")\n";
  }
  for (const std::string& p : report->problems) std::cerr << "cairn: corrupt: " << p << "\n";
  if (!report->ok()) {
    std::cerr << "cairn: " << prefix << ": " << report->problems.size()
              << " problem(s) found; the checkpoint is corrupt\n";
    return kFailed;
  }
  std::cout << prefix << ": OK, " << report->tensors << " tensors, " << report->bytes
            << " bytes verified\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
