#include "storage/bundle/bundle_merge.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

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
  std::vector<std::pair<std::string, std::string>> moves;
  for (int id = 0; id < num_shards; ++id) {
    moves.emplace_back(files[id], DataFileName(output_prefix, id, num_shards));
  }
  RETURN_IF_ERROR(storage->RenameMany(moves));
  ASSIGN_OR_RETURN(auto index, storage->NewWritableFile(IndexFileName(output_prefix)));
  internal::TableBuilder table(internal::TableBuilder::Options(), index.get());
  internal::BundleHeader header;
  header.num_shards = num_shards;
  header.big_endian = big_endian;
  RETURN_IF_ERROR(table.Add("", internal::EncodeHeader(header)));
  std::string value;
  for (const auto& [key, entry] : merged) {
    internal::EncodeEntry(entry, &value);
    RETURN_IF_ERROR(table.Add(key, value));
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

namespace {

// Index files are read block by block above this size (a merge holds at
// most kMergeFanIn of them open): memory stays bounded whatever the parts.
constexpr uint64_t kMergeReadWholeBelow = 256 << 10;

// The entries of one index file in key order (the header skipped), decoded.
// A part's entries are given shard id `part` (its data file becomes that
// shard); a run written by an earlier pass keeps its shard ids.
class EntryCursor {
 public:
  static absl::StatusOr<std::unique_ptr<EntryCursor>> Open(Storage* storage, const std::string& index,
                                                           int part, int num_shards) {
    auto c = std::unique_ptr<EntryCursor>(new EntryCursor());
    c->part_ = part;
    ASSIGN_OR_RETURN(c->file_, storage->NewReadableFile(index));
    ASSIGN_OR_RETURN(c->table_, internal::Table::Open(c->file_.get(), kMergeReadWholeBelow));
    std::string header_bytes;
    bool found = false;
    RETURN_IF_ERROR(c->table_->Get("", &header_bytes, &found));
    if (!found) return absl::DataLossError(absl::StrCat(index, ": no bundle header entry"));
    internal::BundleHeader header;
    RETURN_IF_ERROR(internal::DecodeHeader(header_bytes, &header));
    if (part >= 0 && header.num_shards > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("part ", index, " has ", header.num_shards, " data files, not 1"));
    }
    c->num_shards_ = part >= 0 ? std::max(header.num_shards, 1) : num_shards;
    c->it_ = c->table_->NewIterator();
    RETURN_IF_ERROR(c->it_->SeekToFirst());
    RETURN_IF_ERROR(c->Load());
    return c;
  }

  bool Valid() const { return it_->Valid(); }
  const BundleEntry& entry() const { return entry_; }
  int part() const { return part_; }
  absl::Status Next() {
    RETURN_IF_ERROR(it_->Next());
    return Load();
  }

 private:
  EntryCursor() = default;
  absl::Status Load() {
    if (it_->Valid() && it_->key().empty()) RETURN_IF_ERROR(it_->Next());  // the header
    if (!it_->Valid()) return absl::OkStatus();
    absl::Status s = internal::DecodeEntry(it_->key(), it_->value(), num_shards_, &entry_);
    if (!s.ok()) return absl::DataLossError(absl::StrCat(s.message(), " (in ", file_->name(), ")"));
    if (part_ >= 0) entry_.shard_id = part_;
    return absl::OkStatus();
  }

  int part_ = -1;
  int num_shards_ = 1;
  std::unique_ptr<ReadableFile> file_;
  std::unique_ptr<internal::Table> table_;
  std::unique_ptr<internal::Table::Iterator> it_;
  BundleEntry entry_;
};

// Joins `e` into `merged`, an entry of the same key from another part: only
// slices of one partitioned tensor may meet, agreeing on dtype and shape and
// not overlapping.
absl::Status Join(const BundleEntry& e, int n, BundleEntry* merged) {
  if (!merged->is_sliced() || !e.is_sliced()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", internal::PrintableKey(e.key), "\" is saved by more than one shard (",
        "again by shard ", e.shard_id, " of ", n, ")"));
  }
  if (merged->dtype != e.dtype || merged->shape != e.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slices of tensor \"", e.key, "\" disagree on dtype or shape (shard ", e.shard_id, ")"));
  }
  for (const TensorSlice& s : e.slices) {
    for (const TensorSlice& t : merged->slices) {
      TensorSlice overlap;
      if (TensorSlice::Intersect(s, t, e.shape, &overlap)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice ", s.ToString(), " of tensor \"", e.key, "\" from shard ", e.shard_id,
            " overlaps slice ", t.ToString(), " saved by another shard"));
      }
    }
  }
  merged->slices.insert(merged->slices.end(), e.slices.begin(), e.slices.end());
  return absl::OkStatus();
}

