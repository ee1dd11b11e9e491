// Reading safetensors headers (see safetensors.h); the writer is
// safetensors.cc.
//
// Parsing treats every byte as hostile: sizes are bounded before anything is
// allocated, the JSON is validated event by event as nlohmann's SAX parser
// reads it (no JSON tree is built), every integer is range-checked, and no
// exception leaves this file.
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
namespace {

using safetensors_internal::kMaxHeaderSize;
using safetensors_internal::kMaxRank;
using safetensors_internal::kMetadataKey;
using safetensors_internal::kMaxQuotedLength;
using safetensors_internal::DtypeEntry;
using safetensors_internal::FindDtype;
using safetensors_internal::Quote;
using safetensors_internal::HeaderError;
using safetensors_internal::TensorError;
using safetensors_internal::ByteSize;
using Json = nlohmann::json;

// Turns the SAX events of a header into a SafetensorsHeader, validating each
// event as it arrives. Nothing but the result is stored, so memory stays
// proportional to the tensors described, and parsing stops at the first
// problem, before any deeper nesting or further input is looked at.
//
// The grammar is fixed by nlohmann's parser (a value follows every key,
// containers are balanced); this class checks what a header may contain:
//   root           object of  name -> entry, "__metadata__" -> metadata
//   entry          object of exactly "dtype" -> string,
//                  "shape" -> array of <= kMaxRank integers in [0, 2^63),
//                  "data_offsets" -> array of 2 integers in [0, 2^64)
//   metadata       object of string -> string
// and no key twice in one object.
//
// (A tree parse would be simpler to read but costs far more memory than the
// header's size on hostile input, and nlohmann's callback-filtered parse is
// quadratic in the number of tensors.)
class HeaderBuilder {
 public:
  HeaderBuilder(uint64_t data_size, SafetensorsHeader* out) : data_size_(data_size), out_(out) {}

  // The first problem found; OK if none.
  const absl::Status& status() const { return status_; }
  // True once the root object has been closed.
  bool done() const { return state_ == State::kDone; }

  // The nlohmann SAX interface. Returning false stops the parse.
  bool null() { return Scalar("null"); }
  bool boolean(bool) { return Scalar("a boolean"); }
  bool number_integer(Json::number_integer_t v) {
    if (v < 0) return Integer(0, v);
    return Integer(static_cast<uint64_t>(v), 0);  // "-0" arrives here as 0
  }
  bool number_unsigned(Json::number_unsigned_t v) { return Integer(v, 0); }
  bool number_float(Json::number_float_t, const Json::string_t&) {
    return Scalar("a non-integer number");
  }
  bool string(Json::string_t& s);
  bool binary(Json::binary_t&) { return Scalar("binary data"); }  // not produced from JSON
  bool start_object(std::size_t);
  bool key(Json::string_t& k);
  bool end_object();
  bool start_array(std::size_t);
  bool end_array();
  bool parse_error(std::size_t, const std::string&, const Json::exception& e) {
    std::string what = e.what();
    if (what.size() > kMaxQuotedLength) what = what.substr(0, kMaxQuotedLength) + "...";
    return Fail(HeaderError(absl::StrCat("invalid JSON: ", what)));
  }

 private:
  enum class State {
    kTop,       // before the root value
    kRoot,      // in the root object
    kMetadata,  // in "__metadata__"
    kEntry,     // in a tensor entry
    kShape,     // in an entry's "shape"
    kOffsets,   // in an entry's "data_offsets"
    kDone,      // after the root object
  };
  enum class Field { kDtype, kShape, kOffsets };

  bool Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
    return false;
  }
  bool FailTensor(absl::string_view problem) { return Fail(TensorError(tensor_.name, problem)); }

  // A value of a kind that has no place where it appeared. `kind` names it.
  bool Scalar(absl::string_view kind) { return Misplaced(kind); }
  bool Misplaced(absl::string_view kind);
  // A JSON integer: `value` if non-negative, else `negative`.
  bool Integer(uint64_t value, int64_t negative);
  // Checks a completed entry and appends it to the output.
  bool FinishEntry();

  const uint64_t data_size_;
  SafetensorsHeader* const out_;
  absl::Status status_;
  State state_ = State::kTop;

