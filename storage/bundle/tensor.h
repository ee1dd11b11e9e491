// Value types shared by the bundle reader and writer.
#ifndef CAIRN_STORAGE_BUNDLE_TENSOR_H_
#define CAIRN_STORAGE_BUNDLE_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "storage/bundle/dtype.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {

// An uninitialized byte buffer (large tensors are not zeroed before being
// overwritten). Buffers of 2 MiB and more are mapped directly and marked for
// transparent huge pages: filling a multi-GiB restore then takes hundreds of
// times fewer page faults. Movable, not copyable.
//
// A buffer may instead view memory owned elsewhere (a copy-on-write mapping
// of a checkpoint file, see ReadableFile::MapRange): `owner` is kept alive
// as long as the buffer views it.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size);
  Buffer(std::shared_ptr<char> owner, size_t size);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  char* data() { return data_; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  absl::string_view view() const { return absl::string_view(data_, size_); }

 private:
  void Release();
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_ = 0;  // bytes mapped with mmap (0: allocated with new[])
  std::shared_ptr<char> owner_;  // set: data_ is owner_.get(), not ours to free
};

// A tensor in memory: fixed-size elements in row-major order, little-endian,
// in `data`; or, for DT_STRING, the elements in `strings`.
struct Tensor {
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  Buffer data;
  std::vector<std::string> strings;
};

// One entry of a checkpoint's index, as stored (spec §6).
struct BundleEntry {
  std::string key;  // the tensor name, or a slice key (see EncodeSliceKey)
  int32_t dtype = 0;  // raw DataType value; may be a type this library cannot read
  std::vector<int64_t> shape;
  int32_t shard_id = 0;
  int64_t offset = 0;
  int64_t size = 0;
  uint32_t masked_crc32c = 0;  // as stored: crc32c::Mask(crc)
  // Non-empty for a partitioned tensor's full entry: the stored slices, whose
  // data live under EncodeSliceKey(key, slice).
  std::vector<TensorSlice> slices;

  DataType data_type() const { return static_cast<DataType>(dtype); }
  bool is_sliced() const { return !slices.empty(); }
};

// "PREFIX.index" and "PREFIX.data-00003-of-00008" (printf "%05d").
std::string IndexFileName(absl::string_view prefix);
std::string DataFileName(absl::string_view prefix, int shard, int num_shards);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_TENSOR_H_
