// The safetensors file format, Cairn's exchange format with the outside world
// (../shared/CONTRACT.md "Tensors in safetensors files"):
//
//   [u64 little-endian N][N bytes of JSON header][data section]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the data section) plus an optional
// "__metadata__" object of string → string. Cairn uses metadata keys
// "cairn.slice.NAME" = "FULL_SHAPE_AND_SLICE" to mark a tensor that holds only
// a slice of a partitioned variable.
//
// Writing is canonical, matching the reference Python/Rust implementation:
// tensors laid out by the reference's dtype order descending (which puts
// larger elements first; among equal sizes the dtype decides), then name
// ascending; compact JSON
// with "__metadata__" first and tensors in layout order, header padded with
// spaces to a multiple of 8 bytes.
#ifndef CAIRN_STORAGE_BUNDLE_SAFETENSORS_H_
#define CAIRN_STORAGE_BUNDLE_SAFETENSORS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/dtype.h"
#include "storage/storage.h"

namespace cairn {

struct SafetensorsTensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset of the first byte, relative to the data section
  uint64_t end = 0;    // one past the last byte
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensor> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section (8 + N)
};

// "F32" → kFloat, ...; false for names safetensors has but TF lacks and for
// unknown names.
bool DataTypeFromSafetensorsName(absl::string_view name, DataType* out);
// kFloat → "F32"; empty for types safetensors cannot hold (string, complex,
// quantized, variant, ...).
std::string SafetensorsName(DataType dtype);

// Whether tensor `name` of `dtype` goes into a safetensors file being
// written: true if safetensors can hold it; otherwise FailedPrecondition
// with `strict`, else false after telling `warn` (if set) it is skipped.
absl::StatusOr<bool> KeepForSafetensors(absl::string_view name, DataType dtype, bool strict,
                                        const std::function<void(const std::string&)>& warn);

// Parses and validates a header. `header_json` is the N bytes after the
// length; `data_size` is the size of the data section. Validates: JSON object,
// each entry's dtype/shape/offsets, size == elements * element size (overflow
// checked), offsets within data_size and not overlapping, metadata values are
// strings. InvalidArgument naming the tensor otherwise.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size);

// Reads the length prefix and header from a file and parses it.
absl::StatusOr<SafetensorsHeader> ReadSafetensorsHeader(const ReadableFile& file);

// Sorts `tensors` into the canonical layout order and assigns begin/end to
// each (contiguous, starting at 0), then returns the full prefix to write
// before the data section: 8-byte length + padded JSON header. The caller
// then appends each tensor's bytes in the order of the sorted vector.
// InvalidArgument on a dtype safetensors cannot hold or a duplicate name.
absl::StatusOr<std::string> BuildSafetensorsPrefix(std::vector<SafetensorsTensor>* tensors,
                                                   const std::map<std::string, std::string>& metadata);

// The metadata key marking a slice: "cairn.slice." + name.
std::string SliceMetadataKey(absl::string_view tensor_name);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_SAFETENSORS_H_
