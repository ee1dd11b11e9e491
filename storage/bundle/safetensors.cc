// Writing safetensors headers, and the dtype table both directions share
// (see safetensors.h). The reader is safetensors_parse.cc.
//
// Writing reproduces the reference implementation (huggingface/safetensors,
// `tensor.rs`: `prepare` and `Metadata::serialize`) byte for byte:
//   - tensors are sorted by the reference `Dtype` enum descending, then by name
//     (bytewise). That enum is declared in increasing alignment order, so this
//     is "element size descending" with ties between equally sized dtypes
//     broken by dtype first (U64 > I64 > F64, F32 > U32 > I32,
//     BF16 > F16 > U16 > I16, I8 > U8 > BOOL) and by name second;
//   - the JSON is compact, "__metadata__" first (when there is any), then the
//     tensors in layout order, each {"dtype":..,"shape":[..],"data_offsets":
//     [b,e]} in that key order; strings are escaped as serde_json does;
//   - the JSON is padded with spaces to a multiple of 8 bytes.
// The reference keeps metadata in a hash map, so with more than one metadata
// entry its key order is unspecified; we write keys in ascending order, which
// is one of the orders it may produce.
#include "storage/bundle/safetensors.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <limits>
#include <new>
#include <set>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "storage/bundle/internal/safetensors_common.h"
#include "storage/status_macros.h"

namespace cairn {
namespace safetensors_internal {

// The table entry for `dtype`, or nullptr if safetensors cannot hold it.
const DtypeEntry* FindDtype(DataType dtype) {
  for (const DtypeEntry& e : kDtypes) {
    if (e.dtype == dtype) return &e;
  }
  return nullptr;
}

// Untrusted text made printable and short enough for an error message.
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  out += absl::CHexEscape(s.substr(0, kMaxQuotedLength));
  if (s.size() > kMaxQuotedLength) out += "...";
  out += "\"";
  return out;
}

absl::Status HeaderError(absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors header: ", problem));
}

absl::Status TensorError(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors header: tensor ", Quote(name), ": ", problem));
}

namespace {

// *product = a * b; false on overflow.
bool MulOverflows(uint64_t a, uint64_t b, uint64_t* product) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *product = a * b;
  return false;
}

}  // namespace

// Bytes held by a tensor of `shape` with `elem_size`-byte elements. The
// product is formed left to right and any overflow is an error, even if a
// later dimension is 0 (as the reference implementation does).
absl::StatusOr<uint64_t> ByteSize(absl::string_view name, const std::vector<int64_t>& shape,
                                  uint64_t elem_size) {
  uint64_t n = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return TensorError(name, absl::StrCat("negative dimension ", dim));
    if (MulOverflows(n, static_cast<uint64_t>(dim), &n)) {
      return TensorError(name, "number of elements overflows 64 bits");
    }
  }
  if (MulOverflows(n, elem_size, &n)) {
    return TensorError(name, "size in bytes overflows 64 bits");
  }
  return n;
}

}  // namespace safetensors_internal

