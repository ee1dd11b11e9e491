// `cairn`: the command-line client. See ../shared/CONTRACT.md and README.md.
// Exit status: 0 success, 1 the operation failed, 2 usage error.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/cli_format.h"
#include "client/internal/cli_io.h"
#include "client/internal/flags.h"
#include "client/internal/lease.h"
#include "client/internal/progress_bar.h"
#include "client/internal/validate.h"
#include "client/tools.h"
#include "proto/auth.h"
#include "storage/layout.h"
#include "storage/storage.h"

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
  save --coordinator=ADDR --job=JOB --step=STEP --from=FILE.safetensors
       [--shard=I/N] [--metric=NAME=VALUE]...
                                   save one worker's shard of a checkpoint
  restore (--coordinator=ADDR --job=JOB [--step=STEP] | --from=PREFIX) --to=DST
       [--tensor=NAME]... [--slice=NAME=SHAPE_AND_SLICE]... [--strict]
                                   restore a checkpoint (default: the newest
                                   committed step) to a .safetensors file or
                                   a checkpoint prefix
  list --coordinator=ADDR --job=JOB [--json]
                                   a job's committed checkpoints
  adopt --coordinator=ADDR --job=JOB --from=DIR
                                   register existing TensorFlow checkpoints
  policy --coordinator=ADDR --job=JOB [--keep-last=N] [--keep-every-steps=S]
       [--keep-every-hours=H] [--keep-best=K --metric=NAME [--mode=min|max]]
       [--show]                    set (or show) a job's retention policy
  pin | unpin --coordinator=ADDR --job=JOB --step=STEP
                                   protect a checkpoint from retention, or not
  gc --coordinator=ADDR --job=JOB [--dry-run] [--json]
                                   apply retention now (or show what it would do)
  rollback --coordinator=ADDR --job=JOB --to=STEP [--dry-run]
                                   make STEP the newest: delete the checkpoints
                                   above it, so training can resume from it
  token --auth-key-file=FILE --job=JOB --scope=read|write [--ttl=SECONDS]
                                   issue an authorization token (admin)

verify, convert, save and restore also take --progress=auto|always|never: a
progress bar on stderr (auto, the default: only when stderr is a terminal).
Commands that call the coordinator also take --tls-ca=FILE (TLS),
--tls-cert=FILE --tls-key=FILE (mutual TLS) and --token=TOKEN (default
$CAIRN_TOKEN); see README.md, Security.

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

// The help of --progress, shared by the commands that take it.
constexpr char kProgressHelp[] =
    "--progress=auto|always|never draws a progress bar on stderr: bytes done of\n"
    "the total, rate and ETA. auto (the default) draws it only when stderr is a\n"
    "terminal; the output on stdout is the same either way.\n";

// The progress bar of a command labelled `label`, as --progress says, drawn
// on stderr across the terminal's width. nullptr (and *rc set) on a usage
// error.
std::unique_ptr<internal::ProgressBar> ProgressBarFromFlags(const Flags& flags,
                                                            const std::string& label, int* rc) {
  internal::ProgressMode mode = internal::ProgressMode::kAuto;
  if (auto value = flags.Get("progress")) {
    auto parsed = internal::ParseProgressMode(*value);
    if (!parsed.ok()) {
      *rc = UsageError(std::string(parsed.status().message()));
      return nullptr;
    }
    mode = *parsed;
  }
  internal::ProgressBar::Options options;
  options.label = label;
  options.draw = internal::ShouldDrawProgress(mode, ::isatty(STDERR_FILENO) == 1);
  // One column short of the edge: a full line would wrap on some terminals.
  options.width = internal::TerminalColumns(STDERR_FILENO) - 1;
  return std::make_unique<internal::ProgressBar>(std::move(options));
}

// Clears `bar` off the screen and reports `s` as Failed does.
int Failed(internal::ProgressBar& bar, const absl::Status& s) {
  bar.Clear();
  return Failed(s);
}

