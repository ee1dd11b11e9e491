#include "client/cli/common.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/layout.h"

namespace cairn {
namespace cli {

namespace {
std::string& CurrentCommand() {
  static auto* name = new std::string;
  return *name;
}
}  // namespace

void SetCommand(const std::string& name) { CurrentCommand() = name; }

int UsageError(const std::string& msg) {
  const std::string& command = CurrentCommand();
  std::cerr << "cairn: " << msg << "\nRun 'cairn " << (command.empty() ? "" : command + " ")
            << "--help' for usage.\n";
  return kUsage;
}

int Failed(const absl::Status& s) {
  std::cerr << "cairn: " << s.message() << "\n";
  return kFailed;
}

const char kProgressHelp[] =
    "--progress=auto|always|never draws a progress bar on stderr: bytes done of\n"
    "the total, rate and ETA. auto (the default) draws it only when stderr is a\n"
    "terminal; the output on stdout is the same either way.\n";

// The progress bar of a command labelled `label`, as --progress says, drawn
// on stderr across the terminal's width. nullptr (and *rc set) on a usage
// error.
std::unique_ptr<ProgressBar> ProgressBarFromFlags(const Flags& flags,
                                                            const std::string& label, int* rc) {
  ProgressMode mode = ProgressMode::kAuto;
  if (auto value = flags.Get("progress")) {
    auto parsed = ParseProgressMode(*value);
    if (!parsed.ok()) {
      *rc = UsageError(std::string(parsed.status().message()));
      return nullptr;
    }
    mode = *parsed;
  }
  ProgressBar::Options options;
  options.label = label;
  options.draw = ShouldDrawProgress(mode, ::isatty(STDERR_FILENO) == 1);
  // One column short of the edge: a full line would wrap on some terminals.
  options.width = TerminalColumns(STDERR_FILENO) - 1;
  return std::make_unique<ProgressBar>(std::move(options));
}

// Clears `bar` off the screen and reports `s` as Failed does.
int Failed(ProgressBar& bar, const absl::Status& s) {
  bar.Clear();
  return Failed(s);
}

// Client options for `coordinator` with the TLS flags and the token
// (--token, else $CAIRN_TOKEN).
ClientOptions ClientOptionsFromFlags(const Flags& flags, const std::string& coordinator) {
  ClientOptions options;
  options.coordinator = coordinator;
  options.tls = cmdline::TlsFromFlags(flags);
  options.tls.require_client_cert = false;
  if (auto token = flags.Get("token")) {
    options.token = *token;
  } else if (const char* env = std::getenv("CAIRN_TOKEN")) {
    options.token = env;
  }
  options.storage = StorageFromFlags(flags);
  return options;
}

// Parses flags, handling --help and usage errors. Returns -1 to continue.
int ParseOrExit(const std::vector<std::string>& args, std::set<std::string> known,
                const char* help, Flags* flags, const std::set<std::string>& repeatable) {
  known.insert("help");
  known.insert("s3-endpoint");
  // Commands that call the coordinator take the TLS and token flags.
  const bool calls_servers = known.count("coordinator") > 0;
  if (calls_servers) known.insert({"tls-ca", "tls-cert", "tls-key", "token"});
  auto parsed = Flags::Parse(args, known, repeatable);
  if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
  *flags = std::move(parsed).value();
  if (flags->GetBool("help")) {
    if (calls_servers) std::cout << help << "\n" << cmdline::TlsUsage(/*server=*/false);
    std::cout << (calls_servers ? "" : help)
              << "\ns3:// URIs use AWS_ENDPOINT_URL (or --s3-endpoint=URL), AWS_ACCESS_KEY_ID,\n"
                 "AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN and AWS_REGION.\n";
    return kOk;
  }
  return -1;
}

// The value of a required flag, or a usage error naming it.
std::optional<std::string> Required(const Flags& flags, const std::string& name, int* rc) {
  std::optional<std::string> v = flags.Get(name);
  if (!v.has_value() || v->empty() || *v == "true") {
    *rc = UsageError(absl::StrCat("--", name, "=... is required"));
    return std::nullopt;
  }
  return v;
}

// A client of the coordinator named by --coordinator (already checked).
absl::StatusOr<std::unique_ptr<Client>> ConnectTo(const Flags& flags,
                                                  const std::string& coordinator) {
  return Client::Connect(ClientOptionsFromFlags(flags, coordinator));
}

// --coordinator and --job, both required; the job name checked. Returns -1 to
// continue, else the exit status.
std::optional<std::string> CoordinatorAddress(const Flags& flags) {
  if (flags.Has("coordinator")) return flags.Get("coordinator");
  const char* env = std::getenv("CAIRN_COORDINATOR");
  if (env != nullptr && *env != '\0') return std::string(env);
  return std::nullopt;
}

int CoordinatorAndJob(const Flags& flags, std::string* coordinator, std::string* job) {
  int rc = -1;
  std::optional<std::string> c = CoordinatorAddress(flags);
  if (!c.has_value() || c->empty() || *c == "true") {
    return UsageError("--coordinator=ADDR is required (or set CAIRN_COORDINATOR)");
  }
  auto j = Required(flags, "job", &rc);
  if (!j) return rc;
  if (absl::Status s = ValidateJobName(*j); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  *coordinator = *c;
  *job = *j;
  return -1;
}

std::string ResolveLocalPrefix(const std::string& prefix) {
  if (prefix.find("://") != std::string::npos && prefix.rfind("file://", 0) != 0) return prefix;
  const bool uri = prefix.rfind("file://", 0) == 0;
  std::string path = uri ? prefix.substr(7) : prefix;
  std::error_code ec;
  if (std::filesystem::exists(path + ".index", ec)) return prefix;
  std::string resolved;
  if (absl::EndsWith(path, ".index") && std::filesystem::is_regular_file(path, ec)) {
    resolved = path.substr(0, path.size() - 6);
  } else if (std::filesystem::is_directory(path, ec)) {
    std::vector<std::string> indexes;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_regular_file(ec) && absl::EndsWith(name, ".index") && name.size() > 6) {
        indexes.push_back(name.substr(0, name.size() - 6));
      }
    }
    if (indexes.size() != 1) return prefix;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    resolved = absl::StrCat(path, "/", indexes[0]);
  } else {
    return prefix;
  }
  return uri ? absl::StrCat("file://", resolved) : resolved;
}

int ResolveCheckpoint(const Flags& flags, const std::string& command, CheckpointTarget* out) {
  // Through the coordinator: --coordinator, or $CAIRN_COORDINATOR when no
  // PREFIX is given.
  const std::optional<std::string> coordinator =
      flags.positional().empty() ? CoordinatorAddress(flags) : flags.Get("coordinator");
  if (!coordinator.has_value()) {
    if (flags.Has("job") || flags.Has("step")) {
      return UsageError("--job and --step need --coordinator=ADDR (or CAIRN_COORDINATOR)");
    }
    if (flags.positional().size() != 1) {
      return UsageError(absl::StrCat(command, " takes one PREFIX, or --coordinator and --job"));
    }
    out->prefix = ResolveLocalPrefix(flags.positional()[0]);
    return -1;
  }
  if (!flags.positional().empty()) return UsageError("give a PREFIX or --coordinator, not both");
  auto job = flags.Get("job");
  if (!job) return UsageError("--job is required with --coordinator");
  if (absl::Status s = ValidateJobName(*job); !s.ok()) return UsageError(std::string(s.message()));
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  auto client = ConnectTo(flags, *coordinator);
  if (!client.ok()) return Failed(client.status());
  auto ckpt =
      (*client)->Get(*job, step->has_value() ? std::optional<int64_t>(**step) : std::nullopt);
  if (!ckpt.ok()) return Failed(ckpt.status());
  out->prefix = ckpt->prefix_uri;
  out->record = std::move(ckpt).value();
  return -1;
}

StorageOptions StorageFromFlags(const Flags& flags) { return cmdline::StorageOptionsFromFlags(flags); }

}  // namespace cli
}  // namespace cairn
