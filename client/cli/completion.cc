// `cairn completion bash`: shell completion.
#include "client/cli/commands.h"

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "client/cli/common.h"

namespace cairn {
namespace cli {
namespace {

// Commands complete from the table below; a command's flags from its own
// --help, so they never drift from what the command accepts.
constexpr char kBashTemplate[] = R"(# bash completion for cairn (cairn completion bash)
_cairn() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "@COMMANDS@ --help --version" -- "$cur"))
    return
  fi
  local cmd=${COMP_WORDS[1]}
  if [[ $cur == --* ]]; then
    local flags
    flags=$("${COMP_WORDS[0]}" "$cmd" --help 2>/dev/null | grep -o -- '--[a-z0-9-]*' | sort -u)
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o default -F _cairn cairn
)";

}  // namespace

int RunCompletion(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args, {},
                       "usage: cairn completion bash\n"
                       "Prints a bash completion script for cairn's commands and flags.\n"
                       "Example: source <(cairn completion bash)   # e.g. in ~/.bashrc\n",
                       &flags);
  if (rc >= 0) return rc;
  if (flags.positional().size() != 1 || flags.positional()[0] != "bash") {
    return UsageError("completion takes one shell: bash");
  }
  std::vector<std::string> names;
  for (const Command& c : Commands()) names.push_back(c.name);
  std::string script = kBashTemplate;
  const std::string marker = "@COMMANDS@";
  script.replace(script.find(marker), marker.size(), absl::StrJoin(names, " "));
  std::cout << script;
  return kOk;
}

}  // namespace cli
}  // namespace cairn
