#include "storage/bundle/internal/table.h"

#include <snappy.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/internal/coding.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

// ---------------------------------------------------------------- writing

class BlockBuilder {
 public:
  explicit BlockBuilder(int restart_interval) : restart_interval_(restart_interval) {
    restarts_.push_back(0);
  }

  void Reset() {
    buffer_.clear();
    restarts_.assign(1, 0);
    counter_ = 0;
    last_key_.clear();
    empty_ = true;
  }

  void Add(absl::string_view key, absl::string_view value) {
    size_t shared = 0;
    if (counter_ < restart_interval_) {
      const size_t min_len = std::min(last_key_.size(), key.size());
      while (shared < min_len && last_key_[shared] == key[shared]) ++shared;
    } else {
      restarts_.push_back(static_cast<uint32_t>(buffer_.size()));
      counter_ = 0;
    }
    const size_t non_shared = key.size() - shared;
    PutVarint32(&buffer_, static_cast<uint32_t>(shared));
    PutVarint32(&buffer_, static_cast<uint32_t>(non_shared));
    PutVarint32(&buffer_, static_cast<uint32_t>(value.size()));
    buffer_.append(key.data() + shared, non_shared);
    buffer_.append(value.data(), value.size());
    last_key_.assign(key.data(), key.size());
    ++counter_;
    empty_ = false;
  }

  // Appends the restart array; the returned view is valid until Reset().
  absl::string_view Finish() {
    for (uint32_t r : restarts_) PutFixed32(&buffer_, r);
    PutFixed32(&buffer_, static_cast<uint32_t>(restarts_.size()));
    return buffer_;
  }

  size_t CurrentSizeEstimate() const { return buffer_.size() + restarts_.size() * 4 + 4; }
  bool empty() const { return empty_; }

 private:
  const int restart_interval_;
  std::string buffer_;
  std::vector<uint32_t> restarts_;
  int counter_ = 0;
  std::string last_key_;
  bool empty_ = true;
};

void EncodeHandle(const BlockHandle& h, std::string* dst) {
  PutVarint64(dst, h.offset);
  PutVarint64(dst, h.size);
}

}  // namespace

void FindShortestSeparator(std::string* start, absl::string_view limit) {
  const size_t min_len = std::min(start->size(), limit.size());
  size_t diff = 0;
  while (diff < min_len && (*start)[diff] == limit[diff]) ++diff;
  if (diff >= min_len) return;  // one is a prefix of the other
  const auto byte = static_cast<unsigned char>((*start)[diff]);
  if (byte < 0xff && byte + 1 < static_cast<unsigned char>(limit[diff])) {
    (*start)[diff] = static_cast<char>(byte + 1);
    start->resize(diff + 1);
  }
}

void FindShortSuccessor(std::string* key) {
  for (size_t i = 0; i < key->size(); ++i) {
    const auto byte = static_cast<unsigned char>((*key)[i]);
    if (byte != 0xff) {
      (*key)[i] = static_cast<char>(byte + 1);
      key->resize(i + 1);
      return;
    }
  }
}

struct TableBuilder::Rep {
  Rep(const Options& o, WritableFile* f)
      : options(o), file(f), data_block(o.restart_interval), index_block(1) {}
  Options options;
  WritableFile* file;
  uint64_t offset = 0;
  absl::Status status;
  BlockBuilder data_block;
  BlockBuilder index_block;
  std::string last_key;
  uint64_t num_entries = 0;
  bool closed = false;
  // An index entry for the last flushed block is emitted lazily, once the
  // next key is known, so the separator can be short.
  bool pending_index_entry = false;
  BlockHandle pending_handle;
  std::string compressed;

