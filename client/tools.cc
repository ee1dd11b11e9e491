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
#include "storage/bundle_merge.h"
#include "storage/bundle_reader.h"
#include "storage/bundle_writer.h"
#include "storage/checkpoint_state.h"
#include "storage/crc32c.h"
#include "storage/safetensors.h"
#include "storage/status_macros.h"
#include "storage/storage.h"
#include "storage/tensor_slice.h"

namespace cairn {
namespace {

// A storage backend with a checkpoint prefix (or file name) inside it.
struct Located {
  std::unique_ptr<Storage> storage;
  std::string name;
};

absl::StatusOr<Located> Locate(absl::string_view uri) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(uri));
  Located out;
  ASSIGN_OR_RETURN(out.storage, OpenStorage(split.root_uri));
  out.name = std::move(split.prefix);
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// JSON strings must be UTF-8; tensor names are arbitrary bytes.
std::string Dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Warn(const ConvertOptions& options, const std::string& msg) {
  if (options.warn) options.warn(msg);
}

}  // namespace

absl::StatusOr<std::string> InspectCheckpoint(absl::string_view prefix_uri, bool json) {
  ASSIGN_OR_RETURN(Located loc, Locate(prefix_uri));
  ASSIGN_OR_RETURN(auto reader, BundleReader::Open(loc.storage.get(), loc.name));
  ASSIGN_OR_RETURN(std::vector<BundleEntry> tensors, reader->ListTensors());
  if (json) {
    nlohmann::json out;
    out["num_shards"] = reader->num_shards();
    out["tensors"] = nlohmann::json::array();
    for (const BundleEntry& e : tensors) {
      nlohmann::json t;
      t["name"] = e.key;
      t["dtype"] = DataTypeName(e.data_type());
      t["shape"] = e.shape;
      t["shard"] = e.shard_id;
      t["offset"] = e.offset;
      t["size"] = e.size;
      t["crc32c"] = e.masked_crc32c;
      t["slices"] = nlohmann::json::array();
      for (const TensorSlice& s : e.slices) t["slices"].push_back(s.ToString());
      out["tensors"].push_back(std::move(t));
    }
    return Dump(out, 2) + "\n";
  }
  std::string text = absl::StrCat("checkpoint ", prefix_uri, ": ", tensors.size(), " tensors in ",
                                  reader->num_shards(), " data file(s)\n");
  for (const BundleEntry& e : tensors) {
    absl::StrAppend(&text, absl::StrFormat("  %-50s %-9s %-14s", e.key, DataTypeName(e.data_type()),
                                           ShapeString(e.shape)));
    if (e.is_sliced()) {
      std::vector<std::string> parts;
      for (const TensorSlice& s : e.slices) parts.push_back(s.ToString());
      absl::StrAppend(&text, " slices ", absl::StrJoin(parts, " "), "\n");
    } else {
      absl::StrAppend(&text, absl::StrFormat(" shard %d offset %d size %d\n", e.shard_id,
                                             e.offset, e.size));
    }
  }
  return text;
}

absl::StatusOr<VerifyReport> VerifyCheckpoint(absl::string_view prefix_uri,
                                              const ProgressFn& progress_fn) {
  ASSIGN_OR_RETURN(Located loc, Locate(prefix_uri));
  ASSIGN_OR_RETURN(auto reader, BundleReader::Open(loc.storage.get(), loc.name));
  VerifyReport report;
  std::vector<BundleEntry> entries;
  RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) {
    entries.push_back(e);
    return absl::OkStatus();
  }));
  std::map<std::string, const BundleEntry*> by_key;
  uint64_t data_bytes = 0;
  for (const BundleEntry& e : entries) {
    by_key[e.key] = &e;
    if (!e.is_sliced()) data_bytes += static_cast<uint64_t>(e.size);
  }
  internal::ProgressCounter progress(progress_fn, data_bytes);
  progress.Begin();
  for (const BundleEntry& e : entries) {
    if (e.is_sliced()) {
      // The full entry holds no data; each slice must have its own entry.
      for (const TensorSlice& s : e.slices) {
        if (!by_key.count(EncodeSliceKey(e.key, s))) {
          report.problems.push_back(absl::StrCat("tensor \"", e.key, "\": the data of slice ",
                                                 s.ToString(), " is missing"));
        }
      }
      continue;
    }
    ++report.tensors;
    auto t = reader->ReadEntry(e);
    if (!t.ok()) {
      report.problems.push_back(std::string(t.status().message()));
    } else {
      report.bytes += static_cast<uint64_t>(e.size);
    }
    progress.Add(static_cast<uint64_t>(e.size));
  }
  progress.Finish();
  return report;
}