// Client options for `coordinator` with the TLS flags and the token
// (--token, else $CAIRN_TOKEN).
ClientOptions ClientOptionsFromFlags(const Flags& flags, const std::string& coordinator) {
  ClientOptions options;
  options.coordinator = coordinator;
  options.tls = TlsFromFlags(flags);
  options.tls.require_client_cert = false;
  if (auto token = flags.Get("token")) {
    options.token = *token;
  } else if (const char* env = std::getenv("CAIRN_TOKEN")) {
    options.token = env;
  }
  return options;
}

// Parses flags, handling --help and usage errors. Returns -1 to continue.
int ParseOrExit(const std::vector<std::string>& args, std::set<std::string> known,
                const char* help, Flags* flags, const std::set<std::string>& repeatable = {}) {
  known.insert("help");
  known.insert("s3-endpoint");
  // Commands that call the coordinator take the TLS and token flags.
  const bool calls_servers = known.count("coordinator") > 0;
  if (calls_servers) known.insert({"tls-ca", "tls-cert", "tls-key", "token"});
  auto parsed = Flags::Parse(args, known, repeatable);
  if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
  *flags = std::move(parsed).value();
  if (flags->GetBool("help")) {
    if (calls_servers) std::cout << help << "\n" << TlsUsage(/*server=*/false);
    std::cout << (calls_servers ? "" : help)
              << "\ns3:// URIs use AWS_ENDPOINT_URL (or --s3-endpoint=URL), AWS_ACCESS_KEY_ID,\n"
                 "AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN and AWS_REGION.\n";
    return kOk;
  }
  SetDefaultStorageOptionsFromFlags(*flags);
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
  const std::string help = absl::StrCat(
      "usage: cairn verify PREFIX [--progress=auto|always|never]\n"
      "       cairn verify --coordinator=ADDR --job=JOB [--step=STEP] [--deep]\n"
      "                    [--progress=auto|always|never]\n"
      "Reads every tensor of the checkpoint and checks every checksum. Through the\n"
      "coordinator (default: the newest step), --deep also reads every file whole\n"
      "and checks its size, CRC32C and SHA-256 against the catalog's record.\n"
      "Exit status 1 if anything is corrupt, naming tensor, file and offset.\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"coordinator", "job", "step", "deep", "progress"}, help.c_str(),
                       &flags);
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "verify", &rc);
  if (!bar) return rc;
  std::string prefix;
  std::vector<ExpectedFile> inventory;
  std::string root;
  if (flags.Has("coordinator")) {
    if (!flags.positional().empty()) return UsageError("give a PREFIX or --coordinator, not both");
    auto job = flags.Get("job");
    if (!job) return UsageError("--job is required with --coordinator");
    auto step = flags.GetInt("step", 0, INT64_MAX);
    if (!step.ok()) return UsageError(std::string(step.status().message()));
    auto client = Client::Connect(ClientOptionsFromFlags(flags, *flags.Get("coordinator")));
    if (!client.ok()) return Failed(client.status());
    auto ckpt = (*client)->Get(*job, step->has_value() ? std::optional<int64_t>(**step) : std::nullopt);
    if (!ckpt.ok()) return Failed(ckpt.status());
    prefix = ckpt->prefix_uri;
    const std::string suffix = CheckpointPrefix(ckpt->job, ckpt->step);
    root = prefix.substr(0, prefix.size() - suffix.size() - 1);
    for (const auto& f : ckpt->files) inventory.push_back({f.path, f.size, f.crc32c, f.sha256});
  } else {
    if (flags.GetBool("deep")) return UsageError("--deep needs --coordinator and --job (the catalog's digests)");
    if (flags.positional().size() != 1) return UsageError("verify takes exactly one PREFIX");
    prefix = flags.positional()[0];
  }
  auto report = VerifyCheckpoint(prefix, bar->Callback());
  if (!report.ok()) return Failed(*bar, report.status());
  bar->Finish();
  if (flags.GetBool("deep")) {
    auto files_bar = ProgressBarFromFlags(flags, "verify files", &rc);
    auto files = VerifyFiles(root, inventory, files_bar->Callback());
    if (!files.ok()) return Failed(*files_bar, files.status());
    files_bar->Finish();
    report->problems.insert(report->problems.end(), files->problems.begin(), files->problems.end());
    std::cout << prefix << ": " << files->tensors << " files, " << files->bytes
              << " bytes checked against the catalog's SHA-256\n";
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

int Convert(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn convert SRC DST [--shards=N] [--strict] [--progress=auto|always|never]\n"
      "Converts SRC.safetensors to the checkpoint prefix DST, or the checkpoint\n"
      "prefix SRC to DST.safetensors. --shards spreads the tensors over N data\n"
      "files. Tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning; --strict makes that an error. Partitioned variables travel as\n"
      "\"cairn.slice.NAME\" metadata.\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"shards", "strict", "progress"}, help.c_str(), &flags);
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "convert", &rc);
  if (!bar) return rc;
  if (flags.positional().size() != 2) return UsageError("convert takes SRC and DST");
  auto shards = flags.GetInt("shards", 1, 99999);
  if (!shards.ok()) return UsageError(std::string(shards.status().message()));
  ConvertOptions options;
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
  return kOk;
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
int CoordinatorAndJob(const Flags& flags, std::string* coordinator, std::string* job) {
  int rc = -1;
  auto c = Required(flags, "coordinator", &rc);
  if (!c) return rc;
  auto j = Required(flags, "job", &rc);
  if (!j) return rc;
  if (absl::Status s = internal::ValidateJobName(*j); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  *coordinator = *c;
  *job = *j;
  return -1;
}

int Save(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn save --coordinator=ADDR --job=JOB --step=STEP --from=FILE.safetensors\n"
      "                  [--shard=I/N] [--metric=NAME=VALUE]... [--progress=auto|always|never]\n"
      "Saves the tensors of FILE.safetensors as shard I of N (default 0/1) of\n"
      "checkpoint JOB/STEP through the coordinator at ADDR. Tensors with\n"
      "\"cairn.slice.NAME\" metadata are saved as slices of the partitioned tensor\n"
      "NAME. Returns when the shard is durable; the save that completes the last\n"
      "shard returns once the checkpoint is committed. --metric values (numbers)\n"
      "are recorded with the checkpoint for retention (--keep-best).\n",
      kProgressHelp);
  int rc = ParseOrExit(args, {"coordinator", "job", "step", "from", "shard", "metric", "progress"},
                       help.c_str(), &flags, {"metric"});
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "save", &rc);
  if (!bar) return rc;
  if (!flags.positional().empty()) return UsageError("save takes no positional arguments");
  std::string coordinator_flag, job_flag;
  if ((rc = CoordinatorAndJob(flags, &coordinator_flag, &job_flag)) >= 0) return rc;
  const std::string* coordinator = &coordinator_flag;
  const std::string* job = &job_flag;
  auto from = Required(flags, "from", &rc);
  if (!from) return rc;
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  if (!step->has_value()) return UsageError("--step=... is required");

  SaveShardOptions options;
  options.job = *job;
  options.step = **step;
  if (auto shard = flags.Get("shard")) {
    const size_t slash = shard->find('/');
    int64_t i = -1, n = -1;
    if (slash == std::string::npos || !absl::SimpleAtoi(shard->substr(0, slash), &i) ||
        !absl::SimpleAtoi(shard->substr(slash + 1), &n) || n < 1 || n > INT32_MAX || i < 0 ||
        i >= n) {
      return UsageError(absl::StrCat("--shard=", *shard,
                                     ": expected I/N with N >= 1 and 0 <= I < N, e.g. --shard=0/4"));
    }
    options.shard_index = static_cast<int>(i);
    options.num_shards = static_cast<int>(n);
  }
  for (const std::string& metric : flags.GetAll("metric")) {
    const size_t eq = metric.find('=');
    double value;
    if (eq == std::string::npos || eq == 0 || !absl::SimpleAtod(metric.substr(eq + 1), &value) ||
        !std::isfinite(value)) {
      return UsageError(absl::StrCat("--metric=", metric,
                                     ": expected NAME=VALUE with a finite number, e.g. --metric=loss=0.25"));
    }
    if (!options.metrics.emplace(metric.substr(0, eq), value).second) {
      return UsageError(absl::StrCat("metric \"", metric.substr(0, eq), "\" given more than once"));
    }
  }

  auto source = internal::SafetensorsSource::Open(
      *from, [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; });
  if (!source.ok()) return Failed(source.status());
  ClientOptions client_options = ClientOptionsFromFlags(flags, *coordinator);
  auto client = Client::Connect(client_options);
  if (!client.ok()) return Failed(client.status());
  options.progress = bar->Callback();
  auto result = (*client)->SaveShard(options, (*source)->tensors());
  if (!result.ok()) return Failed(*bar, result.status());
  bar->Finish();
  const int64_t num_tensors = result->num_tensors > 0
                                  ? result->num_tensors
                                  : static_cast<int64_t>((*source)->tensors().size());
  const uint64_t bytes = result->bytes > 0 ? result->bytes : (*source)->data_bytes();
  std::cout << "saved shard " << options.shard_index << "/" << options.num_shards << " of "
            << options.job << "/step " << options.step << ": " << num_tensors << " tensors, "
            << internal::HumanBytes(bytes) << "\n";
  if (result->committed) {
    std::cout << "checkpoint " << options.job << "/" << options.step << " committed\n";
  }
  return kOk;
}