  absl::Status WriteBlock(BlockBuilder* block, BlockHandle* handle) {
    absl::string_view raw = block->Finish();
    absl::string_view contents = raw;
    char type = kNoCompression;
    if (options.snappy) {
      compressed.clear();
      snappy::Compress(raw.data(), raw.size(), &compressed);
      if (compressed.size() < raw.size() - raw.size() / 8) {
        contents = compressed;
        type = kSnappyCompression;
      }
    }
    handle->offset = offset;
    handle->size = contents.size();
    RETURN_IF_ERROR(file->Append(contents));
    char trailer[kBlockTrailerSize];
    trailer[0] = type;
    uint32_t crc = crc32c::Extend(crc32c::Value(contents.data(), contents.size()), &type, 1);
    std::string masked;
    PutFixed32(&masked, crc32c::Mask(crc));
    std::memcpy(trailer + 1, masked.data(), 4);
    RETURN_IF_ERROR(file->Append(absl::string_view(trailer, kBlockTrailerSize)));
    offset += contents.size() + kBlockTrailerSize;
    block->Reset();
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (data_block.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(WriteBlock(&data_block, &pending_handle));
    pending_index_entry = true;
    return absl::OkStatus();
  }
};

TableBuilder::TableBuilder(const Options& options, WritableFile* file)
    : rep_(std::make_unique<Rep>(options, file)) {}
TableBuilder::~TableBuilder() = default;

absl::Status TableBuilder::Add(absl::string_view key, absl::string_view value) {
  Rep* r = rep_.get();
  if (!r->status.ok()) return r->status;
  if (r->closed) return r->status = absl::FailedPreconditionError("table already finished");
  if (r->num_entries > 0) {
    if (key <= absl::string_view(r->last_key)) {
      return r->status = absl::InvalidArgumentError(
                 absl::StrCat("table keys out of order: \"", absl::CEscape(key),
                              "\" after \"", absl::CEscape(r->last_key), "\""));
    }
    // TensorFlow's addition: an entry at least twice the block size starts a
    // block of its own.
    if (key.size() + value.size() >= 2 * r->options.block_size) {
      if (!(r->status = r->Flush()).ok()) return r->status;
    }
  }
  if (r->pending_index_entry) {
    FindShortestSeparator(&r->last_key, key);
    std::string handle;
    EncodeHandle(r->pending_handle, &handle);
    r->index_block.Add(r->last_key, handle);
    r->pending_index_entry = false;
  }
  r->last_key.assign(key.data(), key.size());
  ++r->num_entries;
  r->data_block.Add(key, value);
  if (r->data_block.CurrentSizeEstimate() >= r->options.block_size) {
    r->status = r->Flush();
  }
  return r->status;
}

absl::Status TableBuilder::Finish() {
  Rep* r = rep_.get();
  if (!r->status.ok()) return r->status;
  if (r->closed) return absl::FailedPreconditionError("table already finished");
  r->closed = true;
  RETURN_IF_ERROR(r->status = r->Flush());
  BlockHandle metaindex_handle, index_handle;
  BlockBuilder metaindex(r->options.restart_interval);
  RETURN_IF_ERROR(r->status = r->WriteBlock(&metaindex, &metaindex_handle));
  if (r->pending_index_entry) {
    FindShortSuccessor(&r->last_key);
    std::string handle;
    EncodeHandle(r->pending_handle, &handle);
    r->index_block.Add(r->last_key, handle);
    r->pending_index_entry = false;
  }
  RETURN_IF_ERROR(r->status = r->WriteBlock(&r->index_block, &index_handle));
  std::string footer;
  EncodeHandle(metaindex_handle, &footer);
  EncodeHandle(index_handle, &footer);
  footer.resize(kFooterSize - 8, '\0');
  PutFixed32(&footer, static_cast<uint32_t>(kTableMagicNumber & 0xffffffffu));
  PutFixed32(&footer, static_cast<uint32_t>(kTableMagicNumber >> 32));
  RETURN_IF_ERROR(r->status = r->file->Append(footer));
  r->offset += footer.size();
  return absl::OkStatus();
}

uint64_t TableBuilder::num_entries() const { return rep_->num_entries; }
uint64_t TableBuilder::file_size() const { return rep_->offset; }

// ---------------------------------------------------------------- reading

namespace {

// Whether a block's CRC must match. Only a fuzzing build (CMakeLists.txt,
// CAIRN_FUZZ) turns this off: a mutated input almost never keeps a CRC
// valid, so with the check on the fuzzer could not get past it to the block,
// Snappy and entry parsers. Such a build must never read real files.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kVerifyBlockCrc = false;
#else
constexpr bool kVerifyBlockCrc = true;
#endif

// A decoded (uncompressed, CRC-checked) block.
struct Block {
  std::string data;
  uint32_t restart_offset = 0;  // start of the restart array
  uint32_t num_restarts = 0;

