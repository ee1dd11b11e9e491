#include "client/internal/validate.h"

#include <cmath>
#include <limits>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/rpc/rpc_util.h"
#include "proto/layout.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

// A DT_STRING tensor travels in one TensorHeader message; leave room for the
// name, shape and framing below the gRPC message limit.
constexpr uint64_t kMaxStringTensorBytes = rpc::kMaxMessageBytes - (1 << 20);

// The slices given so far of one partitioned tensor, to refuse duplicates
// and disagreements.
struct Sliced {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  std::set<std::string> slices;
};

}  // namespace

absl::Status ValidateMetrics(const std::map<std::string, double>& metrics) {
  for (const auto& metric : metrics) {
    if (metric.first.empty()) return absl::InvalidArgumentError("a metric has an empty name");
    if (!std::isfinite(metric.second)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", metric.first, "\" is not a finite number"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSaveShard(const SaveShardOptions& options,
                               const std::vector<SaveTensor>& tensors) {
  RETURN_IF_ERROR(ValidateSaveOptions(options));
  RETURN_IF_ERROR(ValidateNotEmpty(options, tensors.size()));
  return ValidateSaveTensors(tensors);
}

absl::Status ValidateNotEmpty(const SaveShardOptions& options, size_t num_tensors) {
  if (num_tensors == 0 && options.num_shards == 1) {
    // (With several shards, some may be empty; the coordinator refuses a
    // checkpoint whose shards are all empty.)
    return absl::InvalidArgumentError(absl::StrCat(
        "nothing to save in ", options.job, "/", options.step,
        ": a checkpoint needs at least one tensor"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSaveOptions(const SaveShardOptions& options) {
  RETURN_IF_ERROR(ValidateJobName(options.job));
  RETURN_IF_ERROR(ValidateStep(options.step));
  if (options.num_shards < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards is ", options.num_shards, "; it must be at least 1"));
  }
  if (options.shard_index < 0 || options.shard_index >= options.num_shards) {
    return absl::InvalidArgumentError(absl::StrCat("shard index ", options.shard_index,
                                                   " is outside 0..", options.num_shards - 1,
                                                   " (num_shards ", options.num_shards, ")"));
  }
  return ValidateMetrics(options.metrics);
}

absl::Status ValidateSaveTensors(const std::vector<SaveTensor>& tensors) {
  SaveTensorChecker checker;
  checker.Reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) RETURN_IF_ERROR(checker.Add(tensors[i], i));
  return absl::OkStatus();
}

struct SaveTensorChecker::Seen {
  // Per name (views of the tensors' own names, no copy per tensor): -1 once
  // given whole, else where its slices are recorded in `sliced`. A state of
  // 10,000 small tensors pays a small map slot each and no message text.
  absl::flat_hash_map<absl::string_view, int> names;
  std::vector<Sliced> sliced;
};

SaveTensorChecker::SaveTensorChecker() : seen_(std::make_unique<Seen>()) {}
SaveTensorChecker::~SaveTensorChecker() = default;
void SaveTensorChecker::Reserve(size_t n) { seen_->names.reserve(n); }

absl::Status SaveTensorChecker::Add(const SaveTensor& t, size_t i) {
  auto& seen = seen_->names;
  auto& sliced = seen_->sliced;
  if (t.name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor #", i, " has an empty name"));
  }
  auto what = [&t] { return absl::StrCat("tensor \"", t.name, "\""); };
  if (t.name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what(), ": the name holds a NUL byte"));
  }
  if (!IsStorableDataType(static_cast<int32_t>(t.dtype))) {
    return absl::InvalidArgumentError(absl::StrCat(what(), ": dtype ", DataTypeName(t.dtype),
                                                   " cannot be stored in a checkpoint"));
  }
  int64_t full_elements;
  if (!NumElements(t.shape, &full_elements)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what(), ": shape ", ShapeString(t.shape),
        " has a negative dimension or more elements than fit in 64 bits"));
  }
  int64_t elements = full_elements;
  if (t.slice.has_value()) {
    if (t.slice->rank() != static_cast<int>(t.shape.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": slice \"", t.slice->ToString(), "\" has rank ", t.slice->rank(),
          " but the shape ", ShapeString(t.shape), " has rank ", t.shape.size()));
    }
    absl::Status fits = t.slice->CheckFits(t.shape);
    if (!fits.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what(), ": slice \"", t.slice->ToString(),
                                                     "\" does not fit shape ",
                                                     ShapeString(t.shape), ": ", fits.message()));
    }
    NumElements(t.slice->SliceShape(t.shape), &elements);  // no larger than full_elements
  }
  if (t.dtype == DataType::kString) {
    if (t.slice.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what(), ": string tensors cannot be saved as slices"));
    }
    if (!t.data.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what(), ": a string tensor carries its values in `strings`, not `data`"));
    }
    if (static_cast<uint64_t>(t.strings.size()) != static_cast<uint64_t>(elements)) {
      return absl::InvalidArgumentError(absl::StrCat(what(), ": shape ", ShapeString(t.shape),
                                                     " needs ", elements, " strings but ",
                                                     t.strings.size(), " were given"));
    }
    uint64_t total = 0;
    for (const std::string& s : t.strings) total += s.size() + 16;
    if (total > kMaxStringTensorBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": the string values total about ", total, " bytes; at most ",
          kMaxStringTensorBytes, " can be saved in one string tensor"));
    }
  } else {
    if (!t.strings.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": `strings` is only for string tensors, not ", DataTypeName(t.dtype)));
    }
    const uint64_t elem = DataTypeSize(t.dtype);
    const uint64_t n = static_cast<uint64_t>(elements);
    if (elem != 0 && n > std::numeric_limits<uint64_t>::max() / elem) {
      return absl::InvalidArgumentError(absl::StrCat(what(), ": ", n, " elements of ",
                                                     DataTypeName(t.dtype),
                                                     " overflow a 64-bit byte count"));
    }
    if (n * elem != static_cast<uint64_t>(t.data.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          what(), ": ", t.slice.has_value() ? "slice \"" + t.slice->ToString() + "\" of " : "",
          DataTypeName(t.dtype), " shape ",
          ShapeString(t.slice.has_value() ? t.slice->SliceShape(t.shape) : t.shape), " needs ",
          n * elem, " bytes but ", t.data.size(), " were given"));
    }
  }

  auto [it, first] = seen.try_emplace(absl::string_view(t.name), -1);
  if (!first && (it->second < 0 || !t.slice.has_value())) {
    return absl::InvalidArgumentError(
        absl::StrCat(what(), " is given more than once (a whole tensor may appear only once, "
                             "and not together with slices of it)"));
  }
  if (!t.slice.has_value()) return absl::OkStatus();  // -1: given whole
  if (first) {
    it->second = static_cast<int>(sliced.size());
    sliced.push_back(Sliced{t.dtype, t.shape, {}});
  }
  Sliced& s = sliced[static_cast<size_t>(it->second)];
  if (s.dtype != t.dtype || s.shape != t.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        what(), ": slice \"", t.slice->ToString(), "\" says ", DataTypeName(t.dtype), " ",
        ShapeString(t.shape), " but an earlier slice says ", DataTypeName(s.dtype), " ",
        ShapeString(s.shape)));
  }
  if (!s.slices.insert(t.slice->ToString()).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(what(), ": slice \"", t.slice->ToString(), "\" is given more than once"));
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::Status ValidateRetentionPolicy(absl::string_view job, const RetentionPolicy& policy) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("retention policy for job ", job, ": ", what));
  };
  if (policy.keep_last < 0) {
    return invalid(absl::StrCat("keep-last ", policy.keep_last, " is negative"));
  }
  if (policy.keep_every_steps < 0) {
    return invalid(absl::StrCat("keep-every-steps ", policy.keep_every_steps, " is negative"));
  }
  if (!std::isfinite(policy.keep_every_hours) || policy.keep_every_hours < 0) {
    return invalid(absl::StrCat("keep-every-hours ", policy.keep_every_hours,
                                " is not a finite non-negative number"));
  }
  if (policy.keep_best < 0) {
    return invalid(absl::StrCat("keep-best ", policy.keep_best, " is negative"));
  }
  if (policy.keep_best > 0 && policy.metric.empty()) {
    return invalid(absl::StrCat("keep-best ", policy.keep_best, " needs a metric name"));
  }
  if (policy.keep_best == 0 && !policy.metric.empty()) {
    return invalid(absl::StrCat("metric \"", policy.metric, "\" is only used with keep-best > 0"));
  }
  return absl::OkStatus();
}

}  // namespace cairn