  std::unordered_set<std::string> names_;  // tensor names seen
  bool seen_metadata_ = false;
  std::string metadata_key_;               // in kMetadata: the pending key

  SafetensorsTensor tensor_;               // in kEntry and below: the entry so far
  Field field_ = Field::kDtype;            // in kEntry: the pending field
  bool has_field_[3] = {false, false, false};
  size_t num_offsets_ = 0;
};

bool HeaderBuilder::Misplaced(absl::string_view kind) {
  switch (state_) {
    case State::kTop:
      return Fail(HeaderError("header is not a JSON object"));
    case State::kRoot:
      if (tensor_.name == kMetadataKey) {
        return Fail(HeaderError("\"__metadata__\" is not a JSON object"));
      }
      return FailTensor(absl::StrCat("entry is ", kind, ", not a JSON object"));
    case State::kMetadata:
      return Fail(HeaderError(absl::StrCat("\"__metadata__\" value for ", Quote(metadata_key_),
                                           " is ", kind, ", not a string")));
    case State::kEntry:
      switch (field_) {
        case Field::kDtype:
          return FailTensor(absl::StrCat("\"dtype\" is ", kind, ", not a string"));
        case Field::kShape:
          return FailTensor(absl::StrCat("\"shape\" is ", kind, ", not an array"));
        case Field::kOffsets:
          return FailTensor(
              absl::StrCat("\"data_offsets\" is ", kind, ", not an array of 2 integers"));
      }
      break;
    case State::kShape:
      return FailTensor(absl::StrCat("a shape dimension is ", kind, ", not an integer"));
    case State::kOffsets:
      return FailTensor(
          absl::StrCat("data_offsets[", num_offsets_, "] is ", kind, ", not an integer"));
    case State::kDone:
      break;
  }
  return Fail(HeaderError("invalid JSON"));  // unreachable: nlohmann's grammar forbids it
}

bool HeaderBuilder::Integer(uint64_t value, int64_t negative) {
  if (state_ == State::kShape) {
    if (negative < 0) {
      return FailTensor(absl::StrCat("a shape dimension is negative (", negative, ")"));
    }
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FailTensor(absl::StrCat("shape dimension ", value, " is too large"));
    }
    if (tensor_.shape.size() == kMaxRank) {
      return FailTensor(absl::StrCat("rank exceeds the maximum of ", kMaxRank));
    }
    tensor_.shape.push_back(static_cast<int64_t>(value));
    return true;
  }
  if (state_ == State::kOffsets) {
    if (num_offsets_ == 2) {
      return FailTensor("\"data_offsets\" is not an array of 2 integers (it has more)");
    }
    if (negative < 0) {
      return FailTensor(
          absl::StrCat("data_offsets[", num_offsets_, "] is negative (", negative, ")"));
    }
    (num_offsets_ == 0 ? tensor_.begin : tensor_.end) = value;
    ++num_offsets_;
    return true;
  }
  return Misplaced("an integer");
}

bool HeaderBuilder::string(Json::string_t& s) {
  if (state_ == State::kMetadata) {
    out_->metadata.emplace(std::move(metadata_key_), std::move(s));
    return true;
  }
  if (state_ == State::kEntry && field_ == Field::kDtype) {
    if (!DataTypeFromSafetensorsName(s, &tensor_.dtype)) {
      return FailTensor(absl::StrCat("unsupported dtype ", Quote(s)));
    }
    return true;
  }
  return Misplaced("a string");
}

bool HeaderBuilder::start_object(std::size_t) {
  switch (state_) {
    case State::kTop:
      state_ = State::kRoot;
      return true;
    case State::kRoot:
      if (tensor_.name == kMetadataKey) {
        state_ = State::kMetadata;
      } else {
        state_ = State::kEntry;
        std::fill(std::begin(has_field_), std::end(has_field_), false);
      }
      return true;
    default:
      return Misplaced("an object");
  }
}