  uint32_t RestartPoint(uint32_t i) const {
    return DecodeFixed32(data.data() + restart_offset + 4 * i);
  }
};

// Decodes one entry's header at `p`; returns the position of the key suffix.
const char* DecodeEntry(const char* p, const char* limit, uint32_t* shared,
                        uint32_t* non_shared, uint32_t* value_len) {
  if ((p = GetVarint32Ptr(p, limit, shared)) == nullptr) return nullptr;
  if ((p = GetVarint32Ptr(p, limit, non_shared)) == nullptr) return nullptr;
  if ((p = GetVarint32Ptr(p, limit, value_len)) == nullptr) return nullptr;
  if (static_cast<uint64_t>(limit - p) < static_cast<uint64_t>(*non_shared) + *value_len) {
    return nullptr;
  }
  return p;
}

// Iterates one block, checking every entry's bounds and key order.
class BlockIter {
 public:
  BlockIter(std::shared_ptr<const Block> block, const std::string* file_name)
      : block_(std::move(block)), file_name_(file_name) {}

  bool Valid() const { return valid_; }
  absl::string_view key() const { return key_; }
  absl::string_view value() const { return value_; }

  absl::Status SeekToFirst() { return SeekToRestart(0); }

  absl::Status Next() {
    const char* base = block_->data.data();
    const char* limit = base + block_->restart_offset;
    const char* p = base + next_;
    if (p >= limit) {
      valid_ = false;
      return absl::OkStatus();
    }
    uint32_t shared, non_shared, value_len;
    const char* q = DecodeEntry(p, limit, &shared, &non_shared, &value_len);
    if (q == nullptr || shared > key_.size() || (!valid_ && shared != 0)) {
      return Corrupt("bad entry in block");
    }
    // The new key shares key_[0, shared); it sorts after key_ iff its suffix
    // sorts after the rest of key_.
    if (valid_ && !(absl::string_view(q, non_shared) > absl::string_view(key_).substr(shared))) {
      return Corrupt("keys out of order in block");
    }
    key_.resize(shared);
    key_.append(q, non_shared);
    value_ = absl::string_view(q + non_shared, value_len);
    next_ = static_cast<uint32_t>((q + non_shared + value_len) - base);
    valid_ = true;
    return absl::OkStatus();
  }

  // Positions at the first key >= target: binary search over restart points
  // (whose keys are stored whole), then a linear scan.
  absl::Status Seek(absl::string_view target) {
    uint32_t left = 0, right = block_->num_restarts - 1;
    while (left < right) {
      const uint32_t mid = left + (right - left + 1) / 2;
      absl::string_view mid_key;
      RETURN_IF_ERROR(RestartKey(mid, &mid_key));
      if (mid_key < target) {
        left = mid;
      } else {
        right = mid - 1;
      }
    }
    RETURN_IF_ERROR(SeekToRestart(left));
    while (valid_ && absl::string_view(key_) < target) RETURN_IF_ERROR(Next());
    return absl::OkStatus();
  }

 private:
  absl::Status RestartKey(uint32_t index, absl::string_view* key) {
    const uint32_t offset = block_->RestartPoint(index);
    const char* base = block_->data.data();
    const char* limit = base + block_->restart_offset;
    if (offset >= block_->restart_offset) return Corrupt("bad restart point");
    uint32_t shared, non_shared, value_len;
    const char* q = DecodeEntry(base + offset, limit, &shared, &non_shared, &value_len);
    if (q == nullptr || shared != 0) return Corrupt("bad restart entry");
    *key = absl::string_view(q, non_shared);
    return absl::OkStatus();
  }

  absl::Status SeekToRestart(uint32_t index) {
    valid_ = false;
    key_.clear();
    next_ = block_->RestartPoint(index);
    if (next_ > block_->restart_offset) return Corrupt("bad restart point");
    return Next();
  }

  absl::Status Corrupt(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("corrupt index file ", *file_name_, ": ", what));
  }

  std::shared_ptr<const Block> block_;
  const std::string* file_name_;
  bool valid_ = false;
  uint32_t next_ = 0;
  std::string key_;
  absl::string_view value_;
};

absl::Status DecodeHandle(absl::string_view* input, BlockHandle* h) {
  if (!GetVarint64(input, &h->offset) || !GetVarint64(input, &h->size)) {
    return absl::DataLossError("bad block handle");
  }
  return absl::OkStatus();
}

}  // namespace

struct Table::Rep {
  const ReadableFile* file;
  uint64_t file_size = 0;
  std::shared_ptr<const Block> index_block;
  mutable std::atomic<uint64_t> bytes_read{0};
  std::string whole;  // the whole file, when small enough to read at once

