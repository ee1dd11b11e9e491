// adopt: registering checkpoints TensorFlow wrote as steps of a job.
#include "client/tools.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>

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


// The step of "ckpt-6", "model.ckpt-1000", "dir/ckpt-5": the number after the
// last '-' of the last path component.
bool StepOf(absl::string_view path, int64_t* step) {
  const size_t slash = path.rfind('/');
  absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  const size_t dash = name.rfind('-');
  return dash != absl::string_view::npos && absl::SimpleAtoi(name.substr(dash + 1), step) && *step >= 0;
}


}  // namespace

absl::StatusOr<AdoptResult> AdoptCheckpoints(Client& client, const std::string& job,
                                             absl::string_view dir_uri,
                                             const std::function<void(const std::string&)>& log,
                                             const StorageOptions& storage_options) {
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
  std::set<int64_t> existing;
  auto listed = client.List(job);
  if (listed.ok()) {
    for (const auto& c : *listed) existing.insert(c.step);
  } else if (!absl::IsNotFound(listed.status())) {
    return listed.status();
  }
  AdoptResult result;
  for (const std::string& path : paths) {
    int64_t step;
    if (!StepOf(path, &step)) {
      result.failed.push_back(absl::StrCat(path, ": cannot tell its step (expected NAME-STEP)"));
      log(result.failed.back());
      continue;
    }
    // Relative paths are relative to the directory of the state file.
    std::string prefix = path;
    if (!prefix.empty() && prefix[0] == '/') {
      const std::string root = storage->uri();
      const std::string local = absl::StartsWith(root, "file://") ? root.substr(7) : root;
      if (!absl::StartsWith(prefix, local + "/")) {
        result.failed.push_back(absl::StrCat(path, ": outside ", dir_uri));
        log(result.failed.back());
        continue;
      }
      prefix = prefix.substr(local.size() + 1);
    }
    ASSIGN_OR_RETURN(bool present, storage->Exists(IndexFileName(prefix)));
    if (!present) {
      result.missing.push_back(path);
      log(absl::StrCat("missing: ", path, " is listed in the checkpoint file but its files are not there"));
      continue;
    }
    if (existing.count(step)) {
      result.already_present.push_back(step);
      log(absl::StrCat("skipped: ", path, " (step ", step, " of ", job, " is already in the catalog)"));
      continue;
    }
    const std::string prefix_uri = JoinPath(storage->uri(), prefix);
    ASSIGN_OR_RETURN(VerifyReport report, VerifyCheckpoint(prefix_uri, nullptr, storage_options));
    if (!report.ok()) {
      result.failed.push_back(absl::StrCat(path, ": corrupt: ", report.problems[0]));
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
      result.failed.push_back(absl::StrCat(path, ": ", s.message()));
      log(result.failed.back());
      continue;
    }
    result.adopted.push_back(step);
    log(absl::StrCat("adopted ", path, " as step ", step, " of ", job, ": ", tensors.size(),
                     " tensors, ", bytes, " bytes, every checksum verified"));
  }
  return result;
}

}  // namespace cairn