bool HeaderBuilder::key(Json::string_t& k) {
  switch (state_) {
    case State::kRoot:
      if (k == kMetadataKey) {
        if (seen_metadata_) return Fail(HeaderError("\"__metadata__\" appears twice"));
        seen_metadata_ = true;
      } else if (!names_.insert(k).second) {
        return Fail(HeaderError(absl::StrCat("duplicate tensor name ", Quote(k))));
      }
      tensor_ = SafetensorsTensor();
      tensor_.name = std::move(k);
      return true;
    case State::kMetadata:
      if (out_->metadata.count(k) != 0) {
        return Fail(HeaderError(absl::StrCat("\"__metadata__\" has duplicate key ", Quote(k))));
      }
      metadata_key_ = std::move(k);
      return true;
    case State::kEntry:
      if (k == "dtype") {
        field_ = Field::kDtype;
      } else if (k == "shape") {
        field_ = Field::kShape;
      } else if (k == "data_offsets") {
        field_ = Field::kOffsets;
      } else {
        return FailTensor(absl::StrCat("unexpected field ", Quote(k)));
      }
      if (has_field_[static_cast<int>(field_)]) {
        return FailTensor(absl::StrCat("duplicate field ", Quote(k)));
      }
      has_field_[static_cast<int>(field_)] = true;
      return true;
    default:
      return Fail(HeaderError("invalid JSON"));  // unreachable: keys occur only in objects
  }
}

bool HeaderBuilder::end_object() {
  switch (state_) {
    case State::kRoot:
      state_ = State::kDone;
      return true;
    case State::kMetadata:
      state_ = State::kRoot;
      return true;
    case State::kEntry:
      state_ = State::kRoot;
      return FinishEntry();
    default:
      return Fail(HeaderError("invalid JSON"));  // unreachable: balanced by the parser
  }
}

bool HeaderBuilder::start_array(std::size_t) {
  if (state_ == State::kEntry && field_ == Field::kShape) {
    state_ = State::kShape;
    return true;
  }
  if (state_ == State::kEntry && field_ == Field::kOffsets) {
    state_ = State::kOffsets;
    num_offsets_ = 0;
    return true;
  }
  return Misplaced("an array");
}

bool HeaderBuilder::end_array() {
  if (state_ == State::kShape) {
    state_ = State::kEntry;
    return true;
  }
  if (state_ == State::kOffsets) {
    state_ = State::kEntry;
    if (num_offsets_ != 2) {
      return FailTensor(absl::StrCat("\"data_offsets\" is not an array of 2 integers (it has ",
                                     num_offsets_, ")"));
    }
    return true;
  }
  return Fail(HeaderError("invalid JSON"));  // unreachable: balanced by the parser
}

bool HeaderBuilder::FinishEntry() {
  static constexpr const char* kFieldNames[] = {"dtype", "shape", "data_offsets"};
  for (int i = 0; i < 3; ++i) {
    if (!has_field_[i]) return FailTensor(absl::StrCat("missing field \"", kFieldNames[i], "\""));
  }
  SafetensorsTensor& t = tensor_;
  if (t.begin > t.end) {
    return FailTensor(
        absl::StrCat("data_offsets [", t.begin, ", ", t.end, "] end before they begin"));
  }
  if (t.end > data_size_) {
    return FailTensor(absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                   "] extend past the data section of ", data_size_, " bytes"));
  }
  const DtypeEntry* dtype = FindDtype(t.dtype);
  absl::StatusOr<uint64_t> bytes = ByteSize(t.name, t.shape, dtype->size);
  if (!bytes.ok()) return Fail(bytes.status());
  if (*bytes != t.end - t.begin) {
    return FailTensor(absl::StrCat("data_offsets [", t.begin, ", ", t.end, "] hold ",
                                   t.end - t.begin, " bytes but dtype ", dtype->name,
                                   " and the shape need ", *bytes));
  }
  out_->tensors.push_back(std::move(t));
  return true;
}

absl::StatusOr<SafetensorsHeader> ParseHeaderImpl(absl::string_view header_json,
                                                  uint64_t data_size) {
  if (header_json.size() > kMaxHeaderSize) {
    return HeaderError(absl::StrCat("header of ", header_json.size(),
                                    " bytes exceeds the maximum of ", kMaxHeaderSize));
  }
  SafetensorsHeader header;
  header.data_start = 8 + static_cast<uint64_t>(header_json.size());
  HeaderBuilder builder(data_size, &header);
  const bool parsed = Json::sax_parse(header_json.begin(), header_json.end(), &builder);
  RETURN_IF_ERROR(builder.status());
  if (!parsed || !builder.done()) return HeaderError("invalid JSON");  // not expected

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

}  // namespace

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

}  // namespace cairn