absl::StatusOr<VerifyReport> VerifyFiles(absl::string_view root_uri,
                                         const std::vector<ExpectedFile>& files,
                                         const ProgressFn& progress_fn) {
  ASSIGN_OR_RETURN(auto storage, OpenStorage(root_uri));
  VerifyReport report;
  std::string buf(8 << 20, '\0');
  uint64_t total = 0;
  for (const ExpectedFile& f : files) total += f.size;
  internal::ProgressCounter progress(progress_fn, total);
  progress.Begin();
  // Whatever of a file was not counted as read (it was skipped, or a read
  // failed) counts once its check ends, however it ends.
  struct CountRest {
    internal::ProgressCounter& progress;
    uint64_t size;
    uint64_t counted = 0;
    ~CountRest() { progress.Add(size - counted); }
  };
  for (const ExpectedFile& f : files) {
    CountRest rest{progress, f.size};
    auto file = storage->NewReadableFile(f.path);
    if (!file.ok()) {
      report.problems.push_back(absl::StrCat("file ", f.path, ": ", file.status().message()));
      continue;
    }
    if ((*file)->Size() != f.size) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": ", (*file)->Size(),
                                             " bytes, the catalog recorded ", f.size));
      continue;
    }
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
    uint32_t crc = 0;
    absl::Status read;
    for (uint64_t off = 0; off < f.size && read.ok();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size - off));
      read = (*file)->ReadAt(off, n, buf.data());
      crc = crc32c::Extend(crc, buf.data(), n);
      EVP_DigestUpdate(sha.get(), buf.data(), n);
      off += n;
      progress.Add(n);
      rest.counted += n;
    }
    if (!read.ok()) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": ", read.message()));
      continue;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha.get(), digest, &len);
    const std::string got(reinterpret_cast<char*>(digest), len);
    ++report.tensors;
    report.bytes += f.size;
    if (crc != f.crc32c && f.crc32c != 0) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": CRC32C mismatch with the catalog"));
    } else if (!f.sha256.empty() && got != f.sha256) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": SHA-256 ",
                                             absl::BytesToHexString(got), " does not match the catalog's ",
                                             absl::BytesToHexString(f.sha256)));
    }
  }
  progress.Finish();
  return report;
}

