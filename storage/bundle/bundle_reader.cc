#include "storage/bundle/bundle_reader.h"

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/internal/coding.h"
#include "storage/bundle/internal/entry_codec.h"
#include "storage/bundle/internal/table.h"
#include "storage/status_macros.h"

namespace cairn {
namespace {

void SwapBytes(char* data, size_t n, size_t unit) {
  if (unit <= 1) return;
  for (size_t i = 0; i + unit <= n; i += unit) std::reverse(data + i, data + i + unit);
}

}  // namespace

struct BundleReader::Rep {
  Storage* storage;
  std::string prefix;
  BundleReaderOptions options;
  std::unique_ptr<ReadableFile> index_file;
  std::unique_ptr<internal::Table> table;
  internal::BundleHeader header;
  mutable std::mutex mu;
  mutable std::vector<std::unique_ptr<ReadableFile>> data_files;  // GUARDED_BY(mu)
  mutable std::atomic<uint64_t> data_bytes_read{0};

  absl::StatusOr<const ReadableFile*> DataFile(int shard) const {
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = data_files[shard];
    if (!slot) {
      ASSIGN_OR_RETURN(slot, storage->NewReadableFile(
                                 DataFileName(prefix, shard, header.num_shards)));
    }
    return slot.get();
  }

  absl::StatusOr<BundleEntry> Lookup(absl::string_view key) const {
    std::string value;
    bool found = false;
    RETURN_IF_ERROR(table->Get(key, &value, &found));
    if (!found || key.empty()) {
      return absl::NotFoundError(absl::StrCat("tensor \"", internal::PrintableKey(key),
                                              "\" not found in checkpoint ", prefix));
    }
    BundleEntry entry;
    RETURN_IF_ERROR(DecodeWithFile(key, value, &entry));
    return entry;
  }

  absl::Status DecodeWithFile(absl::string_view key, absl::string_view value,
                              BundleEntry* entry) const {
    absl::Status s = internal::DecodeEntry(key, value, header.num_shards, entry);
    if (!s.ok()) return absl::DataLossError(absl::StrCat(s.message(), " (in ", index_file->name(), ")"));
    return absl::OkStatus();
  }

  absl::Status Corrupt(const BundleEntry& e, const ReadableFile& file, absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("tensor \"", internal::PrintableKey(e.key), "\" in ",
                                            file.name(), " at offset ", e.offset, ": ", what));
  }

  // The data file holding `e`, after checking that e's bytes lie within it.
  // Called before allocating anything sized by the (untrusted) entry.
  absl::StatusOr<const ReadableFile*> CheckExtent(const BundleEntry& e) const {
    ASSIGN_OR_RETURN(const ReadableFile* file, DataFile(e.shard_id));
    const uint64_t end = static_cast<uint64_t>(e.offset) + static_cast<uint64_t>(e.size);
    if (end > file->Size()) {
      return Corrupt(e, *file, absl::StrCat("entry of ", e.size, " bytes runs past the end of the ",
                                            file->Size(), "-byte data file"));
    }
    return file;
  }

  // Reads entry bytes with bounds checks; returns the file for messages.
  absl::StatusOr<const ReadableFile*> ReadRaw(const BundleEntry& e, char* dst) const {
    ASSIGN_OR_RETURN(const ReadableFile* file, CheckExtent(e));
    RETURN_IF_ERROR(file->ReadAt(static_cast<uint64_t>(e.offset), static_cast<size_t>(e.size), dst));
    data_bytes_read += static_cast<uint64_t>(e.size);
    return file;
  }

  // Reads an entry's bytes and returns their CRC32C. The bytes are read in
  // cache-sized chunks and each chunk is checksummed while it is still in the
  // CPU cache: reading and checking cost one pass over memory, not two (on a
  // warm page cache the copy and the CRC are both memory-bound).
  absl::StatusOr<uint32_t> ReadAndChecksum(const ReadableFile& file, const BundleEntry& e,
                                           char* dst) const {
    constexpr size_t kChunk = 256 << 10;
    const size_t size = static_cast<size_t>(e.size);
    const uint64_t offset = static_cast<uint64_t>(e.offset);
    data_bytes_read += size;
    if (!file.prefers_small_reads() || size <= kChunk) {
      RETURN_IF_ERROR(file.ReadAt(offset, size, dst));
      return crc32c::Value(dst, size);
    }
    uint32_t crc = 0;
    for (size_t begin = 0; begin < size; begin += kChunk) {
      const size_t len = std::min(kChunk, size - begin);
      RETURN_IF_ERROR(file.ReadAt(offset + begin, len, dst + begin));
      crc = crc32c::Extend(crc, dst + begin, len);
    }
    return crc;
  }

