// convert: safetensors <-> TensorFlow bundle, streaming tensor by tensor.
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


void Warn(const ConvertOptions& options, const std::string& msg) {
  if (options.warn) options.warn(msg);
}

}  // namespace

absl::Status ConvertSafetensorsToBundle(absl::string_view src_path, absl::string_view dst_prefix,
                                        const ConvertOptions& options) {
  ASSIGN_OR_RETURN(Located src, Locate(src_path, options.storage));
  ASSIGN_OR_RETURN(auto file, src.storage->NewReadableFile(src.name));
  ASSIGN_OR_RETURN(SafetensorsHeader header, ReadSafetensorsHeader(*file));
  ASSIGN_OR_RETURN(Located dst, Locate(dst_prefix, options.storage));

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
  ASSIGN_OR_RETURN(Located src, Locate(src_prefix, options.storage));
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
    ASSIGN_OR_RETURN(bool keep, KeepForSafetensors(e.key, e.data_type(), options.strict, options.warn));
    if (!keep) continue;
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
  ASSIGN_OR_RETURN(Located dst, Locate(dst_path, options.storage));
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
