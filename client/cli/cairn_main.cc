// `cairn`: the command-line client. See ../shared/CONTRACT.md and README.md.
// Exit status: 0 success, 1 the operation failed, 2 usage error.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/internal/flags.h"
#include "client/tools.h"

namespace cairn {
namespace cli {
namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

constexpr char kUsageText[] =
    R"(usage: cairn COMMAND [ARGS]

Commands:
  inspect PREFIX [--json]          list a checkpoint's tensors
  verify PREFIX                    read every tensor and check every checksum
  convert SRC DST [--shards=N] [--strict]
                                   convert between a .safetensors file and a
                                   checkpoint prefix, either way

PREFIX is a checkpoint prefix: a path such as /data/job/ckpt-100/variables
(the files are PREFIX.index and PREFIX.data-*), or a file:// URI.
Run 'cairn COMMAND --help' for a command's details.
)";

int UsageError(const std::string& msg) {
  std::cerr << "cairn: " << msg << "\nRun 'cairn --help' for usage.\n";
  return kUsage;
}

int Failed(const absl::Status& s) {
  std::cerr << "cairn: " << s.message() << "\n";
  return kFailed;
}

// Parses flags, handling --help and usage errors. Returns -1 to continue.
int ParseOrExit(const std::vector<std::string>& args, std::set<std::string> known,
                const char* help, Flags* flags) {
  known.insert("help");
  auto parsed = Flags::Parse(args, known);
  if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
  *flags = std::move(parsed).value();
  if (flags->GetBool("help")) {
    std::cout << help;
    return kOk;
  }
  return -1;
}

int Inspect(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args, {"json"},
                       "usage: cairn inspect PREFIX [--json]\n"
                       "Lists the tensors of the checkpoint at PREFIX: name, dtype, shape, data\n"
                       "file, offset, size, checksum and, for partitioned tensors, their slices.\n",
                       &flags);
  if (rc >= 0) return rc;
  if (flags.positional().size() != 1) return UsageError("inspect takes exactly one PREFIX");
  auto out = InspectCheckpoint(flags.positional()[0], flags.GetBool("json"));
  if (!out.ok()) return Failed(out.status());
  std::cout << *out;
  return kOk;
}

int Verify(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args, {},
                       "usage: cairn verify PREFIX\n"
                       "Reads every tensor of the checkpoint and checks every checksum.\n"
                       "Exit status 1 if anything is corrupt, naming tensor, file and offset.\n",
                       &flags);
  if (rc >= 0) return rc;
  if (flags.positional().size() != 1) return UsageError("verify takes exactly one PREFIX");
  const std::string& prefix = flags.positional()[0];
  auto report = VerifyCheckpoint(prefix);
  if (!report.ok()) return Failed(report.status());
  for (const std::string& p : report->problems) std::cerr << "cairn: corrupt: " << p << "\n";
  if (!report->ok()) {
    std::cerr << "cairn: " << prefix << ": " << report->problems.size() << " of "
              << report->tensors << " tensors failed verification\n";
    return kFailed;
  }
  std::cout << prefix << ": OK, " << report->tensors << " tensors, " << report->bytes
            << " bytes verified\n";
  return kOk;
}

int Convert(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"shards", "strict"},
      "usage: cairn convert SRC DST [--shards=N] [--strict]\n"
      "Converts SRC.safetensors to the checkpoint prefix DST, or the checkpoint\n"
      "prefix SRC to DST.safetensors. --shards spreads the tensors over N data\n"
      "files. Tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning; --strict makes that an error. Partitioned variables travel as\n"
      "\"cairn.slice.NAME\" metadata.\n",
      &flags);
  if (rc >= 0) return rc;
  if (flags.positional().size() != 2) return UsageError("convert takes SRC and DST");
  auto shards = flags.GetInt("shards", 1, 99999);
  if (!shards.ok()) return UsageError(std::string(shards.status().message()));
  ConvertOptions options;
  options.shards = static_cast<int>(shards->value_or(1));
  options.strict = flags.GetBool("strict");
  options.warn = [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; };
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
  if (!s.ok()) return Failed(s);
  return kOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsageText;
    return kUsage;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsageText;
    return kOk;
  }
  if (command == "inspect") return Inspect(args);
  if (command == "verify") return Verify(args);
  if (command == "convert") return Convert(args);
  return UsageError(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace cli
}  // namespace cairn

int main(int argc, char** argv) { return cairn::cli::Main(argc, argv); }
