// `cairn`: the command-line client. See ../shared/CONTRACT.md and README.md.
// Exit status: 0 success, 1 the operation failed, 2 usage error.
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/common.h"
#include "observability/version.h"

namespace cairn {
namespace cli {
namespace {

int RunPinCommand(const Args& args) { return RunPin(args, /*pin=*/true); }
int RunUnpinCommand(const Args& args) { return RunPin(args, /*pin=*/false); }

constexpr char kUsageHead[] = "usage: cairn COMMAND [ARGS]\n\nCommands:\n";

constexpr char kUsageTail[] = R"(
verify, convert, save and restore also take --progress=auto|always|never: a
progress bar on stderr (auto, the default: only when stderr is a terminal).
--coordinator defaults to $CAIRN_COORDINATOR (ADDR or ADDR,ADDR,...).
Commands that call the coordinator also take --tls-ca=FILE (TLS),
--tls-cert=FILE --tls-key=FILE (mutual TLS) and --token=TOKEN (default
$CAIRN_TOKEN); see README.md, Security.

PREFIX is a checkpoint prefix: a path such as /data/job/ckpt-100/variables
(the files are PREFIX.index and PREFIX.data-*), or a file:// URI.
Flags may be written --flag=value or --flag value.
Run 'cairn COMMAND --help' for a command's details; 'cairn --version' says
which Cairn this is.
)";

std::string UsageText() {
  std::string text = kUsageHead;
  for (const Command& c : Commands()) text += c.synopsis;
  return text + kUsageTail;
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"inspect",
       "  inspect (PREFIX | --coordinator=ADDR --job=JOB [--step=STEP]) [--json]\n"
       "                                   list a checkpoint's tensors\n",
       RunInspect},
      {"verify",
       "  verify (PREFIX | --coordinator=ADDR --job=JOB [--step=STEP] [--deep])\n"
       "                                   read every tensor and check every checksum\n",
       RunVerify},
      {"convert",
       "  convert SRC DST [--shards=N] [--strict]\n"
       "                                   convert between a .safetensors file and a\n"
       "                                   checkpoint prefix, either way\n",
       RunConvert},
      {"save",
       "  save --coordinator=ADDR --job=JOB --step=STEP --from=FILE.safetensors\n"
       "       [--shard=I/N] [--metric=NAME=VALUE]... [--wait]\n"
       "                                   save one worker's shard of a checkpoint\n",
       RunSave},
      {"restore",
       "  restore (--coordinator=ADDR --job=JOB [--step=STEP] | --from=PREFIX) --to=DST\n"
       "       [--tensor=NAME]... [--slice=NAME=SHAPE_AND_SLICE]... [--strict]\n"
       "                                   restore a checkpoint (default: the newest\n"
       "                                   committed step) to a .safetensors file or\n"
       "                                   a checkpoint prefix\n",
       RunRestore},
      {"jobs",
       "  jobs --coordinator=ADDR [--json]  the jobs the catalog knows, with their\n"
       "                                   newest commit and its age\n",
       RunJobs},
      {"list",
       "  list --coordinator=ADDR --job=JOB [--all] [--json]\n"
       "                                   a job's committed checkpoints (--all: also\n"
       "                                   pending and aborted steps)\n",
       RunList},
      {"adopt",
       "  adopt --coordinator=ADDR --job=JOB --from=DIR\n"
       "                                   register existing TensorFlow checkpoints\n",
       RunAdopt},
      {"policy",
       "  policy --coordinator=ADDR --job=JOB [--keep-last=N] [--keep-every-steps=S]\n"
       "       [--keep-every-hours=H] [--keep-best=K --metric=NAME [--mode=min|max]]\n"
       "       [--show]                    set (or show) a job's retention policy\n",
       RunPolicy},
      {"pin",
       "  pin | unpin --coordinator=ADDR --job=JOB --step=STEP\n"
       "                                   protect a checkpoint from retention, or not\n",
       RunPinCommand},
      {"unpin", "", RunUnpinCommand},
      {"gc",
       "  gc --coordinator=ADDR --job=JOB [--dry-run] [--json]\n"
       "                                   apply retention now (or show what it would do)\n",
       RunGc},
      {"rollback",
       "  rollback --coordinator=ADDR --job=JOB --to=STEP [--dry-run]\n"
       "                                   make STEP the newest: delete the checkpoints\n"
       "                                   above it, so training can resume from it\n",
       RunRollback},
      {"delete",
       "  delete --coordinator=ADDR --job=JOB --step=STEP [--force]\n"
       "                                   delete one checkpoint (not the newest, a\n"
       "                                   pinned or a leased one, unless --force)\n",
       RunDelete},
      {"token",
       "  token --auth-key-file=FILE --job=JOB --scope=read|write [--ttl=SECONDS]\n"
       "                                   issue an authorization token (admin)\n",
       RunToken},
      {"completion",
       "  completion bash                  print bash completion for cairn (add\n"
       "                                   'source <(cairn completion bash)' to ~/.bashrc)\n",
       RunCompletion},
  };
  return *commands;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << UsageText();
    return kUsage;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << UsageText();
    return kOk;
  }
  if (command == "--version" || command == "version") {
    std::cout << "cairn " << CAIRN_VERSION << "\n";
    return kOk;
  }
  std::set<std::string> names;
  for (const Command& c : Commands()) {
    if (command == c.name) {
      SetCommand(command);
      return c.run(args);
    }
    names.insert(c.name);
  }
  const std::string hint = cmdline::DidYouMean(command, names);
  return UsageError(absl::StrCat("unknown command \"", command, "\"",
                                 hint.empty() ? "" : absl::StrCat(" (did you mean \"", hint, "\"?)")));
}

}  // namespace cli
}  // namespace cairn

int main(int argc, char** argv) { return cairn::cli::Main(argc, argv); }