int Restore(const std::vector<std::string>& args) {
  Flags flags;
  const std::string help = absl::StrCat(
      "usage: cairn restore (--coordinator=ADDR --job=JOB [--step=STEP] | --from=PREFIX)\n"
      "                     --to=DST [--tensor=NAME]... [--slice=NAME=SHAPE_AND_SLICE]...\n"
      "                     [--strict] [--threads=N] [--progress=auto|always|never]\n"
      "Restores checkpoint JOB/STEP (default: the newest committed step), or the\n"
      "checkpoint at PREFIX, to DST: a .safetensors file, or else a checkpoint\n"
      "prefix. By default every tensor; --tensor restores only the named ones.\n"
      "--slice restores that part of a tensor, given as its full shape and a\n"
      "TensorFlow slice, e.g. --slice=emb=1000 64 0,500:- (rows 0-499, all\n"
      "columns); partitioned tensors are reassembled or re-cut as needed. In a\n"
      ".safetensors file a slice is marked with \"cairn.slice.NAME\" metadata;\n"
      "tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning, or fail with --strict. --threads sets parallel reads (default 4).\n",
      kProgressHelp);
  int rc = ParseOrExit(args,
                       {"coordinator", "job", "step", "from", "to", "tensor", "slice", "strict",
                        "threads", "progress"},
                       help.c_str(), &flags, {"tensor", "slice"});
  if (rc >= 0) return rc;
  auto bar = ProgressBarFromFlags(flags, "restore", &rc);
  if (!bar) return rc;
  if (!flags.positional().empty()) return UsageError("restore takes no positional arguments");
  const bool from_prefix = flags.Has("from");
  if (from_prefix && flags.Has("coordinator")) {
    return UsageError("give either --from=PREFIX or --coordinator=ADDR --job=JOB, not both");
  }
  if (!from_prefix && !flags.Has("coordinator")) {
    return UsageError("restore needs --coordinator=ADDR --job=JOB or --from=PREFIX");
  }
  if (from_prefix && (flags.Has("job") || flags.Has("step"))) {
    return UsageError("--job and --step go with --coordinator, not with --from");
  }
  auto to = Required(flags, "to", &rc);
  if (!to) return rc;
  auto threads = flags.GetInt("threads", 1, 256);
  if (!threads.ok()) return UsageError(std::string(threads.status().message()));

  RestoreRequest request;
  for (const std::string& name : flags.GetAll("tensor")) {
    if (name.empty() || name == "true") return UsageError("--tensor needs a tensor name");
    request.tensors.push_back(name);
  }
  std::map<std::string, std::vector<int64_t>> full_shapes;
  for (const std::string& spec : flags.GetAll("slice")) {
    // The shape-and-slice part never holds '=', so the last one separates.
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--slice=", spec,
                                     ": expected NAME=FULL_SHAPE SLICE, e.g. --slice=emb=1000 64 0,500:-"));
    }
    const std::string name = spec.substr(0, eq);
    std::vector<int64_t> full_shape;
    TensorSlice slice;
    absl::Status s = ParseShapeAndSlice(spec.substr(eq + 1), &full_shape, &slice);
    if (!s.ok()) return UsageError(absl::StrCat("--slice=", spec, ": ", s.message()));
    if (!request.slices.emplace(name, slice).second) {
      return UsageError(absl::StrCat("--slice for tensor \"", name, "\" given more than once"));
    }
    full_shapes[name] = std::move(full_shape);
  }

  // Where the checkpoint is. With a coordinator, the restore holds a lease on
  // the checkpoint until its files are read (declared after `client`, so it
  // is released before the client goes).
  std::string prefix;
  std::string source;
  std::unique_ptr<Client> client;
  internal::ScopedLease lease;
  if (from_prefix) {
    auto from = Required(flags, "from", &rc);
    if (!from) return rc;
    prefix = *from;
    source = prefix;
  } else {
    std::string coordinator_flag, job_flag;
    if ((rc = CoordinatorAndJob(flags, &coordinator_flag, &job_flag)) >= 0) return rc;
    const std::string* coordinator = &coordinator_flag;
    const std::string* job = &job_flag;
    auto step = flags.GetInt("step", 0, INT64_MAX);
    if (!step.ok()) return UsageError(std::string(step.status().message()));
    ClientOptions client_options = ClientOptionsFromFlags(flags, *coordinator);
    auto connected = Client::Connect(client_options);
    if (!connected.ok()) return Failed(connected.status());
    client = std::move(connected).value();
    auto ckpt = client->Get(*job, *step);
    if (!ckpt.ok()) return Failed(ckpt.status());
    if (ckpt->state != "committed") {
      return Failed(absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", *job, "/", ckpt->step, " is ", ckpt->state, ", not committed")));
    }
    auto leased = internal::LeaseForRestore(client.get(), *ckpt);
    if (!leased.ok()) return Failed(leased.status());
    lease = std::move(leased).value();
    prefix = ckpt->prefix_uri;
    source = absl::StrCat(*job, "/", ckpt->step);
  }

  // A --slice must name the tensor's real full shape; checked from the index
  // before any data is read.
  if (absl::Status s = internal::CheckFullShapes(prefix, full_shapes); !s.ok()) return Failed(s);
  auto tensors = RestoreFromPrefix(prefix, request, static_cast<int>(threads->value_or(4)),
                                   bar->Callback());
  lease.Release();  // the checkpoint's files are read
  if (!tensors.ok()) return Failed(*bar, tensors.status());
  bar->Finish();
  internal::RestoreOutputOptions out_options;
  out_options.strict = flags.GetBool("strict");
  out_options.warn = [](const std::string& msg) { std::cerr << "cairn: warning: " << msg << "\n"; };
  auto summary = internal::WriteRestoredTensors(*tensors, *to, out_options);
  if (!summary.ok()) return Failed(summary.status());
  std::cout << "restored " << summary->tensors << " tensors ("
            << internal::HumanBytes(summary->bytes) << ") from " << source << " to " << *to;
  if (summary->skipped > 0) std::cout << "; skipped " << summary->skipped;
  std::cout << "\n";
  return kOk;
}

