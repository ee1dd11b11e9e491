#include "storage/bundle/bundle_writer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"

#include "absl/strings/str_cat.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/internal/coding.h"
#include "storage/bundle/internal/entry_codec.h"
#include "storage/bundle/internal/table.h"
#include "storage/status_macros.h"
#include "storage/bundle/tensor.h"

namespace cairn {

// Hashes and compares positions in the entries by their keys, and keys
// given as string_views the same way (a set of positions, no key copies).
struct EntryKeyHash {
  using is_transparent = void;
  const std::vector<BundleEntry>* entries;
  size_t operator()(size_t i) const { return (*this)(absl::string_view((*entries)[i].key)); }
  size_t operator()(absl::string_view key) const { return absl::Hash<absl::string_view>()(key); }
};
struct EntryKeyEq {
  using is_transparent = void;
  const std::vector<BundleEntry>* entries;
  absl::string_view Key(size_t i) const { return (*entries)[i].key; }
  absl::string_view Key(absl::string_view key) const { return key; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const { return Key(a) == Key(b); }
};

struct BundleWriter::Rep {
  Storage* storage;
  std::string prefix;
  std::unique_ptr<WritableFile> data_file;
  absl::Status status;
  bool finished = false;
  // In the order added (sorted by key when the index is written), found by
  // key through `positions`: a state of 10,000 small tensors pays one
  // vector slot per entry, not a map node and its key copy.
  std::vector<BundleEntry> entries;
  absl::flat_hash_set<size_t, EntryKeyHash, EntryKeyEq> positions{
      0, EntryKeyHash{&entries}, EntryKeyEq{&entries}};
  uint32_t file_crc = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha{nullptr, EVP_MD_CTX_free};

  // The tensor being streamed (`current.key` is its key).
  bool in_tensor = false;
  BundleEntry current;
  uint32_t current_crc = 0;

  Rep() = default;
  Rep(const Rep&) = delete;  // `positions` points at `entries`
  Rep& operator=(const Rep&) = delete;

  BundleEntry* Find(absl::string_view key) {
    auto it = positions.find(key);
    return it == positions.end() ? nullptr : &entries[*it];
  }
  BundleEntry& Insert(BundleEntry entry) {
    entries.push_back(std::move(entry));
    positions.insert(entries.size() - 1);
    return entries.back();
  }

  absl::Status Fail(absl::Status s) {
    if (status.ok()) status = s;
    return status;
  }

  // Writes bytes whose CRC32C is `crc`, folding it into the file's CRC.
  absl::Status Write(absl::string_view bytes, uint32_t crc) {
    file_crc = crc32c::Combine(file_crc, crc, bytes.size());
    if (sha) EVP_DigestUpdate(sha.get(), bytes.data(), bytes.size());
    return data_file->Append(bytes);
  }
  absl::Status Write(absl::string_view bytes) {
    return Write(bytes, crc32c::Value(bytes.data(), bytes.size()));
  }

  absl::Status CheckNewKey(absl::string_view key, absl::string_view shown_name) {
    if (key.empty()) return absl::InvalidArgumentError("tensor name must not be empty");
    if (positions.contains(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("adding duplicate key: tensor \"", shown_name, "\" in ", prefix));
    }
    return absl::OkStatus();
  }

