#include "storage/bundle/bundle_merge.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "storage/bundle/bundle_reader.h"
#include <openssl/evp.h>

#include "storage/bundle/crc32c.h"
#include "storage/bundle/internal/entry_codec.h"
#include "storage/bundle/internal/table.h"
#include "storage/status_macros.h"

namespace cairn {

absl::StatusOr<MergeResult> MergeBundles(Storage* storage,
                                         const std::vector<std::string>& input_prefixes,
                                         absl::string_view output_prefix) {
  if (input_prefixes.empty()) return absl::InvalidArgumentError("nothing to merge");
  std::map<std::string, BundleEntry> merged;
  std::map<std::string, int> file_ids;   // input data file → new shard id
  std::vector<std::string> files;        // by new shard id
  std::vector<std::string> unused_files; // data files of inputs without entries
  bool big_endian = false;

  for (size_t i = 0; i < input_prefixes.size(); ++i) {
    const std::string& in = input_prefixes[i];
    ASSIGN_OR_RETURN(auto reader, BundleReader::Open(storage, in));
    if (i == 0) {
      big_endian = reader->big_endian();
    } else if (reader->big_endian() != big_endian) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot merge ", in, ": its endianness differs from ", input_prefixes[0]));
    }
    std::vector<bool> shard_used(static_cast<size_t>(std::max(reader->num_shards(), 1)));
    RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) -> absl::Status {
      auto it = merged.find(e.key);
      if (it != merged.end()) {
        BundleEntry& existing = it->second;
        if (!existing.is_sliced() || !e.is_sliced()) {
          return absl::InvalidArgumentError(
              absl::StrCat("duplicate tensor \"", internal::PrintableKey(e.key),
                           "\" while merging ", in));
        }
        if (existing.dtype != e.dtype || existing.shape != e.shape) {
          return absl::InvalidArgumentError(absl::StrCat(
              "slices of tensor \"", e.key, "\" disagree on dtype or shape while merging ", in));
        }
        existing.slices.insert(existing.slices.end(), e.slices.begin(), e.slices.end());
        return absl::OkStatus();
      }
      const std::string file = DataFileName(in, e.shard_id, reader->num_shards());
      auto [fit, inserted] = file_ids.emplace(file, static_cast<int>(files.size()));
      if (inserted) files.push_back(file);
      shard_used[static_cast<size_t>(e.shard_id)] = true;
      BundleEntry copy = e;
      copy.shard_id = fit->second;
      merged.emplace(copy.key, std::move(copy));
      return absl::OkStatus();
    }));
    for (int s = 0; s < reader->num_shards(); ++s) {
      if (!shard_used[static_cast<size_t>(s)]) {
        unused_files.push_back(DataFileName(in, s, reader->num_shards()));
      }
    }
  }

  const int num_shards = static_cast<int>(files.size());
  for (int id = 0; id < num_shards; ++id) {
    RETURN_IF_ERROR(storage->Rename(files[id], DataFileName(output_prefix, id, num_shards)));
  }
  ASSIGN_OR_RETURN(auto index, storage->NewWritableFile(IndexFileName(output_prefix)));
  internal::TableBuilder table(internal::TableBuilder::Options(), index.get());
  internal::BundleHeader header;
  header.num_shards = num_shards;
  header.big_endian = big_endian;
  RETURN_IF_ERROR(table.Add("", internal::EncodeHeader(header)));
  for (const auto& [key, entry] : merged) {
    RETURN_IF_ERROR(table.Add(key, internal::EncodeEntry(entry)));
  }
  RETURN_IF_ERROR(table.Finish());
  RETURN_IF_ERROR(index->Close());

  // Best effort, as in TensorFlow: the merged checkpoint is complete already.
  for (const std::string& f : unused_files) storage->Delete(f).IgnoreError();
  for (const std::string& in : input_prefixes) {
    storage->Delete(IndexFileName(in)).IgnoreError();
    const size_t slash = in.rfind('/');
    if (slash != std::string::npos) storage->RemoveDirIfEmpty(in.substr(0, slash)).IgnoreError();
  }
  return MergeResult{num_shards, merged.size()};
}