int List(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "json"},
      "usage: cairn list --coordinator=ADDR --job=JOB [--json]\n"
      "Lists JOB's committed checkpoints, oldest first: step, commit time (UTC),\n"
      "size, shards, metrics, whether pinned, and which retention rules keep it.\n"
      "--json prints {\"job\", \"checkpoints\": [{\"step\", \"committed_at\", \"bytes\",\n"
      "\"num_shards\", \"metrics\", \"pinned\", \"kept_by\", \"prefix\"}]}.\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("list takes no positional arguments");
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto ckpts = (*client)->List(job);
  if (!ckpts.ok()) return Failed(ckpts.status());
  std::cout << (flags.GetBool("json") ? internal::CheckpointJson(job, *ckpts)
                                      : internal::CheckpointTable(job, *ckpts));
  return kOk;
}

int Adopt(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "from", "json"},
      "usage: cairn adopt --coordinator=ADDR --job=JOB --from=DIR_OR_URI [--json]\n"
      "Registers existing TensorFlow checkpoints with the service: DIR holds a\n"
      "`checkpoint` state file naming NAME-STEP prefixes (as CheckpointManager and\n"
      "Saver write). Each listed checkpoint whose files are there is verified (every\n"
      "checksum) and saved as step STEP of JOB, so retention and restore work for\n"
      "it; listed checkpoints whose files are missing are reported. Exit 1 if any\n"
      "present checkpoint could not be adopted (corrupt, or refused).\n",
      &flags);
  if (rc >= 0) return rc;
  std::string coordinator, job;
  if ((rc = CoordinatorAndJob(flags, &coordinator, &job)) >= 0) return rc;
  auto from = flags.Get("from");
  if (!from || from->empty()) return UsageError("--from=DIR_OR_URI is required");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  const bool json = flags.GetBool("json");
  auto result = AdoptCheckpoints(**client, job, *from, [json](const std::string& line) {
    (json ? std::cerr : std::cout) << line << "\n";
  });
  if (!result.ok()) return Failed(result.status());
  if (json) {
    nlohmann::json out = {{"job", job},
                          {"adopted", result->adopted},
                          {"already_present", result->already_present},
                          {"missing", result->missing},
                          {"failed", result->failed}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << job << ": " << result->adopted.size() << " adopted, " << result->already_present.size()
              << " already present, " << result->missing.size() << " missing, " << result->failed.size()
              << " failed\n";
  }
  return result->failed.empty() ? kOk : kFailed;
}

