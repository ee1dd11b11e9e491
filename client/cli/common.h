// What the `cairn` commands share: exit statuses, error reporting, flag
// parsing with --help, progress bars, and connecting to the coordinator.
#ifndef CAIRN_CLIENT_CLI_COMMON_H_
#define CAIRN_CLIENT_CLI_COMMON_H_

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli/progress_bar.h"
#include "client/client.h"
#include "proto/cmdline/flags.h"

namespace cairn {
namespace cli {

using cmdline::Flags;

// Exit statuses (../shared/CONTRACT.md): 0 success, 1 the operation failed,
// 2 usage error.
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;
inline constexpr int kUsage = 2;

// Prints "cairn: MSG" and a pointer to the running command's --help (see
// SetCommand); returns kUsage.
int UsageError(const std::string& msg);
// The command being run ("" before one is chosen): where usage errors point.
void SetCommand(const std::string& name);
// Prints "cairn: MESSAGE"; returns kFailed.
int Failed(const absl::Status& s);
// Clears `bar` off the screen, then as Failed(s).
int Failed(ProgressBar& bar, const absl::Status& s);

// The help of --progress, shared by the commands that take it.
extern const char kProgressHelp[];

// Parses a command's flags (`known`, plus --help and --s3-endpoint; commands
// taking --coordinator also get the TLS and token flags), printing `help` for
// --help. Returns -1 to continue, else the exit status.
int ParseOrExit(const std::vector<std::string>& args, std::set<std::string> known,
                const char* help, Flags* flags, const std::set<std::string>& repeatable = {});

// The progress bar of a command labelled `label`, as --progress says, drawn
// on stderr across the terminal's width. nullptr (and *rc set) on a usage
// error.
std::unique_ptr<ProgressBar> ProgressBarFromFlags(const Flags& flags, const std::string& label,
                                                  int* rc);

// Storage options from --s3-endpoint and the AWS_* environment.
StorageOptions StorageFromFlags(const Flags& flags);

// Client options for `coordinator` with the TLS flags, the token (--token,
// else $CAIRN_TOKEN) and the storage options.
ClientOptions ClientOptionsFromFlags(const Flags& flags, const std::string& coordinator);

// The value of a required flag, or nullopt with *rc set to a usage error.
std::optional<std::string> Required(const Flags& flags, const std::string& name, int* rc);

// A client of the coordinator named by --coordinator (already checked).
absl::StatusOr<std::unique_ptr<Client>> ConnectTo(const Flags& flags,
                                                  const std::string& coordinator);

// --coordinator, else $CAIRN_COORDINATOR (if set and not empty).
std::optional<std::string> CoordinatorAddress(const Flags& flags);

// --coordinator (or $CAIRN_COORDINATOR) and --job, both required; the job
// name checked. Returns -1 to continue, else the exit status.
int CoordinatorAndJob(const Flags& flags, std::string* coordinator, std::string* job);

// A checkpoint a command reads: given as a PREFIX, or through the
// coordinator (--coordinator or $CAIRN_COORDINATOR, --job, --step; default
// the newest committed step).
struct CheckpointTarget {
  std::string prefix;                       // a path prefix or URI
  std::optional<CheckpointSummary> record;  // set when found through the coordinator
};
// Resolves `flags` (of `command`) to a checkpoint. A local PREFIX that is a
// checkpoint directory (ROOT/JOB/ckpt-4 or .../ckpt-4/) or its index file
// stands for the prefix inside it. Returns -1 to continue, else the exit
// status (a usage error, or the coordinator's refusal).
int ResolveCheckpoint(const Flags& flags, const std::string& command, CheckpointTarget* out);

// For a local PREFIX without a PREFIX.index: the prefix the user probably
// meant (a directory's only *.index, or "X.index" given for X), if there
// is exactly one; else `prefix` as is.
std::string ResolveLocalPrefix(const std::string& prefix);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_CLIENT_CLI_COMMON_H_
