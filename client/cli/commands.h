// The `cairn` commands, one file each (client/cli/NAME.cc), and the table
// main.cc dispatches on. Each takes the arguments after its name and returns
// the exit status (common.h).
#ifndef CAIRN_CLIENT_CLI_COMMANDS_H_
#define CAIRN_CLIENT_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace cairn {
namespace cli {

using Args = std::vector<std::string>;

int RunInspect(const Args& args);
int RunVerify(const Args& args);
int RunConvert(const Args& args);
int RunSave(const Args& args);
int RunRestore(const Args& args);
int RunList(const Args& args);
int RunAdopt(const Args& args);
int RunPolicy(const Args& args);
int RunPin(const Args& args, bool pin);  // pin and unpin
int RunGc(const Args& args);
int RunRollback(const Args& args);
int RunToken(const Args& args);
int RunJobs(const Args& args);
int RunDelete(const Args& args);
int RunCompletion(const Args& args);

struct Command {
  const char* name;
  // Its lines in `cairn --help` (empty: described with the previous one).
  const char* synopsis;
  int (*run)(const Args& args);
};

// Every command, in the order `cairn --help` lists them.
const std::vector<Command>& Commands();

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_CLIENT_CLI_COMMANDS_H_
