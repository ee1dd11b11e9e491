// What the safetensors reader (safetensors_parse.cc) and writer
// (safetensors.cc) share: limits, the dtype table, and error helpers.
// Internal to the format library.
#ifndef CAIRN_STORAGE_BUNDLE_INTERNAL_SAFETENSORS_COMMON_H_
#define CAIRN_STORAGE_BUNDLE_INTERNAL_SAFETENSORS_COMMON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "storage/bundle/dtype.h"

namespace cairn {
namespace safetensors_internal {

using Json = nlohmann::json;

// Largest header accepted or written: the reference implementation's
// MAX_HEADER_SIZE (100,000,000 bytes), so every file we write, it can read.
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Largest tensor rank accepted or written.
inline constexpr size_t kMaxRank = 64;

inline constexpr char kMetadataKey[] = "__metadata__";

// Longest piece of untrusted text (a name, a parser message) quoted in an
// error message.
inline constexpr size_t kMaxQuotedLength = 200;

// One safetensors dtype Cairn exchanges. `layout_rank` is the dtype's relative
// position in the reference implementation's `Dtype` enum; the canonical
// layout sorts by it descending.
struct DtypeEntry {
  const char* name;
  DataType dtype;
  uint64_t size;
  int layout_rank;
};

inline constexpr DtypeEntry kDtypes[] = {
    {"BOOL", DataType::kBool, 1, 0},      {"U8", DataType::kUint8, 1, 1},
    {"I8", DataType::kInt8, 1, 2},        {"I16", DataType::kInt16, 2, 3},
    {"U16", DataType::kUint16, 2, 4},     {"F16", DataType::kHalf, 2, 5},
    {"BF16", DataType::kBfloat16, 2, 6},  {"I32", DataType::kInt32, 4, 7},
    {"U32", DataType::kUint32, 4, 8},     {"F32", DataType::kFloat, 4, 9},
    {"F64", DataType::kDouble, 8, 10},    {"I64", DataType::kInt64, 8, 11},
    {"U64", DataType::kUint64, 8, 12},
};

// The table entry for `dtype`, or nullptr if safetensors cannot hold it.
const DtypeEntry* FindDtype(DataType dtype);
// Untrusted text made printable and short enough for an error message.
std::string Quote(absl::string_view s);
// InvalidArgument "safetensors header: PROBLEM".
absl::Status HeaderError(absl::string_view problem);
// InvalidArgument "safetensors header: tensor "NAME": PROBLEM".
absl::Status TensorError(absl::string_view name, absl::string_view problem);
// Bytes held by a tensor of `shape` with `elem_size`-byte elements. The
// product is formed left to right and any overflow is an error, even if a
// later dimension is 0 (as the reference implementation does).
absl::StatusOr<uint64_t> ByteSize(absl::string_view name, const std::vector<int64_t>& shape,
                                  uint64_t elem_size);

}  // namespace safetensors_internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_INTERNAL_SAFETENSORS_COMMON_H_
