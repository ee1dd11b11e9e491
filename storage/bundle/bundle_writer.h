// Writes one TensorFlow V2 checkpoint with a single data file:
//
//   PREFIX.data-00000-of-00001   tensor bytes, in the order they were added
//   PREFIX.index                 sorted table of BundleEntryProto (spec §3-§6)
//
// Data is written as it arrives (nothing is buffered beyond the storage
// backend's write buffer); the index entries are kept in memory and written
// at Finish. Both files become visible only at Finish: the data file first,
// then the index, so a reader that finds PREFIX.index finds a whole bundle.
// Given the same entries, the index is byte-identical to TensorFlow's.
//
//   ASSIGN_OR_RETURN(auto w, cairn::BundleWriter::Create(storage, "ckpt-1/variables"));
//   w->Add("w", cairn::DataType::kFloat, {2}, absl::string_view(bytes, 8));
//   w->AddSlice("emb", {1000, 64}, slice, cairn::DataType::kFloat, slice_bytes);
//   RETURN_IF_ERROR(w->Finish());
//
// Errors are sticky: after the first failure every call returns it and
// Finish() writes nothing (the partial data file is removed).
// Not thread-safe.
#ifndef CAIRN_STORAGE_BUNDLE_BUNDLE_WRITER_H_
#define CAIRN_STORAGE_BUNDLE_BUNDLE_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/bundle/dtype.h"
#include "storage/storage.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {

class BundleWriter {
 public:
  struct Options {
    // Also compute the data file's SHA-256 as bytes stream through (about
    // 1.8 GB/s with SHA extensions).
    bool sha256 = false;
  };
  // `storage` must outlive the writer. `prefix` is relative to its root.
  static absl::StatusOr<std::unique_ptr<BundleWriter>> Create(Storage* storage,
                                                              absl::string_view prefix,
                                                              const Options& options);
  static absl::StatusOr<std::unique_ptr<BundleWriter>> Create(Storage* storage,
                                                              absl::string_view prefix) {
    return Create(storage, prefix, Options());
  }
  // Abandons the bundle unless Finish() succeeded.
  ~BundleWriter();

  // Adds a whole tensor of a fixed-size dtype: `data` holds its elements in
  // row-major order, little-endian. InvalidArgument on a duplicate or empty
  // name, a non-storable dtype, or a size that does not match the shape.
  absl::Status Add(absl::string_view name, DataType dtype, const std::vector<int64_t>& shape,
                   absl::string_view data);

  // Adds a DT_STRING tensor (spec §7.3). values.size() must equal the
  // shape's element count.
  absl::Status AddString(absl::string_view name, const std::vector<int64_t>& shape,
                         const std::vector<std::string>& values);

  // Adds one slice of a partitioned tensor `name` of shape `full_shape`:
  // records the slice in the full entry and stores `data` (the slice's
  // elements) under the slice key. A slice covering the whole tensor is
  // stored as a plain tensor, as TensorFlow does. dtype and full shape must
  // agree with earlier slices of the same tensor.
  absl::Status AddSlice(absl::string_view name, const std::vector<int64_t>& full_shape,
                        const TensorSlice& slice, DataType dtype, absl::string_view data);

  // Streaming form of Add/AddSlice for tensors that arrive in pieces:
  // BeginTensor (or BeginSlice), AppendData any number of times, EndTensor.
  // EndTensor fails if the bytes appended differ from the shape's size.
  absl::Status BeginTensor(absl::string_view name, DataType dtype,
                           const std::vector<int64_t>& shape);
  absl::Status BeginSlice(absl::string_view name, const std::vector<int64_t>& full_shape,
                          const TensorSlice& slice, DataType dtype);
  absl::Status AppendData(absl::string_view chunk);
  // The same for one chunk that arrives in pieces (say, the slices of a
  // received message): the pieces' bytes in order, their CRC computed as one
  // run (cheaper than AppendData per piece for many small pieces).
  absl::Status AppendData(absl::Span<const absl::string_view> pieces);
  absl::Status EndTensor();
  // Bytes the tensor in progress still needs for its shape (0 if none is
  // in progress): where a stream of several tensors' bytes is cut.
  uint64_t tensor_bytes_left() const;

  // Publishes the data file then the index. REQUIRES: no tensor in progress.
  absl::Status Finish();
  // Removes everything written so far. Idempotent.
  void Abandon();

  absl::Status status() const;
  // Bytes in the data file so far.
  uint64_t data_bytes() const;
  // Number of index entries (tensors and slices) so far.
  size_t num_entries() const;
  // The CRC32C (unmasked) of the whole data file so far.
  uint32_t data_crc32c() const;
  // The SHA-256 (32 raw bytes) of the whole data file so far, if
  // Options::sha256 was set (else empty): for an inventory that a later
  // full-file check (e.g. `cairn verify --deep`) compares against.
  std::string data_sha256() const;

 private:
  struct Rep;
  explicit BundleWriter(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_BUNDLE_WRITER_H_