namespace {

using safetensors_internal::kMaxHeaderSize;
using safetensors_internal::kMaxRank;
using safetensors_internal::kMetadataKey;
using safetensors_internal::DtypeEntry;
using safetensors_internal::kDtypes;
using safetensors_internal::FindDtype;
using safetensors_internal::Quote;
using safetensors_internal::ByteSize;
using Json = nlohmann::json;

// `s` as a JSON string literal, escaped exactly as serde_json escapes it
// (nlohmann and serde_json agree: \" \\ \b \f \n \r \t, other control
// characters as \u00xx, everything else verbatim). InvalidArgument if `s` is
// not valid UTF-8, which no JSON string can hold.
absl::StatusOr<std::string> JsonString(const std::string& s, absl::string_view what) {
  try {
    return Json(s).dump();
  } catch (const Json::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: ", what, " ", Quote(s), " is not valid UTF-8"));
  }
}

absl::StatusOr<std::string> BuildPrefixImpl(std::vector<SafetensorsTensor>* tensors,
                                            const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensor> sorted = *tensors;
  std::set<std::string> names;
  for (const SafetensorsTensor& t : sorted) {
    if (t.name == kMetadataKey) {
      return absl::InvalidArgumentError(
          "safetensors: a tensor cannot be named \"__metadata__\"");
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: duplicate tensor name ", Quote(t.name)));
    }
    if (FindDtype(t.dtype) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor ", Quote(t.name), " has dtype ",
                       DataTypeName(t.dtype), ", which safetensors cannot hold"));
    }
    if (t.shape.size() > kMaxRank) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor ", Quote(t.name), " has rank ", t.shape.size(),
                       ", more than the maximum of ", kMaxRank));
    }
  }

  std::sort(sorted.begin(), sorted.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              const int ra = FindDtype(a.dtype)->layout_rank;
              const int rb = FindDtype(b.dtype)->layout_rank;
              if (ra != rb) return ra > rb;
              return a.name < b.name;  // std::string compares bytes as unsigned
            });

  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) json += ",";
      first = false;
      ASSIGN_OR_RETURN(std::string k, JsonString(key, "metadata key"));
      ASSIGN_OR_RETURN(std::string v, JsonString(value, "metadata value"));
      absl::StrAppend(&json, k, ":", v);
    }
    json += "}";
  }
  uint64_t offset = 0;
  for (SafetensorsTensor& t : sorted) {
    const DtypeEntry* dtype = FindDtype(t.dtype);
    ASSIGN_OR_RETURN(uint64_t bytes, ByteSize(t.name, t.shape, dtype->size));
    if (bytes > std::numeric_limits<uint64_t>::max() - offset) {
      return absl::InvalidArgumentError("safetensors: total tensor size overflows 64 bits");
    }
    t.begin = offset;
    t.end = offset + bytes;
    offset = t.end;

    ASSIGN_OR_RETURN(std::string name, JsonString(t.name, "tensor name"));
    if (json.size() > 1) json += ",";
    absl::StrAppend(&json, name, ":{\"dtype\":\"", dtype->name, "\",\"shape\":[");
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) json += ",";
      absl::StrAppend(&json, t.shape[i]);
    }
    absl::StrAppend(&json, "],\"data_offsets\":[", t.begin, ",", t.end, "]}");
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: header of ", json.size(),
                                                   " bytes exceeds the maximum of ",
                                                   kMaxHeaderSize));
  }

  std::string prefix(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  prefix += json;
  *tensors = std::move(sorted);
  return prefix;
}

}  // namespace

bool DataTypeFromSafetensorsName(absl::string_view name, DataType* out) {
  for (const DtypeEntry& e : kDtypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

std::string SafetensorsName(DataType dtype) {
  const DtypeEntry* e = FindDtype(dtype);
  return e == nullptr ? std::string() : std::string(e->name);
}

absl::StatusOr<bool> KeepForSafetensors(absl::string_view name, DataType dtype, bool strict,
                                        const std::function<void(const std::string&)>& warn) {
  if (!SafetensorsName(dtype).empty()) return true;
  const std::string msg = absl::StrCat("tensor \"", name, "\" (", DataTypeName(dtype),
                                       ") cannot be stored in safetensors");
  if (strict) return absl::FailedPreconditionError(msg + " (--strict)");
  if (warn) warn(msg + "; skipped");
  return false;
}

absl::StatusOr<std::string> BuildSafetensorsPrefix(
    std::vector<SafetensorsTensor>* tensors, const std::map<std::string, std::string>& metadata) {
  try {
    return BuildPrefixImpl(tensors, metadata);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("safetensors: out of memory while building the header");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("safetensors: unexpected failure: ", e.what()));
  }
}

std::string SliceMetadataKey(absl::string_view tensor_name) {
  return absl::StrCat("cairn.slice.", tensor_name);
}

}  // namespace cairn