constexpr char kPolicyHelp[] =
    "usage: cairn policy --coordinator=ADDR --job=JOB [--keep-last=N] [--keep-every-steps=S]\n"
    "                    [--keep-every-hours=H] [--keep-best=K --metric=NAME [--mode=min|max]]\n"
    "       cairn policy --coordinator=ADDR --job=JOB --show [--json]\n"
    "Sets JOB's retention policy, replacing the previous one, and prints it. Rules\n"
    "combine as a union: a committed checkpoint is kept if any rule keeps it.\n"
    "  --keep-last=N         the N newest (highest steps)\n"
    "  --keep-every-steps=S  every step divisible by S\n"
    "  --keep-every-hours=H  the first checkpoint of each H-hour window since the\n"
    "                        job's first commit (H may be fractional)\n"
    "  --keep-best=K         the K best by --metric=NAME (saved with --metric on\n"
    "                        save); --mode=min (default) or max says which is best\n"
    "0 turns a rule off; no rule flags clears the policy: keep everything. The\n"
    "newest checkpoint, pinned ones (cairn pin) and ones being restored are always\n"
    "kept. The policy applies at the next commit or cairn gc.\n"
    "--show prints the current policy without changing it.\n";

int Policy(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args,
                       {"coordinator", "job", "keep-last", "keep-every-steps", "keep-every-hours",
                        "keep-best", "metric", "mode", "show", "json"},
                       kPolicyHelp, &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("policy takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  const std::vector<std::string> rule_flags = {"keep-last", "keep-every-steps", "keep-every-hours",
                                               "keep-best", "metric", "mode"};
  const bool show = flags.GetBool("show");
  if (show) {
    for (const std::string& name : rule_flags) {
      if (flags.Has(name)) {
        return UsageError(absl::StrCat("--show prints the policy of job ", job,
                                       "; it takes no rule flags (--", name, ")"));
      }
    }
  }

  RetentionPolicy policy;
  for (const auto& [name, field] :
       std::vector<std::pair<std::string, int64_t*>>{{"keep-last", &policy.keep_last},
                                                     {"keep-every-steps", &policy.keep_every_steps},
                                                     {"keep-best", &policy.keep_best}}) {
    auto v = flags.GetInt(name, 0, INT64_MAX);
    if (!v.ok()) return UsageError(std::string(v.status().message()));
    *field = v->value_or(0);
  }
  if (auto hours = flags.Get("keep-every-hours")) {
    double h;
    if (!absl::SimpleAtod(*hours, &h) || !std::isfinite(h) || h < 0) {
      return UsageError(absl::StrCat("--keep-every-hours=", *hours,
                                     ": expected a non-negative number of hours, e.g. 24 or 0.5"));
    }
    policy.keep_every_hours = h;
  }
  if (auto metric = flags.Get("metric")) {
    if (metric->empty() || *metric == "true") return UsageError("--metric needs a NAME");
    policy.metric = *metric;
  }
  if (auto mode = flags.Get("mode")) {
    if (*mode != "min" && *mode != "max") {
      return UsageError(absl::StrCat("--mode=", *mode, ": expected min or max"));
    }
    policy.maximize = *mode == "max";
  }
  if (policy.keep_best > 0 && policy.metric.empty()) {
    return UsageError(absl::StrCat("job ", job, ": --keep-best=", policy.keep_best,
                                   " needs --metric=NAME (the metric that ranks checkpoints)"));
  }
  if (policy.keep_best == 0 && (flags.Has("metric") || flags.Has("mode"))) {
    return UsageError(absl::StrCat("job ", job, ": --", flags.Has("metric") ? "metric" : "mode",
                                   " goes with --keep-best=K (K >= 1)"));
  }
  if (absl::Status s = internal::ValidateRetentionPolicy(job, policy); !s.ok()) {
    return UsageError(std::string(s.message()));
  }

  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  if (show) {
    auto current = (*client)->GetPolicy(job);
    if (!current.ok()) return Failed(current.status());
    policy = *std::move(current);
  } else if (absl::Status s = (*client)->SetPolicy(job, policy); !s.ok()) {
    return Failed(s);
  }
  if (flags.GetBool("json")) {
    nlohmann::json out = {{"job", job},
                          {"keep_last", policy.keep_last},
                          {"keep_every_steps", policy.keep_every_steps},
                          {"keep_every_hours", policy.keep_every_hours},
                          {"keep_best", policy.keep_best},
                          {"metric", policy.metric},
                          {"mode", policy.maximize ? "max" : "min"}};
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << "retention policy of job " << job << ": " << internal::PolicyString(policy)
            << "\n";
  return kOk;
}

int Pin(const std::vector<std::string>& args, bool pin) {
  const std::string command = pin ? "pin" : "unpin";
  Flags flags;
  const std::string help =
      pin ? "usage: cairn pin --coordinator=ADDR --job=JOB --step=STEP\n"
            "Pins checkpoint JOB/STEP: retention never deletes it until it is unpinned.\n"
          : "usage: cairn unpin --coordinator=ADDR --job=JOB --step=STEP\n"
            "Unpins checkpoint JOB/STEP: retention rules decide about it again (at the\n"
            "next commit or cairn gc).\n";
  int rc = ParseOrExit(args, {"coordinator", "job", "step"}, help.c_str(), &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) {
    return UsageError(absl::StrCat(command, " takes no positional arguments"));
  }
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  auto step = flags.GetInt("step", 0, INT64_MAX);
  if (!step.ok()) return UsageError(std::string(step.status().message()));
  if (!step->has_value()) return UsageError("--step=... is required");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  if (absl::Status s = (*client)->Pin(job, **step, pin); !s.ok()) return Failed(s);
  std::cout << (pin ? "pinned " : "unpinned ") << job << "/" << **step << "\n";
  return kOk;
}

int Gc(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "dry-run", "json"},
      "usage: cairn gc --coordinator=ADDR --job=JOB [--dry-run] [--json]\n"
      "Applies JOB's retention policy now: deletes the committed checkpoints no\n"
      "rule keeps. Prints, per checkpoint, keep (with the rules keeping it) or\n"
      "delete (with the reason), then a summary. --dry-run deletes nothing and\n"
      "prints what would be deleted and why. --json prints {\"job\", \"dry_run\",\n"
      "\"deleted\", \"decisions\": [{\"step\", \"keep\", \"kept_by\", \"reason\"}]}\n"
      "(in a dry run, \"deleted\" counts what would be deleted).\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("gc takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  const bool dry_run = flags.GetBool("dry-run");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto result = (*client)->Gc(job, dry_run);
  if (!result.ok()) return Failed(result.status());
  std::cout << (flags.GetBool("json") ? internal::GcJson(job, dry_run, *result)
                                      : internal::GcText(job, dry_run, *result));
  return kOk;
}

