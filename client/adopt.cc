// adopt: registering checkpoints TensorFlow wrote as steps of a job.
#include "client/tools.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/internal/progress.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/checkpoint_state.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/safetensors.h"
#include "storage/status_macros.h"
#include "storage/storage.h"
#include "storage/bundle/tensor_slice.h"

#include "client/internal/locate.h"

namespace cairn {
namespace {

using internal::Located;
using internal::Locate;


// The step of a checkpoint named `path` ("ckpt-6", "model.ckpt-1000",
// "training/cp-0005.ckpt"), from its last path component: with `pattern`, the
// pattern's one capture group (searched anywhere in the name); else the last
// run of digits in the name. A last number that is the fraction of a decimal
// ("loss0,0150", "acc-0.97") is no step: refused, asking for a pattern.
absl::StatusOr<int64_t> StepOf(absl::string_view path, const std::optional<std::regex>& pattern,
                               absl::string_view pattern_text) {
  const size_t slash = path.rfind('/');
  const std::string name(slash == absl::string_view::npos ? path : path.substr(slash + 1));
  std::string digits;
  if (pattern) {
    std::smatch m;
    if (!std::regex_search(name, m, *pattern)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--step-pattern=", pattern_text, " does not match the name \"", name, "\""));
    }
    digits = m[1].str();
  } else {
    size_t end = name.size();
    while (end > 0 && !absl::ascii_isdigit(name[end - 1])) --end;
    size_t begin = end;
    while (begin > 0 && absl::ascii_isdigit(name[begin - 1])) --begin;
    if (begin == end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot tell its step: the name \"", name, "\" has no number (give --step-pattern=REGEX)"));
    }
    if (begin >= 2 && (name[begin - 1] == '.' || name[begin - 1] == ',') &&
        absl::ascii_isdigit(name[begin - 2])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot tell its step: the last number in \"", name, "\" is the fraction of a decimal (",
          name.substr(begin - 2, end - begin + 2), "); give --step-pattern=REGEX with one capture "
          "group, e.g. --step-pattern='epoch(\\d+)'"));
    }
    digits = name.substr(begin, end - begin);
  }
  int64_t step;
  if (!absl::SimpleAtoi(digits, &step) || step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot tell its step: \"", digits, "\" (from \"",
                                                   name, "\") is not a step (0 ... 2^63-1)"));
  }
  return step;
}

}  // namespace