  // A fixed-size entry as a checked view of the mapped file. DataLoss if
  // corrupt; other errors mean the file cannot be mapped (read it instead).
  absl::StatusOr<Buffer> MapFixed(const BundleEntry& e, const ReadableFile& file) const {
    RETURN_IF_ERROR(CheckFixedSize(e));
    ASSIGN_OR_RETURN(std::shared_ptr<char> p,
                     file.MapRange(static_cast<uint64_t>(e.offset), static_cast<size_t>(e.size)));
    const size_t size = static_cast<size_t>(e.size);
    data_bytes_read += size;
    if (crc32c::Value(p.get(), size) != crc32c::Unmask(e.masked_crc32c)) {
      return Corrupt(e, file, "checksum does not match");
    }
    return Buffer(std::move(p), size);
  }

  // OK if the entry's size is what its shape and dtype take.
  absl::Status CheckFixedSize(const BundleEntry& e) const {
    const size_t elem = DataTypeSize(e.data_type());
    if (elem == 0) {
      return absl::UnimplementedError(absl::StrCat("tensor \"", internal::PrintableKey(e.key),
                                                   "\" has dtype ", DataTypeName(e.data_type()),
                                                   ", which this reader cannot read"));
    }
    int64_t elements, expected;
    if (!NumElements(e.shape, &elements) ||
        __builtin_mul_overflow(elements, static_cast<int64_t>(elem), &expected) ||
        expected != e.size) {
      return absl::DataLossError(absl::StrCat("tensor \"", internal::PrintableKey(e.key),
                                              "\": invalid size in bundle entry (", e.size,
                                              " bytes for shape and dtype ",
                                              DataTypeName(e.data_type()), ")"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadFixed(const BundleEntry& e, char* dst) const {
    RETURN_IF_ERROR(CheckFixedSize(e));
    ASSIGN_OR_RETURN(const ReadableFile* file, CheckExtent(e));
    ASSIGN_OR_RETURN(const uint32_t crc, ReadAndChecksum(*file, e, dst));
    if (crc != crc32c::Unmask(e.masked_crc32c)) {
      return Corrupt(e, *file, "checksum does not match");
    }
    if (header.big_endian) SwapBytes(dst, static_cast<size_t>(e.size), DataTypeSwapUnit(e.data_type()));
    return absl::OkStatus();
  }

  absl::Status ReadStrings(const BundleEntry& e, std::vector<std::string>* out) const {
    int64_t n;
    if (!NumElements(e.shape, &n)) return absl::DataLossError("bad string tensor shape");
    // Every element needs at least one varint byte, plus the 4-byte checksum.
    if (e.size < 4 || n > e.size - 4) {
      return absl::DataLossError(absl::StrCat("tensor \"", internal::PrintableKey(e.key),
                                              "\": string entry of ", e.size,
                                              " bytes cannot hold ", n, " elements"));
    }
    RETURN_IF_ERROR(CheckExtent(e).status());
    std::string buf(static_cast<size_t>(e.size), '\0');
    ASSIGN_OR_RETURN(const ReadableFile* file, ReadRaw(e, buf.data()));
    const char* p = buf.data();
    const char* limit = p + buf.size();
    std::vector<uint64_t> lengths(static_cast<size_t>(n));
    uint32_t crc = 0;
    uint64_t total = 0;
    for (int64_t i = 0; i < n; ++i) {
      p = internal::GetVarint64Ptr(p, limit, &lengths[i]);
      if (p == nullptr) return Corrupt(e, *file, "truncated string length");
      std::string image;
      if (lengths[i] <= 0xffffffffu) {
        internal::PutFixed32(&image, static_cast<uint32_t>(lengths[i]));
      } else {
        internal::PutFixed64(&image, lengths[i]);
      }
      crc = crc32c::Extend(crc, image.data(), image.size());
      if (__builtin_add_overflow(total, lengths[i], &total)) {
        return Corrupt(e, *file, "string lengths overflow");
      }
    }
    if (limit - p < 4) return Corrupt(e, *file, "truncated length checksum");
    if (crc32c::Unmask(internal::DecodeFixed32(p)) != crc) {
      return Corrupt(e, *file, "the length checksum does not match");
    }
    crc = crc32c::Extend(crc, p, 4);
    p += 4;
    if (total != static_cast<uint64_t>(limit - p)) {
      return Corrupt(e, *file, absl::StrCat("string lengths total ", total, " bytes but ",
                                            limit - p, " bytes are stored"));
    }
    crc = crc32c::Extend(crc, p, static_cast<size_t>(total));
    if (crc != crc32c::Unmask(e.masked_crc32c)) return Corrupt(e, *file, "checksum does not match");
    out->clear();
    out->reserve(static_cast<size_t>(n));
    for (uint64_t len : lengths) {
      out->emplace_back(p, static_cast<size_t>(len));
      p += len;
    }
    return absl::OkStatus();
  }
};

BundleReader::BundleReader(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
BundleReader::~BundleReader() = default;

absl::StatusOr<std::unique_ptr<BundleReader>> BundleReader::Open(
    Storage* storage, absl::string_view prefix, const BundleReaderOptions& options) {
  auto rep = std::make_unique<Rep>();
  rep->storage = storage;
  rep->prefix = std::string(prefix);
  rep->options = options;
  auto index = storage->NewReadableFile(IndexFileName(prefix));
  if (!index.ok()) {
    if (absl::IsNotFound(index.status())) {
      return absl::NotFoundError(absl::StrCat("no checkpoint at prefix ", prefix, " (",
                                              index.status().message(), ")"));
    }
    return index.status();
  }
  rep->index_file = std::move(index).value();
  ASSIGN_OR_RETURN(rep->table, internal::Table::Open(rep->index_file.get()));
  std::string header;
  bool found = false;
  RETURN_IF_ERROR(rep->table->Get("", &header, &found));
  if (!found) {
    return absl::DataLossError(absl::StrCat("corrupt index file ", rep->index_file->name(),
                                            ": no bundle header entry"));
  }
  absl::Status s = internal::DecodeHeader(header, &rep->header);
  if (!s.ok()) {
    return absl::DataLossError(
        absl::StrCat("corrupt index file ", rep->index_file->name(), ": ", s.message()));
  }
  if (rep->header.num_shards > 1 << 20) {
    return absl::DataLossError(absl::StrCat("corrupt index file ", rep->index_file->name(),
                                            ": implausible num_shards ", rep->header.num_shards));
  }
  rep->data_files.resize(static_cast<size_t>(std::max(rep->header.num_shards, 1)));
  return std::unique_ptr<BundleReader>(new BundleReader(std::move(rep)));
}

int BundleReader::num_shards() const { return rep_->header.num_shards; }
bool BundleReader::big_endian() const { return rep_->header.big_endian; }
const std::string& BundleReader::prefix() const { return rep_->prefix; }

absl::StatusOr<BundleEntry> BundleReader::Lookup(absl::string_view name) const {
  return rep_->Lookup(name);
}

absl::Status BundleReader::ForEachEntry(
    const std::function<absl::Status(const BundleEntry&)>& fn) const {
  auto it = rep_->table->NewIterator();
  RETURN_IF_ERROR(it->SeekToFirst());
  BundleEntry entry;
  while (it->Valid()) {
    if (!it->key().empty()) {
      RETURN_IF_ERROR(rep_->DecodeWithFile(it->key(), it->value(), &entry));
      RETURN_IF_ERROR(fn(entry));
    }
    RETURN_IF_ERROR(it->Next());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BundleEntry>> BundleReader::ListTensors() const {
  std::vector<BundleEntry> out;
  RETURN_IF_ERROR(ForEachEntry([&](const BundleEntry& e) {
    if (e.key[0] != '\0') out.push_back(e);
    return absl::OkStatus();
  }));
  return out;
}

absl::Status BundleReader::ReadEntryInto(const BundleEntry& entry, char* dst) const {
  return rep_->ReadFixed(entry, dst);
}

absl::StatusOr<Tensor> BundleReader::ReadEntry(const BundleEntry& entry) const {
  Tensor t;
  t.dtype = entry.data_type();
  t.shape = entry.shape;
  if (t.dtype == DataType::kString) {
    RETURN_IF_ERROR(rep_->ReadStrings(entry, &t.strings));
    return t;
  }
  if (DataTypeSize(t.dtype) > 0) {
    // A hostile size must not drive allocation: check it against the file.
    ASSIGN_OR_RETURN(const ReadableFile* file, rep_->CheckExtent(entry));
    if (rep_->options.map_files && !rep_->header.big_endian && entry.size > 0) {
      absl::StatusOr<Buffer> mapped = rep_->MapFixed(entry, *file);
      if (mapped.ok()) {
        t.data = *std::move(mapped);
        return t;
      }
      // Corruption is final; a file that cannot be mapped is read instead.
      if (absl::IsDataLoss(mapped.status())) return mapped.status();
    }
    t.data = Buffer(static_cast<size_t>(entry.size));
  }
  RETURN_IF_ERROR(rep_->ReadFixed(entry, t.data.data()));
  return t;
}

absl::StatusOr<Tensor> BundleReader::ReadTensor(absl::string_view name) const {
  ASSIGN_OR_RETURN(BundleEntry entry, Lookup(name));
  if (!entry.is_sliced()) return ReadEntry(entry);
  return ReadSlice(name, TensorSlice::Full(static_cast<int>(entry.shape.size())));
}

absl::StatusOr<Tensor> BundleReader::ReadSlice(absl::string_view name,
                                               const TensorSlice& slice) const {
  ASSIGN_OR_RETURN(BundleEntry entry, Lookup(name));
  absl::Status fits = slice.CheckFits(entry.shape);
  if (!fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested slice of tensor \"", name, "\": ", fits.message()));
  }
  if (!entry.is_sliced() && slice.CoversAll(entry.shape)) return ReadEntry(entry);
  const size_t elem = DataTypeSize(entry.data_type());
  if (elem == 0) {
    return absl::UnimplementedError(absl::StrCat("tensor \"", name, "\" of dtype ",
                                                 DataTypeName(entry.data_type()),
                                                 " cannot be read by slices"));
  }
  Tensor out;
  out.dtype = entry.data_type();
  out.shape = slice.SliceShape(entry.shape);
  int64_t want;
  NumElements(out.shape, &want);
  const TensorSlice full = TensorSlice::Full(static_cast<int>(entry.shape.size()));

  if (!entry.is_sliced()) {
    ASSIGN_OR_RETURN(Tensor whole, ReadEntry(entry));
    out.data = Buffer(static_cast<size_t>(want) * elem);
    CopySliceIntersection(whole.data.data(), full, out.data.data(), slice, entry.shape, elem);
    return out;
  }

  for (size_t i = 0; i < entry.slices.size(); ++i) {
    for (size_t j = i + 1; j < entry.slices.size(); ++j) {
      TensorSlice overlap;
      if (TensorSlice::Intersect(entry.slices[i], entry.slices[j], entry.shape, &overlap)) {
        return absl::DataLossError(absl::StrCat("tensor \"", name, "\" has overlapping slices ",
                                                entry.slices[i].ToString(), " and ",
                                                entry.slices[j].ToString(), " in ",
                                                rep_->index_file->name()));
      }
    }
  }
  // Find the stored slices that intersect the request; each contributes at
  // most its own elements, so the request is coverable only if they add up.
  std::vector<std::pair<const TensorSlice*, BundleEntry>> parts;
  int64_t available = 0;
  for (const TensorSlice& stored : entry.slices) {
    TensorSlice overlap;
    if (!TensorSlice::Intersect(stored, slice, entry.shape, &overlap)) continue;
    auto part_or = rep_->Lookup(EncodeSliceKey(name, stored));
    if (!part_or.ok()) {
      return absl::DataLossError(absl::StrCat("tensor \"", name, "\": the data of slice ",
                                              stored.ToString(), " is missing from ",
                                              rep_->index_file->name()));
    }
    BundleEntry& part = *part_or;
    if (part.dtype != entry.dtype || part.shape != stored.SliceShape(entry.shape)) {
      return absl::DataLossError(absl::StrCat("tensor \"", name, "\": slice ", stored.ToString(),
                                              " has a dtype or shape that disagrees with the tensor"));
    }
    int64_t overlap_elements;
    NumElements(overlap.SliceShape(entry.shape), &overlap_elements);
    available += overlap_elements;
    parts.emplace_back(&stored, std::move(part));
  }
  int64_t copied = 0;
  if (available == want) {
    out.data = Buffer(static_cast<size_t>(want) * elem);
    for (const auto& [stored, part] : parts) {
      ASSIGN_OR_RETURN(Tensor data, ReadEntry(part));
      copied += CopySliceIntersection(data.data.data(), *stored, out.data.data(), slice,
                                      entry.shape, elem);
    }
  } else {
    copied = available;
  }
  if (copied != want) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tensor \"", name, "\": the stored slices cover ", copied, " of the ", want,
        " elements of the requested slice ", slice.ToString(), " (checkpoint ", rep_->prefix,
        " holds only part of it)"));
  }
  return out;
}

uint64_t BundleReader::bytes_read() const {
  return rep_->table->bytes_read() + rep_->data_bytes_read.load();
}

}  // namespace cairn