int Rollback(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "to", "dry-run"},
      "usage: cairn rollback --coordinator=ADDR --job=JOB --to=STEP [--dry-run]\n"
      "Makes checkpoint JOB/STEP the newest, to resume training from it: deletes\n"
      "every committed checkpoint above STEP, aborts every pending one, and\n"
      "rewrites the TensorFlow 'checkpoint' file so STEP is the latest. Refused,\n"
      "naming them, if a checkpoint above STEP is pinned or leased. Saves move\n"
      "forward: a step below the newest committed one is refused until a\n"
      "rollback makes room for it. --dry-run deletes nothing and prints what\n"
      "would go.\n"
      "Example: cairn rollback --coordinator=127.0.0.1:7070 --job=bert --to=1000\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("rollback takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  auto to = flags.GetInt("to", 0, INT64_MAX);
  if (!to.ok()) return UsageError(std::string(to.status().message()));
  if (!to->has_value()) return UsageError("--to=STEP is required");
  const bool dry_run = flags.GetBool("dry-run");
  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  auto result = (*client)->Rollback(job, **to, dry_run);
  if (!result.ok()) return Failed(result.status());
  const char* verb = dry_run ? "would delete" : "deleted";
  for (int64_t step : result->deleted_steps) std::cout << verb << " " << job << "/" << step << "\n";
  for (int64_t step : result->aborted_steps) {
    std::cout << (dry_run ? "would abort pending " : "aborted pending ") << job << "/" << step << "\n";
  }
  std::cout << (dry_run ? "dry run: " : "") << job << " " << (dry_run ? "would roll" : "rolled")
            << " back to step " << **to << " (" << result->deleted_steps.size()
            << " deleted, " << result->aborted_steps.size() << " pending aborted)\n";
  return kOk;
}

