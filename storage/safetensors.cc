// Reading and writing safetensors headers (see safetensors.h).
//
// Parsing treats every byte as hostile: sizes are bounded before anything is
// allocated, JSON nesting is bounded before nlohmann builds a tree, every
// integer is range-checked, and no exception leaves this file.
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
#include "storage/safetensors.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <set>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "storage/status_macros.h"

namespace cairn {
namespace {

using Json = nlohmann::json;

// Largest header accepted or written: the reference implementation's
// MAX_HEADER_SIZE (100,000,000 bytes), so every file we write, it can read.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Largest tensor rank accepted or written.
constexpr size_t kMaxRank = 64;

// Deepest JSON nesting a valid header has: the root object (1), a tensor
// entry or "__metadata__" (2), a "shape" or "data_offsets" array (3).
constexpr int kMaxJsonDepth = 3;

constexpr char kMetadataKey[] = "__metadata__";

// Longest piece of untrusted text (a name, a parser message) quoted in an
// error message.
constexpr size_t kMaxQuotedLength = 200;

// One safetensors dtype Cairn exchanges. `layout_rank` is the dtype's relative
// position in the reference implementation's `Dtype` enum; the canonical
// layout sorts by it descending.
struct DtypeEntry {
  const char* name;
  DataType dtype;
  uint64_t size;
  int layout_rank;
};

constexpr DtypeEntry kDtypes[] = {
    {"BOOL", DataType::kBool, 1, 0},      {"U8", DataType::kUint8, 1, 1},
    {"I8", DataType::kInt8, 1, 2},        {"I16", DataType::kInt16, 2, 3},
    {"U16", DataType::kUint16, 2, 4},     {"F16", DataType::kHalf, 2, 5},
    {"BF16", DataType::kBfloat16, 2, 6},  {"I32", DataType::kInt32, 4, 7},
    {"U32", DataType::kUint32, 4, 8},     {"F32", DataType::kFloat, 4, 9},
    {"F64", DataType::kDouble, 8, 10},    {"I64", DataType::kInt64, 8, 11},
    {"U64", DataType::kUint64, 8, 12},
};

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

// *product = a * b; false on overflow.
bool MulOverflows(uint64_t a, uint64_t b, uint64_t* product) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *product = a * b;
  return false;
}

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

// Rejects JSON nested deeper than kMaxJsonDepth, before nlohmann builds a
// tree for it (a hostile "[[[[..." would otherwise cost memory per level).
// Strings are skipped with JSON's own lexing rules, so for every prefix of
// `json` that is valid JSON the depth counted here is exact.
absl::Status CheckNesting(absl::string_view json) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : json) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '{':
      case '[':
        if (++depth > kMaxJsonDepth) {
          return HeaderError(
              absl::StrCat("JSON is nested deeper than ", kMaxJsonDepth, " levels"));
        }
        break;
      case '}':
      case ']':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

// Parses `text` into *out. Fails on invalid JSON and on an object holding the
// same key twice (which nlohmann would otherwise resolve silently).
absl::Status ParseJson(absl::string_view text, Json* out) {
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  bool has_duplicate = false;
  Json::parser_callback_t callback = [&](int /*depth*/, Json::parse_event_t event,
                                         Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get_ref<const std::string&>()).second &&
            !has_duplicate) {
          has_duplicate = true;
          duplicate = parsed.get_ref<const std::string&>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    *out = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {  // parse_error; out_of_range for 1e999
    std::string what = e.what();
    if (what.size() > kMaxQuotedLength) what = what.substr(0, kMaxQuotedLength) + "...";
    return HeaderError(absl::StrCat("invalid JSON: ", what));
  }
  if (has_duplicate) return HeaderError(absl::StrCat("duplicate key ", Quote(duplicate)));
  return absl::OkStatus();
}

// A JSON integer in [0, max], else an error naming `what` of tensor `name`.
absl::StatusOr<uint64_t> NonNegativeInteger(const Json& j, absl::string_view name,
                                            absl::string_view what, uint64_t max) {
  if (!j.is_number_integer()) {
    return TensorError(name, absl::StrCat(what, " is not an integer"));
  }
  if (!j.is_number_unsigned()) {
    const int64_t v = j.get<int64_t>();
    if (v < 0) return TensorError(name, absl::StrCat(what, " is negative (", v, ")"));
    return static_cast<uint64_t>(v);  // "-0"
  }
  const uint64_t v = j.get<uint64_t>();
  if (v > max) return TensorError(name, absl::StrCat(what, " ", v, " is too large"));
  return v;
}