  absl::Status Begin(absl::string_view key, absl::string_view shown, DataType dtype,
                     const std::vector<int64_t>& shape) {
    if (in_tensor) {
      return absl::FailedPreconditionError(
          absl::StrCat("tensor \"", internal::PrintableKey(current.key), "\" is unfinished"));
    }
    if (DataTypeSize(dtype) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", shown, "\": dtype ",
                                                     DataTypeName(dtype),
                                                     " has no fixed element size"));
    }
    RETURN_IF_ERROR(CheckNewKey(key, shown));
    int64_t elements;
    if (!NumElements(shape, &elements)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", shown, "\": invalid or overflowing shape"));
    }
    int64_t bytes;
    if (__builtin_mul_overflow(elements, static_cast<int64_t>(DataTypeSize(dtype)), &bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", shown, "\" is too large"));
    }
    current = BundleEntry();
    current.key = std::string(key);
    current.dtype = static_cast<int32_t>(dtype);
    current.shape = shape;
    current.offset = static_cast<int64_t>(data_file->Size());
    current.size = bytes;
    current_crc = 0;
    in_tensor = true;
    return absl::OkStatus();
  }

  absl::Status Append(absl::string_view chunk) {
    if (!in_tensor) return absl::FailedPreconditionError("AppendData without BeginTensor");
    const int64_t written = static_cast<int64_t>(data_file->Size()) - current.offset;
    if (static_cast<int64_t>(chunk.size()) > current.size - written) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", internal::PrintableKey(current.key), "\": more than ",
                       current.size, " bytes of data for its shape"));
    }
    const uint32_t chunk_crc = crc32c::Value(chunk.data(), chunk.size());
    current_crc = crc32c::Combine(current_crc, chunk_crc, chunk.size());
    return Write(chunk, chunk_crc);
  }

  absl::Status Append(absl::Span<const absl::string_view> pieces) {
    if (!in_tensor) return absl::FailedPreconditionError("AppendData without BeginTensor");
    const int64_t written = static_cast<int64_t>(data_file->Size()) - current.offset;
    uint64_t n = 0;
    for (absl::string_view p : pieces) n += p.size();
    if (static_cast<int64_t>(n) > current.size - written) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", internal::PrintableKey(current.key), "\": more than ",
                       current.size, " bytes of data for its shape"));
    }
    // Checksummed and copied a cache-sized block at a time, so the bytes
    // come from memory once: the CRC pulls a block into cache, the copy
    // into the staging buffer reads it from there.
    constexpr size_t kBlock = 64 << 10;
    uint32_t crc = 0;
    for (absl::string_view p : pieces) {
      if (sha) EVP_DigestUpdate(sha.get(), p.data(), p.size());
      for (size_t off = 0; off < p.size(); off += kBlock) {
        const absl::string_view block = p.substr(off, kBlock);
        crc = crc32c::Extend(crc, block.data(), block.size());
        RETURN_IF_ERROR(data_file->Append(block));
      }
    }
    current_crc = crc32c::Combine(current_crc, crc, n);
    file_crc = crc32c::Combine(file_crc, crc, n);
    return absl::OkStatus();
  }

  absl::Status End() {
    if (!in_tensor) return absl::FailedPreconditionError("EndTensor without BeginTensor");
    const int64_t written = static_cast<int64_t>(data_file->Size()) - current.offset;
    if (written != current.size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", internal::PrintableKey(current.key), "\": got ", written,
          " bytes of data, its shape needs ", current.size));
    }
    current.masked_crc32c = crc32c::Mask(current_crc);
    in_tensor = false;
    Insert(std::move(current));
    return absl::OkStatus();
  }

  // Registers `slice` in the full entry of `name` (creating it).
  absl::Status RecordSlice(absl::string_view name, const std::vector<int64_t>& full_shape,
                           const TensorSlice& slice, DataType dtype) {
    BundleEntry* entry = Find(name);
    if (entry == nullptr) {
      BundleEntry full;
      full.key = std::string(name);
      full.dtype = static_cast<int32_t>(dtype);
      full.shape = full_shape;
      entry = &Insert(std::move(full));
    } else if (!entry->is_sliced()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" was added whole; cannot add a slice of it as well"));
    } else if (entry->dtype != static_cast<int32_t>(dtype) || entry->shape != full_shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "slice of tensor \"", name, "\" disagrees with earlier slices on dtype or shape"));
    }
    for (const TensorSlice& s : entry->slices) {
      TensorSlice overlap;
      if (TensorSlice::Intersect(s, slice, full_shape, &overlap)) {
        return absl::InvalidArgumentError(absl::StrCat("slice ", slice.ToString(),
                                                       " of tensor \"", name,
                                                       "\" overlaps slice ", s.ToString()));
      }
    }
    entry->slices.push_back(slice);
    return absl::OkStatus();
  }

  absl::Status BeginSlice(absl::string_view name, const std::vector<int64_t>& full_shape,
                          const TensorSlice& slice, DataType dtype) {
    if (name.empty()) return absl::InvalidArgumentError("tensor name must not be empty");
    absl::Status fits = slice.CheckFits(full_shape);
    if (!fits.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("slice of tensor \"", name, "\": ", fits.message()));
    }
    if (slice.CoversAll(full_shape)) return Begin(name, name, dtype, full_shape);
    const std::string key = EncodeSliceKey(name, slice);
    const std::string shown = absl::StrCat(name, "[", slice.ToString(), "]");
    RETURN_IF_ERROR(Begin(key, shown, dtype, slice.SliceShape(full_shape)));
    absl::Status s = RecordSlice(name, full_shape, slice, dtype);
    if (!s.ok()) in_tensor = false;
    return s;
  }
};