int Token(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"auth-key-file", "job", "scope", "ttl"},
      "usage: cairn token --auth-key-file=FILE --job=JOB --scope=read|write [--ttl=SECONDS]\n"
      "Prints an authorization token for JOB (\"*\" = every job, an admin token),\n"
      "signed with the key the coordinator and writers were given\n"
      "(--auth-key-file). A write token also reads. --ttl defaults to 86400.\n"
      "Clients pass it with --token=TOKEN or $CAIRN_TOKEN.\n",
      &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("token takes no positional arguments");
  auto key_file = Required(flags, "auth-key-file", &rc);
  if (!key_file) return rc;
  auto job = Required(flags, "job", &rc);
  if (!job) return rc;
  if (*job != auth::kAnyJob) {
    if (absl::Status s = internal::ValidateJobName(*job); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  }
  auto scope_name = Required(flags, "scope", &rc);
  if (!scope_name) return rc;
  if (*scope_name != "read" && *scope_name != "write") {
    return UsageError("--scope must be read or write");
  }
  auto ttl = flags.GetInt("ttl", 1, 10LL * 365 * 86400);
  if (!ttl.ok()) return UsageError(std::string(ttl.status().message()));
  auto key = auth::ReadKeyFile(*key_file);
  if (!key.ok()) return Failed(key.status());
  const auth::Scope scope = *scope_name == "write" ? auth::Scope::kWrite : auth::Scope::kRead;
  std::cout << auth::MintToken(*key, *job, scope, auth::NowUnixSeconds() + ttl->value_or(86400))
            << "\n";
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
  if (command == "save") return Save(args);
  if (command == "restore") return Restore(args);
  if (command == "list") return List(args);
  if (command == "adopt") return Adopt(args);
  if (command == "policy") return Policy(args);
  if (command == "pin") return Pin(args, /*pin=*/true);
  if (command == "unpin") return Pin(args, /*pin=*/false);
  if (command == "gc") return Gc(args);
  if (command == "rollback") return Rollback(args);
  if (command == "token") return Token(args);
  return UsageError(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace cli
}  // namespace cairn

int main(int argc, char** argv) { return cairn::cli::Main(argc, argv); }