namespace {

absl::StatusOr<MergedFile> Describe(Storage* storage, const std::string& path, bool with_crc) {
  MergedFile f;
  f.path = path;
  if (!with_crc) {
    ASSIGN_OR_RETURN(f.size, storage->FileSize(path));
    return f;
  }
  ASSIGN_OR_RETURN(auto file, storage->NewReadableFile(path));
  f.size = file->Size();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  std::string buf(static_cast<size_t>(std::min<uint64_t>(f.size, 1 << 20)), '\0');
  for (uint64_t off = 0; off < f.size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size - off));
    RETURN_IF_ERROR(file->ReadAt(off, n, buf.data()));
    f.crc32c = crc32c::Extend(f.crc32c, buf.data(), n);
    EVP_DigestUpdate(sha.get(), buf.data(), n);
    off += n;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &len);
  f.sha256.assign(reinterpret_cast<char*>(digest), len);
  return f;
}

}  // namespace

absl::StatusOr<std::vector<MergedFile>> MergeBundleParts(Storage* storage,
                                                         const std::vector<std::string>& parts,
                                                         absl::string_view output_prefix) {
  if (parts.empty()) return absl::InvalidArgumentError("nothing to merge");
  const int n = static_cast<int>(parts.size());
  const std::string out_index = IndexFileName(output_prefix);
  ASSIGN_OR_RETURN(bool merged_already, storage->Exists(out_index));
  if (!merged_already) {
    std::map<std::string, BundleEntry> merged;
    for (int i = 0; i < n; ++i) {
      ASSIGN_OR_RETURN(auto reader, BundleReader::Open(storage, parts[i]));
      if (reader->num_shards() > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("part ", parts[i], " has ", reader->num_shards(), " data files, not 1"));
      }
      RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) -> absl::Status {
        auto it = merged.find(e.key);
        if (it == merged.end()) {
          BundleEntry copy = e;
          copy.shard_id = i;
          merged.emplace(copy.key, std::move(copy));
          return absl::OkStatus();
        }
        BundleEntry& existing = it->second;
        if (!existing.is_sliced() || !e.is_sliced()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor \"", internal::PrintableKey(e.key), "\" is saved by more than one shard (",
              "again by shard ", i, " of ", n, ")"));
        }
        if (existing.dtype != e.dtype || existing.shape != e.shape) {
          return absl::InvalidArgumentError(absl::StrCat(
              "slices of tensor \"", e.key, "\" disagree on dtype or shape (shard ", i, ")"));
        }
        for (const TensorSlice& s : e.slices) {
          for (const TensorSlice& t : existing.slices) {
            TensorSlice overlap;
            if (TensorSlice::Intersect(s, t, e.shape, &overlap)) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "slice ", s.ToString(), " of tensor \"", e.key, "\" from shard ", i,
                  " overlaps slice ", t.ToString(), " saved by another shard"));
            }
          }
        }
        existing.slices.insert(existing.slices.end(), e.slices.begin(), e.slices.end());
        return absl::OkStatus();
      }));
    }
    // One batch: a local root syncs each directory once, not once per part.
    std::vector<std::pair<std::string, std::string>> moves;
    for (int i = 0; i < n; ++i) {
      const std::string src = DataFileName(parts[i], 0, 1);
      const std::string dst = DataFileName(output_prefix, i, n);
      ASSIGN_OR_RETURN(bool src_exists, storage->Exists(src));
      if (src_exists) {
        moves.emplace_back(src, dst);
      } else {
        ASSIGN_OR_RETURN(bool dst_exists, storage->Exists(dst));
        if (!dst_exists) {
          return absl::DataLossError(absl::StrCat("data file of part ", parts[i], " is missing"));
        }
      }
    }
    RETURN_IF_ERROR(storage->RenameMany(moves));
    ASSIGN_OR_RETURN(auto index, storage->NewWritableFile(out_index));
    internal::TableBuilder table(internal::TableBuilder::Options(), index.get());
    internal::BundleHeader header;
    header.num_shards = n;
    RETURN_IF_ERROR(table.Add("", internal::EncodeHeader(header)));
    for (const auto& [key, entry] : merged) {
      RETURN_IF_ERROR(table.Add(key, internal::EncodeEntry(entry)));
    }
    RETURN_IF_ERROR(table.Finish());
    RETURN_IF_ERROR(index->Close());
  }
  for (const std::string& part : parts) RETURN_IF_ERROR(storage->Delete(IndexFileName(part)));
  std::vector<MergedFile> files;
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(MergedFile f, Describe(storage, DataFileName(output_prefix, i, n), false));
    files.push_back(std::move(f));
  }
  ASSIGN_OR_RETURN(MergedFile index, Describe(storage, out_index, true));
  files.push_back(std::move(index));
  return files;
}

}  // namespace cairn