BundleWriter::BundleWriter(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
BundleWriter::~BundleWriter() {
  if (!rep_->finished) Abandon();
}

absl::StatusOr<std::unique_ptr<BundleWriter>> BundleWriter::Create(Storage* storage,
                                                                   absl::string_view prefix,
                                                                   const Options& options) {
  if (prefix.empty()) return absl::InvalidArgumentError("empty checkpoint prefix");
  auto rep = std::make_unique<Rep>();
  if (options.sha256) {
    rep->sha.reset(EVP_MD_CTX_new());
    EVP_DigestInit_ex(rep->sha.get(), EVP_sha256(), nullptr);
  }
  rep->storage = storage;
  rep->prefix = std::string(prefix);
  ASSIGN_OR_RETURN(rep->data_file, storage->NewWritableFile(DataFileName(prefix, 0, 1)));
  return std::unique_ptr<BundleWriter>(new BundleWriter(std::move(rep)));
}

absl::Status BundleWriter::Add(absl::string_view name, DataType dtype,
                               const std::vector<int64_t>& shape, absl::string_view data) {
  RETURN_IF_ERROR(BeginTensor(name, dtype, shape));
  RETURN_IF_ERROR(AppendData(data));
  return EndTensor();
}

absl::Status BundleWriter::BeginTensor(absl::string_view name, DataType dtype,
                                       const std::vector<int64_t>& shape) {
  if (!rep_->status.ok()) return rep_->status;
  if (rep_->finished) return absl::FailedPreconditionError("bundle already finished");
  return rep_->Fail(rep_->Begin(name, name, dtype, shape));
}

absl::Status BundleWriter::BeginSlice(absl::string_view name,
                                      const std::vector<int64_t>& full_shape,
                                      const TensorSlice& slice, DataType dtype) {
  if (!rep_->status.ok()) return rep_->status;
  if (rep_->finished) return absl::FailedPreconditionError("bundle already finished");
  return rep_->Fail(rep_->BeginSlice(name, full_shape, slice, dtype));
}

absl::Status BundleWriter::AppendData(absl::string_view chunk) {
  if (!rep_->status.ok()) return rep_->status;
  return rep_->Fail(rep_->Append(chunk));
}

absl::Status BundleWriter::AppendData(absl::Span<const absl::string_view> pieces) {
  if (!rep_->status.ok()) return rep_->status;
  return rep_->Fail(rep_->Append(pieces));
}

absl::Status BundleWriter::EndTensor() {
  if (!rep_->status.ok()) return rep_->status;
  return rep_->Fail(rep_->End());
}

absl::Status BundleWriter::AddSlice(absl::string_view name,
                                    const std::vector<int64_t>& full_shape,
                                    const TensorSlice& slice, DataType dtype,
                                    absl::string_view data) {
  RETURN_IF_ERROR(BeginSlice(name, full_shape, slice, dtype));
  RETURN_IF_ERROR(AppendData(data));
  return EndTensor();
}

absl::Status BundleWriter::AddString(absl::string_view name, const std::vector<int64_t>& shape,
                                     const std::vector<std::string>& values) {
  Rep* r = rep_.get();
  if (!r->status.ok()) return r->status;
  if (r->in_tensor) return r->Fail(absl::FailedPreconditionError("a tensor is unfinished"));
  RETURN_IF_ERROR(r->Fail(r->CheckNewKey(name, name)));
  int64_t elements;
  if (!NumElements(shape, &elements) || elements != static_cast<int64_t>(values.size())) {
    return r->Fail(absl::InvalidArgumentError(absl::StrCat(
        "string tensor \"", name, "\": ", values.size(), " values do not fit its shape")));
  }
  // Layout (spec §7.3): varint lengths, masked CRC of the lengths (each fed
  // as uint32 LE, or uint64 when larger), then the bytes. The entry CRC
  // covers the same length images, the stored checksum, and the bytes.
  std::string header;
  uint32_t length_crc = 0;
  for (const std::string& v : values) {
    internal::PutVarint64(&header, v.size());
    std::string image;
    if (v.size() <= 0xffffffffu) {
      internal::PutFixed32(&image, static_cast<uint32_t>(v.size()));
    } else {
      internal::PutFixed64(&image, v.size());
    }
    length_crc = crc32c::Extend(length_crc, image.data(), image.size());
  }
  uint32_t entry_crc = length_crc;
  std::string stored;
  internal::PutFixed32(&stored, crc32c::Mask(length_crc));
  entry_crc = crc32c::Extend(entry_crc, stored.data(), 4);
  header += stored;

  BundleEntry e;
  e.key = std::string(name);
  e.dtype = static_cast<int32_t>(DataType::kString);
  e.shape = shape;
  e.offset = static_cast<int64_t>(r->data_file->Size());
  int64_t size = static_cast<int64_t>(header.size());
  RETURN_IF_ERROR(r->Fail(r->Write(header)));
  for (const std::string& v : values) {
    entry_crc = crc32c::Extend(entry_crc, v.data(), v.size());
    size += static_cast<int64_t>(v.size());
    RETURN_IF_ERROR(r->Fail(r->Write(v)));
  }
  e.size = size;
  e.masked_crc32c = crc32c::Mask(entry_crc);
  r->Insert(std::move(e));
  return absl::OkStatus();
}

absl::Status BundleWriter::Finish() {
  Rep* r = rep_.get();
  if (r->finished) return absl::FailedPreconditionError("bundle already finished");
  if (r->status.ok() && r->in_tensor) {
    r->status = (absl::FailedPreconditionError(absl::StrCat(
        "Finish with tensor \"", internal::PrintableKey(r->current.key), "\" unfinished")));
  }
  if (!r->status.ok()) {
    Abandon();
    return r->status;
  }
  r->finished = true;
  absl::Status s = r->data_file->Close();
  if (s.ok()) {
    auto index_or = r->storage->NewWritableFile(IndexFileName(r->prefix));
    if (!index_or.ok()) {
      s = index_or.status();
    } else {
      std::unique_ptr<WritableFile> index = std::move(index_or).value();
      internal::TableBuilder table(internal::TableBuilder::Options(), index.get());
      internal::BundleHeader header;
      header.num_shards = 1;
      s = table.Add("", internal::EncodeHeader(header));
      // The index is in bytewise key order (std::string's < compares
      // characters as unsigned char); the views sort without touching the
      // entries.
      std::vector<std::pair<absl::string_view, const BundleEntry*>> sorted;
      sorted.reserve(r->entries.size());
      for (const BundleEntry& e : r->entries) sorted.emplace_back(e.key, &e);
      std::sort(sorted.begin(), sorted.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      std::string value;
      for (size_t i = 0; s.ok() && i < sorted.size(); ++i) {
        internal::EncodeEntry(*sorted[i].second, &value);
        s = table.Add(sorted[i].first, value);
      }
      if (s.ok()) s = table.Finish();
      if (s.ok()) s = index->Close();
      if (!s.ok()) index->Abandon();
    }
  }
  if (!s.ok()) {
    r->status = s;
    r->data_file->Abandon();
    r->storage->Delete(DataFileName(r->prefix, 0, 1)).IgnoreError();
  }
  return s;
}

void BundleWriter::Abandon() {
  if (rep_->finished && rep_->status.ok()) return;
  rep_->finished = true;
  if (rep_->status.ok()) rep_->status = absl::AbortedError("bundle abandoned");
  rep_->data_file->Abandon();
}

absl::Status BundleWriter::status() const { return rep_->status; }
uint64_t BundleWriter::data_bytes() const { return rep_->data_file->Size(); }
size_t BundleWriter::num_entries() const { return rep_->entries.size(); }
uint64_t BundleWriter::tensor_bytes_left() const {
  if (!rep_->in_tensor) return 0;
  return static_cast<uint64_t>(rep_->current.size -
                               (static_cast<int64_t>(rep_->data_file->Size()) - rep_->current.offset));
}
uint32_t BundleWriter::data_crc32c() const { return rep_->file_crc; }

std::string BundleWriter::data_sha256() const {
  if (!rep_->sha) return "";
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> copy(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_MD_CTX_copy_ex(copy.get(), rep_->sha.get());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(copy.get(), digest, &len);
  return std::string(reinterpret_cast<char*>(digest), len);
}

}  // namespace cairn
