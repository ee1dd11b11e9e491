// The LevelDB-layout sorted table that holds a checkpoint's `.index`
// (spec §3): prefix-compressed key/value blocks with restart points, an empty
// metaindex block, an index block of separator keys → block handles, and a
// 48-byte footer. Every block carries a 5-byte trailer: compression type and
// the masked CRC32C of the stored bytes plus the type byte.
#ifndef CAIRN_STORAGE_BUNDLE_INTERNAL_TABLE_H_
#define CAIRN_STORAGE_BUNDLE_INTERNAL_TABLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

// TensorFlow's table options (tensorflow/core/lib/io/table_options.h and
// tensor_bundle.cc): 256 KiB blocks, restart interval 16, no compression.
constexpr size_t kTableBlockSize = 256 * 1024;
constexpr int kTableRestartInterval = 16;
constexpr size_t kBlockTrailerSize = 5;  // 1-byte type + fixed32 masked CRC
constexpr size_t kFooterSize = 48;       // 2 handles (≤ 40 bytes, zero-padded) + magic
constexpr uint64_t kTableMagicNumber = 0xdb4775248b80fb57ull;
// Index files up to this size are read whole when opened.
constexpr uint64_t kReadWholeBelow = 16 << 20;
constexpr char kNoCompression = 0;
constexpr char kSnappyCompression = 1;

struct BlockHandle {
  uint64_t offset = 0;
  uint64_t size = 0;  // excluding the trailer
};

// Writes a table to a WritableFile, block by block as entries arrive.
// Not thread-safe. Errors are sticky: after one, every call returns it.
class TableBuilder {
 public:
  struct Options {
    size_t block_size = kTableBlockSize;
    int restart_interval = kTableRestartInterval;
    // Compress blocks with Snappy when it saves at least 1/8 (TF's table
    // default; TensorFlow's bundle writer turns it off).
    bool snappy = false;
  };
  // `file` must outlive the builder; the builder does not close it.
  TableBuilder(const Options& options, WritableFile* file);
  ~TableBuilder();
  TableBuilder(const TableBuilder&) = delete;
  TableBuilder& operator=(const TableBuilder&) = delete;

  // REQUIRES: key > every key added before (unsigned bytewise); violating it
  // returns InvalidArgument (TF only asserts in debug builds).
  absl::Status Add(absl::string_view key, absl::string_view value);
  // Writes the remaining data block, metaindex, index and footer.
  absl::Status Finish();
  uint64_t num_entries() const;
  uint64_t file_size() const;

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// A read-only view of a table stored in a ReadableFile. Blocks are read on
// demand and verified against their CRC. Thread-compatible: distinct
// iterators may be used from distinct threads.
class Table {
 public:
  // Reads and checks the footer and index block. `file` must outlive the
  // Table. Corruption is DataLoss naming the file.
  // Files up to `read_whole_below` bytes are read in one request and served
  // from memory; larger ones block by block.
  static absl::StatusOr<std::unique_ptr<Table>> Open(const ReadableFile* file,
                                                     uint64_t read_whole_below = kReadWholeBelow);
  ~Table();

  class Iterator {
   public:
    ~Iterator();
    bool Valid() const;
    // Positions at the first key >= target.
    absl::Status Seek(absl::string_view target);
    absl::Status SeekToFirst();
    // REQUIRES: Valid()
    absl::Status Next();
    absl::string_view key() const;
    absl::string_view value() const;

   private:
    friend class Table;
    struct Rep;
    explicit Iterator(std::unique_ptr<Rep> rep);
    std::unique_ptr<Rep> rep_;
  };

  std::unique_ptr<Iterator> NewIterator() const;

  // Finds `key` by binary search (index block, then the block's restart
  // points). Returns false in *found if absent.
  absl::Status Get(absl::string_view key, std::string* value, bool* found) const;

  // Total bytes of blocks read through this table so far (for tests and the
  // partial-restore benchmark).
  uint64_t bytes_read() const;
  const std::string& file_name() const;

 private:
  struct Rep;
  explicit Table(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

// Key-ordering helpers from LevelDB's bytewise comparator (spec §3.5).
void FindShortestSeparator(std::string* start, absl::string_view limit);
void FindShortSuccessor(std::string* key);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_INTERNAL_TABLE_H_