  absl::Status Corrupt(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat("corrupt index file ", file->name(), ": ", what));
  }

  absl::StatusOr<std::shared_ptr<const Block>> ReadBlock(const BlockHandle& h) const {
    if (h.offset > file_size || h.size > file_size - h.offset ||
        file_size - h.offset - h.size < kBlockTrailerSize) {
      return Corrupt(absl::StrCat("block handle (", h.offset, ", ", h.size,
                                  ") past the end of the file"));
    }
    std::string stored;
    if (!whole.empty()) {
      stored.assign(whole, h.offset, h.size + kBlockTrailerSize);
    } else {
      stored.resize(h.size + kBlockTrailerSize);
      RETURN_IF_ERROR(file->ReadAt(h.offset, stored.size(), stored.data()));
      bytes_read += stored.size();
    }
    const char type = stored[h.size];
    const uint32_t expected = crc32c::Unmask(DecodeFixed32(stored.data() + h.size + 1));
    if (kVerifyBlockCrc && crc32c::Value(stored.data(), h.size + 1) != expected) {
      return Corrupt(absl::StrCat("block checksum mismatch at offset ", h.offset));
    }
    auto block = std::make_shared<Block>();
    if (type == kNoCompression) {
      stored.resize(h.size);
      block->data = std::move(stored);
    } else if (type == kSnappyCompression) {
      size_t raw_len = 0;
      if (!snappy::GetUncompressedLength(stored.data(), h.size, &raw_len) ||
          raw_len > (64u << 20)) {
        return Corrupt(absl::StrCat("bad snappy block at offset ", h.offset));
      }
      block->data.resize(raw_len);
      if (!snappy::RawUncompress(stored.data(), h.size, block->data.data())) {
        return Corrupt(absl::StrCat("bad snappy block at offset ", h.offset));
      }
    } else {
      return Corrupt(absl::StrCat("unknown block compression type ",
                                  static_cast<int>(static_cast<unsigned char>(type))));
    }
    const size_t n = block->data.size();
    if (n < 4) return Corrupt(absl::StrCat("block at offset ", h.offset, " is too short"));
    block->num_restarts = DecodeFixed32(block->data.data() + n - 4);
    if (block->num_restarts == 0 || block->num_restarts > (n - 4) / 4) {
      return Corrupt(absl::StrCat("bad restart count in block at offset ", h.offset));
    }
    block->restart_offset = static_cast<uint32_t>(n - 4 - 4 * block->num_restarts);
    return std::shared_ptr<const Block>(std::move(block));
  }
};