absl::StatusOr<AdoptResult> AdoptCheckpoints(Client& client, const std::string& job,
                                             absl::string_view dir_uri,
                                             const std::function<void(const std::string&)>& log,
                                             const StorageOptions& storage_options,
                                             absl::string_view step_pattern) {
  std::optional<std::regex> pattern;
  if (!step_pattern.empty()) {
    try {
      pattern.emplace(std::string(step_pattern), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("--step-pattern=", step_pattern, ": ", e.what()));
    }
    if (pattern->mark_count() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("--step-pattern=", step_pattern, " has ",
                                                     pattern->mark_count(),
                                                     " capture groups; it needs exactly one (the step)"));
    }
  }
  ASSIGN_OR_RETURN(auto storage, OpenStorage(dir_uri, storage_options));
  ASSIGN_OR_RETURN(auto state_file, storage->NewReadableFile("checkpoint"));
  std::string text(state_file->Size(), '\0');
  RETURN_IF_ERROR(state_file->ReadAt(0, text.size(), text.data()));
  auto state = ParseStateFile(text);
  if (!state.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(state_file->name(), ": ", state.status().message()));
  }
  std::vector<std::string> paths = state->all_model_checkpoint_paths;
  if (!state->model_checkpoint_path.empty() &&
      std::find(paths.begin(), paths.end(), state->model_checkpoint_path) == paths.end()) {
    paths.push_back(state->model_checkpoint_path);
  }
  // Checkpoints beside the state file that it no longer lists: Keras's
  // save_weights / ModelCheckpoint("cp-{epoch:04d}.ckpt") list only the newest.
  {
    const std::string root = storage->uri();
    const std::string local = absl::StartsWith(root, "file://") ? root.substr(7) : root;
    std::set<std::string> listed_names;
    for (const std::string& p : paths) {
      listed_names.insert(absl::StartsWith(p, local + "/") ? p.substr(local.size() + 1) : p);
    }
    ASSIGN_OR_RETURN(std::vector<std::string> files, storage->List(""));
    for (const std::string& f : files) {
      if (f.find('/') != std::string::npos || !absl::EndsWith(f, ".index")) continue;
      const std::string prefix = f.substr(0, f.size() - 6);
      if (!prefix.empty() && !listed_names.count(prefix)) paths.push_back(prefix);
    }
  }
  std::set<int64_t> existing;
  auto listed = client.List(job);
  if (listed.ok()) {
    for (const auto& c : *listed) existing.insert(c.step);
  } else if (!absl::IsNotFound(listed.status())) {
    return listed.status();
  }
  AdoptResult result;
  std::map<int64_t, std::string> step_owner;  // step -> the path that claimed it
  // Steps first, then the checkpoints in ascending step order: saves must
  // move forward, so a newer one adopted first would refuse the older ones.
  std::vector<std::pair<int64_t, std::string>> by_step;
  for (const std::string& path : paths) {
    auto parsed = StepOf(path, pattern, step_pattern);
    if (!parsed.ok()) {
      result.failed.push_back(absl::StrCat(path, ": ", parsed.status().message()));
      result.checkpoints.push_back({path, std::nullopt, "failed", std::string(parsed.status().message())});
      log(result.failed.back());
      continue;
    }
    if (auto [it, fresh] = step_owner.emplace(*parsed, path); !fresh) {
      const std::string why = absl::StrCat("step ", *parsed, " is also the step of ", it->second,
                                           " (give --step-pattern=REGEX to tell them apart)");
      result.failed.push_back(absl::StrCat(path, ": ", why));
      result.checkpoints.push_back({path, *parsed, "failed", why});
      log(result.failed.back());
      continue;
    }
    by_step.emplace_back(*parsed, path);
  }
  std::stable_sort(by_step.begin(), by_step.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [step, path] : by_step) {
    auto record = [&, step = step, &path = path](const std::string& outcome, std::optional<int64_t>,
                                                 const std::string& detail) {
      result.checkpoints.push_back({path, step, outcome, detail});
    };
    // Relative paths are relative to the directory of the state file.
    std::string prefix = path;
    if (!prefix.empty() && prefix[0] == '/') {
      const std::string root = storage->uri();
      const std::string local = absl::StartsWith(root, "file://") ? root.substr(7) : root;
      if (!absl::StartsWith(prefix, local + "/")) {
        result.failed.push_back(absl::StrCat(path, ": outside ", dir_uri));
        record("failed", step, absl::StrCat("outside ", dir_uri));
        log(result.failed.back());
        continue;
      }
      prefix = prefix.substr(local.size() + 1);
    }
    ASSIGN_OR_RETURN(bool present, storage->Exists(IndexFileName(prefix)));
    if (!present) {
      result.missing.push_back(path);
      record("missing", step, "listed in the checkpoint file but its files are not there");
      log(absl::StrCat("missing: ", path, " is listed in the checkpoint file but its files are not there"));
      continue;
    }
    if (existing.count(step)) {
      result.already_present.push_back(step);
      record("already_present", step, absl::StrCat("step ", step, " of ", job, " is already in the catalog"));
      log(absl::StrCat("skipped: ", path, " (step ", step, " of ", job, " is already in the catalog)"));
      continue;
    }
    const std::string prefix_uri = JoinPath(storage->uri(), prefix);
    ASSIGN_OR_RETURN(VerifyReport report, VerifyCheckpoint(prefix_uri, nullptr, storage_options));
    if (!report.ok()) {
      result.failed.push_back(absl::StrCat(path, ": corrupt: ", report.problems[0]));
      record("failed", step, absl::StrCat("corrupt: ", report.problems[0]));
      log(result.failed.back());
      continue;
    }
    ASSIGN_OR_RETURN(auto reader, BundleReader::Open(storage.get(), prefix));
    std::vector<BundleEntry> entries;
    RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) {
      entries.push_back(e);
      return absl::OkStatus();
    }));
    std::map<std::string, const BundleEntry*> by_key;
    for (const BundleEntry& e : entries) by_key[e.key] = &e;
    std::vector<Tensor> data;  // owns the bytes the SaveTensors point at
    data.reserve(entries.size());
    std::vector<SaveTensor> tensors;
    uint64_t bytes = 0;
    absl::Status s;
    for (const BundleEntry& e : entries) {
      if (e.key[0] == '\0') continue;  // slice data: saved with its tensor below
      if (!e.is_sliced()) {
        auto t = reader->ReadEntry(e);
        if (!t.ok()) {
          s = t.status();
          break;
        }
        data.push_back(std::move(t).value());
        const Tensor& d = data.back();
        tensors.push_back({e.key, d.dtype, d.shape, std::nullopt, d.data.view(), d.strings});
        bytes += e.size;
        continue;
      }
      for (const TensorSlice& slice : e.slices) {
        auto it = by_key.find(EncodeSliceKey(e.key, slice));
        if (it == by_key.end()) {
          s = absl::DataLossError(absl::StrCat("tensor \"", e.key, "\": slice ", slice.ToString(), " missing"));
          break;
        }
        auto t = reader->ReadEntry(*it->second);
        if (!t.ok()) {
          s = t.status();
          break;
        }
        data.push_back(std::move(t).value());
        tensors.push_back({e.key, e.data_type(), e.shape, slice, data.back().data.view(), {}});
        bytes += it->second->size;
      }
      if (!s.ok()) break;
    }
    if (s.ok()) {
      SaveShardOptions options;
      options.job = job;
      options.step = step;
      s = client.SaveShard(options, tensors).status();
    }
    if (!s.ok()) {
      result.failed.push_back(absl::StrCat(path, ": not adopted as step ", step, ": ", s.message()));
      record("failed", step, std::string(s.message()));
      log(result.failed.back());
      continue;
    }
    result.adopted.push_back(step);
    const std::string what = absl::StrCat(tensors.size(), " tensors, ", bytes, " bytes, every checksum verified");
    record("adopted", step, what);
    log(absl::StrCat("adopted ", path, " as step ", step, " of ", job, ": ", what));
  }
  return result;
}

}  // namespace cairn