namespace {

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
                                             const std::function<void(const std::string&)>& log) {
  ASSIGN_OR_RETURN(auto storage, OpenStorage(dir_uri));
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
    ASSIGN_OR_RETURN(VerifyReport report, VerifyCheckpoint(prefix_uri));
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

absl::Status ConvertSafetensorsToBundle(absl::string_view src_path, absl::string_view dst_prefix,
                                        const ConvertOptions& options) {
  ASSIGN_OR_RETURN(Located src, Locate(src_path));
  ASSIGN_OR_RETURN(auto file, src.storage->NewReadableFile(src.name));
  ASSIGN_OR_RETURN(SafetensorsHeader header, ReadSafetensorsHeader(*file));
  ASSIGN_OR_RETURN(Located dst, Locate(dst_prefix));

  // Which tensors are slices of partitioned variables.
  struct Item {
    const SafetensorsTensor* t;
    bool sliced = false;
    std::vector<int64_t> full_shape;
    TensorSlice slice;
  };
  std::vector<Item> items;
  for (const SafetensorsTensor& t : header.tensors) {
    Item item{&t, false, {}, TensorSlice()};
    auto meta = header.metadata.find(SliceMetadataKey(t.name));
    if (meta != header.metadata.end()) {
      absl::Status s = ParseShapeAndSlice(meta->second, &item.full_shape, &item.slice);
      if (!s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(src_path, ": metadata ", meta->first, ": ",
                                                       s.message()));
      }
      if (item.slice.SliceShape(item.full_shape) != t.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            src_path, ": tensor \"", t.name, "\" has shape ", ShapeString(t.shape),
            " but its slice metadata \"", meta->second, "\" needs ",
            ShapeString(item.slice.SliceShape(item.full_shape))));
      }
      item.sliced = true;
    }
    items.push_back(std::move(item));
  }
  for (const auto& meta : header.metadata) {
    const std::string& key = meta.first;
    if (!absl::StartsWith(key, "cairn.slice.")) {
      Warn(options, absl::StrCat("metadata \"", key, "\" is not kept: bundles have no place for it"));
      if (options.strict) {
        return absl::FailedPreconditionError(
            absl::StrCat("metadata \"", key, "\" cannot be kept in a bundle (--strict)"));
      }
    } else if (std::none_of(header.tensors.begin(), header.tensors.end(),
                            [&](const SafetensorsTensor& t) { return SliceMetadataKey(t.name) == key; })) {
      return absl::InvalidArgumentError(
          absl::StrCat(src_path, ": metadata \"", key, "\" names no tensor in the file"));
    }
  }
  if (options.shards < 1) return absl::InvalidArgumentError("--shards must be at least 1");
  if (static_cast<size_t>(options.shards) > std::max<size_t>(items.size(), 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--shards=", options.shards, " but ", src_path,
                                                   " holds only ", items.size(), " tensors"));
  }

  // Balance by size: largest first onto the least-loaded shard; each shard
  // then writes its tensors in file order.
  std::vector<int> shard_of(items.size());
  {
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return items[a].t->end - items[a].t->begin > items[b].t->end - items[b].t->begin;
    });
    std::vector<uint64_t> load(static_cast<size_t>(options.shards));
    std::vector<int> count(static_cast<size_t>(options.shards));
    size_t remaining = items.size();
    for (size_t idx : order) {
      // Keep every shard non-empty: once the empty shards equal the tensors
      // left, the next tensor goes to an empty shard.
      const size_t empty = static_cast<size_t>(std::count(count.begin(), count.end(), 0));
      int best = 0;
      for (int s = 0; s < options.shards; ++s) {
        const bool s_ok = empty < remaining || count[s] == 0;
        const bool best_ok = empty < remaining || count[best] == 0;
        if (s_ok && (!best_ok || load[s] < load[best])) best = s;
      }
      shard_of[idx] = best;
      load[best] += items[idx].t->end - items[idx].t->begin;
      ++count[best];
      --remaining;
    }
  }

  std::vector<std::string> parts;
  if (options.shards == 1) {
    parts.push_back(dst.name);
  } else {
    for (int s = 0; s < options.shards; ++s) {
      parts.push_back(absl::StrFormat("%s_temp/part-%05d-of-%05d", dst.name, s, options.shards));
    }
  }
  uint64_t data_bytes = 0;
  for (const Item& item : items) data_bytes += item.t->end - item.t->begin;
  internal::ProgressCounter progress(options.progress, data_bytes);
  progress.Begin();
  constexpr size_t kChunk = 8 << 20;
  std::string buf;
  for (int s = 0; s < options.shards; ++s) {
    ASSIGN_OR_RETURN(auto writer, BundleWriter::Create(dst.storage.get(), parts[s]));
    for (size_t i = 0; i < items.size(); ++i) {
      if (shard_of[i] != s) continue;
      const Item& item = items[i];
      const SafetensorsTensor& t = *item.t;
      if (item.sliced) {
        RETURN_IF_ERROR(writer->BeginSlice(t.name, item.full_shape, item.slice, t.dtype));
      } else {
        RETURN_IF_ERROR(writer->BeginTensor(t.name, t.dtype, t.shape));
      }
      for (uint64_t pos = t.begin; pos < t.end;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, t.end - pos));
        buf.resize(n);
        RETURN_IF_ERROR(file->ReadAt(header.data_start + pos, n, buf.data()));
        RETURN_IF_ERROR(writer->AppendData(buf));
        pos += n;
        progress.Add(n);
      }
      RETURN_IF_ERROR(writer->EndTensor());
    }
    RETURN_IF_ERROR(writer->Finish());
  }
  if (options.shards > 1) {
    RETURN_IF_ERROR(MergeBundles(dst.storage.get(), parts, dst.name).status());
  }
  progress.Finish();
  return absl::OkStatus();
}

