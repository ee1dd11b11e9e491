// Reads a TensorFlow V2 checkpoint (spec §3-§8) from any storage backend.
//
//   ASSIGN_OR_RETURN(auto r, cairn::BundleReader::Open(storage, "ckpt-1/variables"));
//   ASSIGN_OR_RETURN(cairn::Tensor w, r->ReadTensor("w"));        // CRC-checked
//   ASSIGN_OR_RETURN(cairn::Tensor part, r->ReadSlice("emb", slice));  // any cut
//
// Open() reads and checks only the index footer and index block; entries are
// looked up by binary search and data files are opened on first use. Every
// length, offset and count read from a file is bounds-checked: corrupt or
// hostile files yield DataLoss (or InvalidArgument) naming the file and the
// tensor, never a crash. Big-endian bundles are byte-swapped after their
// checksums are verified.
//
// Thread-safe: any number of reads may run concurrently.
#ifndef CAIRN_STORAGE_BUNDLE_BUNDLE_READER_H_
#define CAIRN_STORAGE_BUNDLE_BUNDLE_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {

struct BundleReaderOptions {
  // Whole fixed-size tensors in files the storage can map (local files) come
  // back as copy-on-write views of the page cache (ReadableFile::MapRange)
  // instead of copies: no copy and no fresh memory to fault in, checksums
  // verified all the same. Writing to such a tensor copies only the pages
  // written. The files must not be truncated or rewritten in place while the
  // tensors live (Cairn never does; deleting them is fine).
  bool map_files = false;
};

class BundleReader {
 public:
  // `storage` must outlive the reader; `prefix` is relative to its root.
  // NotFound if PREFIX.index does not exist.
  static absl::StatusOr<std::unique_ptr<BundleReader>> Open(
      Storage* storage, absl::string_view prefix, const BundleReaderOptions& options = {});
  ~BundleReader();

  int num_shards() const;
  bool big_endian() const;
  const std::string& prefix() const;

  // The entry of a tensor (not a slice key). NotFound naming the tensor.
  absl::StatusOr<BundleEntry> Lookup(absl::string_view name) const;

  // Visits every entry in key order, including slice entries (keys starting
  // with '\0') but not the header. Stops at the first error, including one
  // returned by `fn`.
  absl::Status ForEachEntry(const std::function<absl::Status(const BundleEntry&)>& fn) const;

  // Entries of the tensors by name (slice entries omitted), in key order.
  absl::StatusOr<std::vector<BundleEntry>> ListTensors() const;

  // Reads a whole tensor; a partitioned one is assembled from its slices
  // (FailedPrecondition if the stored slices do not cover it).
  absl::StatusOr<Tensor> ReadTensor(absl::string_view name) const;

  // Reads the part `slice` of tensor `name`, from whatever is stored: the
  // whole tensor or any set of slices covering the request.
  absl::StatusOr<Tensor> ReadSlice(absl::string_view name, const TensorSlice& slice) const;

  // Reads the data of one stored entry (a whole tensor or one slice entry)
  // and verifies its checksum. Fixed-size data lands in `out->data`, strings
  // in `out->strings`.
  absl::StatusOr<Tensor> ReadEntry(const BundleEntry& entry) const;

  // Reads the bytes of one fixed-size entry into caller memory of exactly
  // entry.size bytes, verifying its checksum.
  absl::Status ReadEntryInto(const BundleEntry& entry, char* dst) const;

  // Bytes read from storage so far (index and data), for tests/benchmarks.
  uint64_t bytes_read() const;

 private:
  struct Rep;
  explicit BundleReader(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_BUNDLE_READER_H_
