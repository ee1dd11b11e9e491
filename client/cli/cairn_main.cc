// `cairn`: the command-line client. See ../shared/CONTRACT.md and README.md.
// Exit status: 0 success, 1 the operation failed, 2 usage error.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/cli_format.h"
#include "client/internal/cli_io.h"
#include "client/internal/flags.h"
#include "client/internal/validate.h"
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
                const char* help, Flags* flags, const std::set<std::string>& repeatable = {}) {
  known.insert("help");
  auto parsed = Flags::Parse(args, known, repeatable);
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

// The value of a required flag, or a usage error naming it.
std::optional<std::string> Required(const Flags& flags, const std::string& name, int* rc) {
  std::optional<std::string> v = flags.Get(name);
  if (!v.has_value() || v->empty() || *v == "true") {
    *rc = UsageError(absl::StrCat("--", name, "=... is required"));
    return std::nullopt;
  }
  return v;
}

int Save(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(
      args, {"coordinator", "job", "step", "from", "shard", "metric"},
      "usage: cairn save --coordinator=ADDR --job=JOB --step=STEP --from=FILE.safetensors\n"
      "                  [--shard=I/N] [--metric=NAME=VALUE]...\n"
      "Saves the tensors of FILE.safetensors as shard I of N (default 0/1) of\n"
      "checkpoint JOB/STEP through the coordinator at ADDR. Tensors with\n"
      "\"cairn.slice.NAME\" metadata are saved as slices of the partitioned tensor\n"
      "NAME. Returns when the shard is durable; the save that completes the last\n"
      "shard returns once the checkpoint is committed. --metric values (numbers)\n"
      "are recorded with the checkpoint for retention (--keep-best).\n",
      &flags, {"metric"});
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("save takes no positional arguments");
  auto coordinator = Required(flags, "coordinator", &rc);
  if (!coordinator) return rc;
  auto job = Required(flags, "job", &rc);
  if (!job) return rc;
  auto from = Required(flags, "from", &rc);
  if (!from) return rc;
  if (absl::Status s = internal::ValidateJobName(*job); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
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
  ClientOptions client_options;
  client_options.coordinator = *coordinator;
  auto client = Client::Connect(client_options);
  if (!client.ok()) return Failed(client.status());
  auto result = (*client)->SaveShard(options, (*source)->tensors());
  if (!result.ok()) return Failed(result.status());
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
  int rc = ParseOrExit(
      args, {"coordinator", "job", "step", "from", "to", "tensor", "slice", "strict", "threads"},
      "usage: cairn restore (--coordinator=ADDR --job=JOB [--step=STEP] | --from=PREFIX)\n"
      "                     --to=DST [--tensor=NAME]... [--slice=NAME=SHAPE_AND_SLICE]...\n"
      "                     [--strict] [--threads=N]\n"
      "Restores checkpoint JOB/STEP (default: the newest committed step), or the\n"
      "checkpoint at PREFIX, to DST: a .safetensors file, or else a checkpoint\n"
      "prefix. By default every tensor; --tensor restores only the named ones.\n"
      "--slice restores that part of a tensor, given as its full shape and a\n"
      "TensorFlow slice, e.g. --slice=emb=1000 64 0,500:- (rows 0-499, all\n"
      "columns); partitioned tensors are reassembled or re-cut as needed. In a\n"
      ".safetensors file a slice is marked with \"cairn.slice.NAME\" metadata;\n"
      "tensors safetensors cannot hold (string, complex) are skipped with a\n"
      "warning, or fail with --strict. --threads sets parallel reads (default 4).\n",
      &flags, {"tensor", "slice"});
  if (rc >= 0) return rc;
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

  // Where the checkpoint is.
  std::string prefix;
  std::string source;
  if (from_prefix) {
    auto from = Required(flags, "from", &rc);
    if (!from) return rc;
    prefix = *from;
    source = prefix;
  } else {
    auto coordinator = Required(flags, "coordinator", &rc);
    if (!coordinator) return rc;
    auto job = Required(flags, "job", &rc);
    if (!job) return rc;
    if (absl::Status s = internal::ValidateJobName(*job); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
    auto step = flags.GetInt("step", 0, INT64_MAX);
    if (!step.ok()) return UsageError(std::string(step.status().message()));
    ClientOptions client_options;
    client_options.coordinator = *coordinator;
    auto client = Client::Connect(client_options);
    if (!client.ok()) return Failed(client.status());
    auto ckpt = (*client)->Get(*job, *step);
    if (!ckpt.ok()) return Failed(ckpt.status());
    if (ckpt->state != "committed") {
      return Failed(absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", *job, "/", ckpt->step, " is ", ckpt->state, ", not committed")));
    }
    prefix = ckpt->prefix_uri;
    source = absl::StrCat(*job, "/", ckpt->step);
  }

  // A --slice must name the tensor's real full shape; checked from the index
  // before any data is read.
  if (absl::Status s = internal::CheckFullShapes(prefix, full_shapes); !s.ok()) return Failed(s);
  auto tensors = RestoreFromPrefix(prefix, request, static_cast<int>(threads->value_or(4)));
  if (!tensors.ok()) return Failed(tensors.status());
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
  auto coordinator = Required(flags, "coordinator", &rc);
  if (!coordinator) return rc;
  auto job = Required(flags, "job", &rc);
  if (!job) return rc;
  if (absl::Status s = internal::ValidateJobName(*job); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  ClientOptions client_options;
  client_options.coordinator = *coordinator;
  auto client = Client::Connect(client_options);
  if (!client.ok()) return Failed(client.status());
  auto ckpts = (*client)->List(*job);
  if (!ckpts.ok()) return Failed(ckpts.status());
  std::cout << (flags.GetBool("json") ? internal::CheckpointJson(*job, *ckpts)
                                      : internal::CheckpointTable(*job, *ckpts));
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
  return UsageError(absl::StrCat("unknown command \"", command, "\""));
}

}  // namespace
}  // namespace cli
}  // namespace cairn

int main(int argc, char** argv) { return cairn::cli::Main(argc, argv); }