absl::Status ConvertBundleToSafetensors(absl::string_view src_prefix, absl::string_view dst_path,
                                        const ConvertOptions& options) {
  ASSIGN_OR_RETURN(Located src, Locate(src_prefix));
  ASSIGN_OR_RETURN(auto reader, BundleReader::Open(src.storage.get(), src.name));
  ASSIGN_OR_RETURN(std::vector<BundleEntry> entries, reader->ListTensors());

  struct Item {
    const BundleEntry* entry;
    TensorSlice box;  // what to read: the whole tensor or the stored box
    bool partial = false;
  };
  std::vector<SafetensorsTensor> infos;
  std::map<std::string, std::string> metadata;
  std::map<std::string, Item> items;
  for (const BundleEntry& e : entries) {
    if (SafetensorsName(e.data_type()).empty()) {
      const std::string msg = absl::StrCat("tensor \"", e.key, "\" (", DataTypeName(e.data_type()),
                                           ") cannot be stored in safetensors");
      if (options.strict) return absl::FailedPreconditionError(msg + " (--strict)");
      Warn(options, msg + "; skipped");
      continue;
    }
    Item item{&e, TensorSlice::Full(static_cast<int>(e.shape.size()))};
    if (e.is_sliced()) {
      // The bounding box of the stored slices; they form one box exactly
      // when its volume equals the sum of theirs (slices never overlap).
      const int rank = static_cast<int>(e.shape.size());
      std::vector<int64_t> lo(rank, INT64_MAX), hi(rank, 0);
      int64_t total = 0;
      for (const TensorSlice& s : e.slices) {
        int64_t n;
        NumElements(s.SliceShape(e.shape), &n);
        total += n;
        for (int d = 0; d < rank; ++d) {
          lo[d] = std::min(lo[d], s.StartOf(d));
          hi[d] = std::max(hi[d], s.StartOf(d) + s.LengthOf(d, e.shape));
        }
      }
      std::vector<Extent> extents(rank);
      std::vector<int64_t> box_shape(rank);
      for (int d = 0; d < rank; ++d) {
        box_shape[d] = hi[d] - lo[d];
        extents[d] = (lo[d] == 0 && hi[d] == e.shape[d]) ? Extent{} : Extent{lo[d], hi[d] - lo[d]};
      }
      int64_t volume;
      NumElements(box_shape, &volume);
      if (volume != total) {
        return absl::FailedPreconditionError(absl::StrCat(
            "tensor \"", e.key, "\": the checkpoint holds ", e.slices.size(),
            " slices of it that do not form one box; a safetensors file cannot hold them"));
      }
      item.box = TensorSlice(std::move(extents));
      item.partial = !item.box.CoversAll(e.shape);
      if (item.partial) {
        metadata[SliceMetadataKey(e.key)] = FormatShapeAndSlice(e.shape, item.box);
      }
    }
    SafetensorsTensor info;
    info.name = e.key;
    info.dtype = e.data_type();
    info.shape = item.box.SliceShape(e.shape);
    infos.push_back(std::move(info));
    items.emplace(e.key, item);
  }
  ASSIGN_OR_RETURN(std::string prefix, BuildSafetensorsPrefix(&infos, metadata));
  ASSIGN_OR_RETURN(Located dst, Locate(dst_path));
  ASSIGN_OR_RETURN(auto out, dst.storage->NewWritableFile(dst.name));
  RETURN_IF_ERROR(out->Append(prefix));
  uint64_t data_bytes = 0;
  for (const SafetensorsTensor& info : infos) data_bytes += info.end - info.begin;
  internal::ProgressCounter progress(options.progress, data_bytes);
  progress.Begin();
  for (const SafetensorsTensor& info : infos) {
    const Item& item = items.at(info.name);
    absl::StatusOr<Tensor> t = item.entry->is_sliced() ? reader->ReadSlice(info.name, item.box)
                                                       : reader->ReadEntry(*item.entry);
    if (!t.ok()) return t.status();
    if (t->data.size() != info.end - info.begin) {
      return absl::InternalError(absl::StrCat("tensor \"", info.name, "\": size mismatch"));
    }
    RETURN_IF_ERROR(out->Append(t->data.view()));
    progress.Add(info.end - info.begin);
  }
  RETURN_IF_ERROR(out->Close());
  progress.Finish();
  return absl::OkStatus();
}

}  // namespace cairn
