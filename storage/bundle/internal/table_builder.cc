// Writing a LevelDB-format table (the bundle's index): prefix-compressed
// blocks with restart points, Snappy where it pays, CRC32C trailers, an index
// block and the footer. The reader is in table_reader.cc.
#include "storage/bundle/internal/table.h"

#include <snappy.h>

#include <algorithm>
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

}  // namespace internal
}  // namespace cairn