// Writes the k-way merge of `cursors` (each in key order) to `out_path` as
// an index of `n` shards: one entry per key, slices of a partitioned tensor
// joined. Holds one entry per cursor.
absl::Status MergeCursors(Storage* storage, std::vector<std::unique_ptr<EntryCursor>> cursors, int n,
                          const std::string& out_path) {
  auto later = [&cursors](size_t a, size_t b) {  // min-heap on (key, part order)
    const BundleEntry& x = cursors[a]->entry();
    const BundleEntry& y = cursors[b]->entry();
    return x.key != y.key ? x.key > y.key : a > b;
  };
  std::vector<size_t> heap;
  for (size_t i = 0; i < cursors.size(); ++i) {
    if (cursors[i]->Valid()) heap.push_back(i);
  }
  std::make_heap(heap.begin(), heap.end(), later);
  ASSIGN_OR_RETURN(auto index, storage->NewWritableFile(out_path));
  internal::TableBuilder table(internal::TableBuilder::Options(), index.get());
  internal::BundleHeader header;
  header.num_shards = n;
  RETURN_IF_ERROR(table.Add("", internal::EncodeHeader(header)));
  std::string value;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    size_t top = heap.back();
    heap.pop_back();
    BundleEntry merged = cursors[top]->entry();
    auto advance = [&](size_t i) -> absl::Status {
      RETURN_IF_ERROR(cursors[i]->Next());
      if (cursors[i]->Valid()) {
        heap.push_back(i);
        std::push_heap(heap.begin(), heap.end(), later);
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(advance(top));
    while (!heap.empty() && cursors[heap.front()]->entry().key == merged.key) {
      std::pop_heap(heap.begin(), heap.end(), later);
      top = heap.back();
      heap.pop_back();
      RETURN_IF_ERROR(Join(cursors[top]->entry(), n, &merged));
      RETURN_IF_ERROR(advance(top));
    }
    internal::EncodeEntry(merged, &value);
    RETURN_IF_ERROR(table.Add(merged.key, value));
  }
  RETURN_IF_ERROR(table.Finish());
  return index->Close();
}

}  // namespace

absl::StatusOr<std::vector<MergedFile>> MergeBundleParts(Storage* storage,
                                                         const std::vector<std::string>& parts,
                                                         absl::string_view output_prefix,
                                                         int fan_in) {
  if (parts.empty()) return absl::InvalidArgumentError("nothing to merge");
  if (fan_in < 2) return absl::InvalidArgumentError("merge fan-in must be at least 2");
  const int n = static_cast<int>(parts.size());
  const std::string out_index = IndexFileName(output_prefix);
  ASSIGN_OR_RETURN(bool merged_already, storage->Exists(out_index));
  if (!merged_already) {
    // Passes of at most `fan_in` sorted inputs each: the parts' indexes,
    // then the runs of the pass before, until one is left: the index.
    struct Input {
      std::string index;
      int part;  // -1: a run of an earlier pass
    };
    std::vector<Input> inputs;
    for (int i = 0; i < n; ++i) inputs.push_back({IndexFileName(parts[i]), i});
    std::vector<std::string> runs;  // written so far, deleted at the end
    if (n == 1) {
      // One part's index already is the merged index, byte for byte (one
      // data file in its header, every entry in shard 0; bundle_test checks
      // it): published as it is once its header says it is a part, instead
      // of decoding and encoding every entry of a 10,000-tensor state_dict.
      RETURN_IF_ERROR(EntryCursor::Open(storage, inputs[0].index, 0, 1).status());
      runs.push_back(inputs[0].index);
    }
    for (int pass = 0; n > 1; ++pass) {
      std::vector<Input> next;
      const bool last = static_cast<int>(inputs.size()) <= fan_in;
      for (size_t g = 0; g < inputs.size(); g += static_cast<size_t>(fan_in)) {
        std::vector<std::unique_ptr<EntryCursor>> cursors;
        for (size_t i = g; i < std::min(inputs.size(), g + static_cast<size_t>(fan_in)); ++i) {
          ASSIGN_OR_RETURN(auto c, EntryCursor::Open(storage, inputs[i].index, inputs[i].part, n));
          cursors.push_back(std::move(c));
        }
        const std::string out =
            last ? absl::StrCat(output_prefix, ".merging.index")
                 : absl::StrCat(output_prefix, ".run-", pass, "-", g / static_cast<size_t>(fan_in), ".index");
        RETURN_IF_ERROR(MergeCursors(storage, std::move(cursors), n, out));
        runs.push_back(out);
        next.push_back({out, -1});
      }
      if (last) break;
      inputs = std::move(next);
    }
    // The data files, then the index under its name (atomic): a merge
    // interrupted before this point starts again from the parts.
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
    // One batch: a local root syncs each directory once, not once per part.
    RETURN_IF_ERROR(storage->RenameMany(moves));
    RETURN_IF_ERROR(storage->Rename(runs.back(), out_index));
    runs.pop_back();
    for (const std::string& run : runs) storage->Delete(run).IgnoreError();
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