// Validates one tensor entry of the header (everything that does not depend
// on the other entries) and converts it.
absl::StatusOr<SafetensorsTensor> ParseTensor(const std::string& name, const Json& entry,
                                              uint64_t data_size) {
  if (!entry.is_object()) return TensorError(name, "entry is not a JSON object");
  for (const auto& field : entry.items()) {
    const std::string& key = field.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return TensorError(name, absl::StrCat("unexpected field ", Quote(key)));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) {
      return TensorError(name, absl::StrCat("missing field \"", key, "\""));
    }
  }

  SafetensorsTensor t;
  t.name = name;

  const Json& dtype = entry["dtype"];
  if (!dtype.is_string()) return TensorError(name, "\"dtype\" is not a string");
  const std::string& dtype_name = dtype.get_ref<const std::string&>();
  if (!DataTypeFromSafetensorsName(dtype_name, &t.dtype)) {
    return TensorError(name, absl::StrCat("unsupported dtype ", Quote(dtype_name)));
  }

  const Json& shape = entry["shape"];
  if (!shape.is_array()) return TensorError(name, "\"shape\" is not an array");
  if (shape.size() > kMaxRank) {
    return TensorError(name, absl::StrCat("rank ", shape.size(), " exceeds the maximum of ",
                                          kMaxRank));
  }
  t.shape.reserve(shape.size());
  for (const Json& dim : shape) {
    ASSIGN_OR_RETURN(uint64_t d, NonNegativeInteger(dim, name, "a shape dimension",
                                                    std::numeric_limits<int64_t>::max()));
    t.shape.push_back(static_cast<int64_t>(d));
  }

  const Json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    return TensorError(name, "\"data_offsets\" is not an array of 2 integers");
  }
  ASSIGN_OR_RETURN(t.begin, NonNegativeInteger(offsets[0], name, "data_offsets[0]",
                                               std::numeric_limits<uint64_t>::max()));
  ASSIGN_OR_RETURN(t.end, NonNegativeInteger(offsets[1], name, "data_offsets[1]",
                                             std::numeric_limits<uint64_t>::max()));
  if (t.begin > t.end) {
    return TensorError(name, absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                          "] end before they begin"));
  }
  if (t.end > data_size) {
    return TensorError(name, absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                          "] extend past the data section of ", data_size,
                                          " bytes"));
  }

  const uint64_t elem_size = FindDtype(t.dtype)->size;
  ASSIGN_OR_RETURN(uint64_t bytes, ByteSize(name, t.shape, elem_size));
  if (bytes != t.end - t.begin) {
    return TensorError(name, absl::StrCat("data_offsets [", t.begin, ", ", t.end, "] hold ",
                                          t.end - t.begin, " bytes but dtype ", dtype_name,
                                          " and the shape need ", bytes));
  }
  return t;
}

absl::Status ParseMetadata(const Json& j, std::map<std::string, std::string>* out) {
  if (!j.is_object()) return HeaderError("\"__metadata__\" is not a JSON object");
  for (const auto& item : j.items()) {
    if (!item.value().is_string()) {
      return HeaderError(
          absl::StrCat("\"__metadata__\" value for ", Quote(item.key()), " is not a string"));
    }
    (*out)[item.key()] = item.value().get<std::string>();
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsHeader> ParseHeaderImpl(absl::string_view header_json,
                                                  uint64_t data_size) {
  if (header_json.size() > kMaxHeaderSize) {
    return HeaderError(absl::StrCat("header of ", header_json.size(),
                                    " bytes exceeds the maximum of ", kMaxHeaderSize));
  }
  RETURN_IF_ERROR(CheckNesting(header_json));
  Json root;
  RETURN_IF_ERROR(ParseJson(header_json, &root));
  if (!root.is_object()) return HeaderError("header is not a JSON object");

  SafetensorsHeader header;
  header.data_start = 8 + static_cast<uint64_t>(header_json.size());
  std::set<absl::string_view> names;
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    if (key == kMetadataKey) {
      RETURN_IF_ERROR(ParseMetadata(item.value(), &header.metadata));
      continue;
    }
    // A JSON object cannot produce the same key twice here (ParseJson has
    // rejected duplicates); checked again so the invariant never rests on it.
    if (!names.insert(key).second) return TensorError(key, "appears twice");
    ASSIGN_OR_RETURN(SafetensorsTensor t, ParseTensor(key, item.value(), data_size));
    header.tensors.push_back(std::move(t));
  }

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.end != b.end) return a.end < b.end;
              return a.name < b.name;
            });
  // Sorted by begin, two ranges overlap iff some range begins before its
  // predecessor ends. An empty range strictly inside another counts too.
  for (size_t i = 1; i < header.tensors.size(); ++i) {
    const SafetensorsTensor& prev = header.tensors[i - 1];
    const SafetensorsTensor& cur = header.tensors[i];
    if (cur.begin < prev.end) {
      return TensorError(cur.name, absl::StrCat("data_offsets [", cur.begin, ", ", cur.end,
                                                "] overlap those of tensor ", Quote(prev.name),
                                                " [", prev.begin, ", ", prev.end, "]"));
    }
  }
  return header;
}

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

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size) {
  try {
    return ParseHeaderImpl(header_json, data_size);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("safetensors header: out of memory while parsing");
  } catch (const std::exception& e) {
    // Not expected: every nlohmann access above is type-checked first.
    return HeaderError(absl::StrCat("unexpected parse failure: ", e.what()));
  }
}

absl::StatusOr<SafetensorsHeader> ReadSafetensorsHeader(const ReadableFile& file) {
  const uint64_t size = file.Size();
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.name(), ": ", size, " bytes is too short for a safetensors file (no header length)"));
  }
  unsigned char len_bytes[8];
  RETURN_IF_ERROR(file.ReadAt(0, sizeof(len_bytes), reinterpret_cast<char*>(len_bytes)));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": safetensors header length ",
                                                   n, " exceeds the maximum of ",
                                                   kMaxHeaderSize));
  }
  if (n > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": safetensors header length ",
                                                   n, " exceeds the ", size - 8,
                                                   " bytes after the length"));
  }
  std::string header_json;
  try {
    header_json.resize(n);
  } catch (const std::exception&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(file.name(), ": cannot allocate ", n, " bytes for the safetensors header"));
  }
  RETURN_IF_ERROR(file.ReadAt(8, n, header_json.data()));
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(header_json, size - 8 - n);
  if (!header.ok()) {
    return absl::Status(header.status().code(),
                        absl::StrCat(file.name(), ": ", header.status().message()));
  }
  return header;
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