Table::Table(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Table::~Table() = default;

absl::StatusOr<std::unique_ptr<Table>> Table::Open(const ReadableFile* file,
                                                   uint64_t read_whole_below) {
  auto rep = std::make_unique<Rep>();
  rep->file = file;
  rep->file_size = file->Size();
  // A small index is read whole, in one request: a lookup then costs no
  // further reads (the header and the entry usually sit in different blocks),
  // and on object stores one GET beats several.
  if (rep->file_size >= kFooterSize && rep->file_size <= read_whole_below) {
    rep->whole.resize(rep->file_size);
    RETURN_IF_ERROR(file->ReadAt(0, rep->file_size, rep->whole.data()));
    rep->bytes_read += rep->file_size;
  }
  if (rep->file_size < kFooterSize) {
    return rep->Corrupt(absl::StrCat("file is too short (", rep->file_size,
                                     " bytes) to be an sstable"));
  }
  char footer[kFooterSize];
  if (!rep->whole.empty()) {
    std::memcpy(footer, rep->whole.data() + rep->file_size - kFooterSize, kFooterSize);
  } else {
    RETURN_IF_ERROR(file->ReadAt(rep->file_size - kFooterSize, kFooterSize, footer));
    rep->bytes_read += kFooterSize;
  }
  const uint64_t magic = DecodeFixed64(footer + kFooterSize - 8);
  if (magic != kTableMagicNumber) return rep->Corrupt("not an sstable (bad magic number)");
  absl::string_view input(footer, kFooterSize - 8);
  BlockHandle metaindex, index;
  if (!DecodeHandle(&input, &metaindex).ok() || !DecodeHandle(&input, &index).ok()) {
    return rep->Corrupt("bad footer");
  }
  ASSIGN_OR_RETURN(rep->index_block, rep->ReadBlock(index));
  // TensorFlow never reads the (always empty) metaindex block; checking its
  // CRC costs 13 bytes and means no byte of the file goes unverified.
  RETURN_IF_ERROR(rep->ReadBlock(metaindex).status());
  return std::unique_ptr<Table>(new Table(std::move(rep)));
}

struct Table::Iterator::Rep {
  const Table::Rep* table;
  BlockIter index_iter;
  std::unique_ptr<BlockIter> data_iter;
  std::string last_key;  // for the cross-block order check
  bool has_last = false;

  absl::Status LoadDataBlock() {
    data_iter.reset();
    if (!index_iter.Valid()) return absl::OkStatus();
    absl::string_view handle_bytes = index_iter.value();
    BlockHandle h;
    if (!DecodeHandle(&handle_bytes, &h).ok()) return table->Corrupt("bad block handle");
    ASSIGN_OR_RETURN(auto block, table->ReadBlock(h));
    data_iter = std::make_unique<BlockIter>(std::move(block), &table->file->name());
    return absl::OkStatus();
  }

  // Advances across empty/exhausted blocks until positioned or at the end.
  absl::Status SkipExhausted() {
    while (data_iter == nullptr || !data_iter->Valid()) {
      if (!index_iter.Valid()) {
        data_iter.reset();
        return absl::OkStatus();
      }
      RETURN_IF_ERROR(index_iter.Next());
      RETURN_IF_ERROR(LoadDataBlock());
      if (data_iter) RETURN_IF_ERROR(data_iter->SeekToFirst());
    }
    return absl::OkStatus();
  }

  absl::Status CheckOrder() {
    if (data_iter == nullptr || !data_iter->Valid()) return absl::OkStatus();
    if (has_last && !(data_iter->key() > absl::string_view(last_key))) {
      return table->Corrupt("keys out of order across blocks");
    }
    last_key.assign(data_iter->key().data(), data_iter->key().size());
    has_last = true;
    return absl::OkStatus();
  }
};

Table::Iterator::Iterator(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Table::Iterator::~Iterator() = default;

bool Table::Iterator::Valid() const { return rep_->data_iter && rep_->data_iter->Valid(); }
absl::string_view Table::Iterator::key() const { return rep_->data_iter->key(); }
absl::string_view Table::Iterator::value() const { return rep_->data_iter->value(); }

absl::Status Table::Iterator::SeekToFirst() {
  rep_->has_last = false;
  RETURN_IF_ERROR(rep_->index_iter.SeekToFirst());
  RETURN_IF_ERROR(rep_->LoadDataBlock());
  if (rep_->data_iter) RETURN_IF_ERROR(rep_->data_iter->SeekToFirst());
  RETURN_IF_ERROR(rep_->SkipExhausted());
  return rep_->CheckOrder();
}

absl::Status Table::Iterator::Seek(absl::string_view target) {
  rep_->has_last = false;
  RETURN_IF_ERROR(rep_->index_iter.Seek(target));
  RETURN_IF_ERROR(rep_->LoadDataBlock());
  if (rep_->data_iter) RETURN_IF_ERROR(rep_->data_iter->Seek(target));
  RETURN_IF_ERROR(rep_->SkipExhausted());
  return rep_->CheckOrder();
}

absl::Status Table::Iterator::Next() {
  RETURN_IF_ERROR(rep_->data_iter->Next());
  RETURN_IF_ERROR(rep_->SkipExhausted());
  return rep_->CheckOrder();
}

std::unique_ptr<Table::Iterator> Table::NewIterator() const {
  auto rep = std::unique_ptr<Iterator::Rep>(
      new Iterator::Rep{rep_.get(), BlockIter(rep_->index_block, &rep_->file->name()),
                        nullptr, std::string(), false});
  return std::unique_ptr<Iterator>(new Iterator(std::move(rep)));
}

absl::Status Table::Get(absl::string_view key, std::string* value, bool* found) const {
  *found = false;
  auto it = NewIterator();
  RETURN_IF_ERROR(it->Seek(key));
  if (it->Valid() && it->key() == key) {
    value->assign(it->value().data(), it->value().size());
    *found = true;
  }
  return absl::OkStatus();
}

uint64_t Table::bytes_read() const { return rep_->bytes_read.load(); }
const std::string& Table::file_name() const { return rep_->file->name(); }

}  // namespace internal
}  // namespace cairn
