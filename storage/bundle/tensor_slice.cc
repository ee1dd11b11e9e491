#include "storage/bundle/tensor_slice.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/internal/ordered_code.h"
#include "storage/status_macros.h"

namespace cairn {
namespace {

constexpr size_t kMaxQuotedChars = 200;

// `text` in double quotes, C-escaped, truncated after kMaxQuotedChars bytes.
std::string Quote(absl::string_view text) {
  const bool truncated = text.size() > kMaxQuotedChars;
  return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxQuotedChars)),
                      truncated ? "...\"" : "\"");
}

// Parses a non-empty run of ASCII decimal digits (no sign, no spaces) into
// a non-negative int64. False on any other character or on overflow.
bool ParseNonNegative(absl::string_view s, int64_t* out) {
  if (s.empty()) return false;
  int64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(value, int64_t{10}, &value) ||
        __builtin_add_overflow(value, static_cast<int64_t>(c - '0'), &value)) {
      return false;
    }
  }
  *out = value;
  return true;
}

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses one extent, "-" or "START,LENGTH", of the slice text `text`.
absl::StatusOr<Extent> ParseExtent(absl::string_view item, absl::string_view text) {
  if (item == "-") return Extent{};
  const size_t comma = item.find(',');
  Extent e;
  if (comma == absl::string_view::npos ||
      !ParseNonNegative(item.substr(0, comma), &e.start) ||
      !ParseNonNegative(item.substr(comma + 1), &e.length)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid slice ", Quote(text), ": extent ", Quote(item),
                     " is not '-' or START,LENGTH with non-negative decimal int64 numbers"));
  }
  int64_t end;
  if (__builtin_add_overflow(e.start, e.length, &end)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid slice ", Quote(text), ": extent ",
                                                   Quote(item), " ends beyond int64"));
  }
  return e;
}

// Checks one extent of `slice` against dimension `dim` of `full_shape`.
absl::Status CheckExtentFits(const TensorSlice& slice, int d,
                             const std::vector<int64_t>& full_shape) {
  const Extent& e = slice.extent(d);
  const int64_t dim = full_shape[d];
  auto error = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat("slice ", Quote(slice.ToString()),
                                                   " does not fit shape ", ShapeString(full_shape),
                                                   ": dimension ", d, " ", problem));
  };
  if (dim < 0) return error("has negative size");
  if (e.full()) {
    return e.start == 0 ? absl::OkStatus() : error("is full but has a non-zero start");
  }
  if (e.start < 0 || e.length < 0) return error("has a negative start or length");
  int64_t end;
  if (__builtin_add_overflow(e.start, e.length, &end)) return error("ends beyond int64");
  if (end > dim) return error(absl::StrCat("ends at ", end, " > ", dim));
  return absl::OkStatus();
}

absl::Status MalformedKey(absl::string_view key, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed slice key ", Quote(key), ": ", problem));
}

// Row-major strides (in elements) of `shape`.
std::vector<int64_t> Strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

}  // namespace

// ----------------------------------------------------------------- TensorSlice

TensorSlice TensorSlice::Full(int rank) {
  return TensorSlice(std::vector<Extent>(rank > 0 ? rank : 0));
}

absl::StatusOr<TensorSlice> TensorSlice::Parse(absl::string_view text) {
  std::vector<Extent> extents;
  if (text.empty()) return TensorSlice(std::move(extents));
  for (absl::string_view item : absl::StrSplit(text, ':')) {
    ASSIGN_OR_RETURN(Extent e, ParseExtent(item, text));
    extents.push_back(e);
  }
  return TensorSlice(std::move(extents));
}

// A full extent with start 0 prints as '-'. Extents Parse would reject (e.g.
// a full extent with a non-zero start) print as "START,LENGTH" so that error
// messages show them faithfully.
std::string TensorSlice::ToString() const {
  return absl::StrJoin(extents_, ":", [](std::string* out, const Extent& e) {
    if (e.full() && e.start == 0) {
      out->push_back('-');
    } else {
      absl::StrAppend(out, e.start, ",", e.length);
    }
  });
}

absl::Status TensorSlice::CheckFits(const std::vector<int64_t>& full_shape) const {
  if (static_cast<size_t>(rank()) != full_shape.size()) {
    return absl::InvalidArgumentError(absl::StrCat("slice ", Quote(ToString()), " has rank ",
                                                   rank(), " but shape ", ShapeString(full_shape),
                                                   " has rank ", full_shape.size()));
  }
  for (int d = 0; d < rank(); ++d) RETURN_IF_ERROR(CheckExtentFits(*this, d, full_shape));
  return absl::OkStatus();
}

std::vector<int64_t> TensorSlice::SliceShape(const std::vector<int64_t>& full_shape) const {
  std::vector<int64_t> shape(extents_.size());
  for (int d = 0; d < rank(); ++d) shape[d] = LengthOf(d, full_shape);
  return shape;
}

bool TensorSlice::CoversAll(const std::vector<int64_t>& full_shape) const {
  for (int d = 0; d < rank(); ++d) {
    const Extent& e = extents_[d];
    if (!e.full() && !(e.start == 0 && e.length == full_shape[d])) return false;
  }
  return true;
}

bool TensorSlice::Intersect(const TensorSlice& a, const TensorSlice& b,
                            const std::vector<int64_t>& full_shape, TensorSlice* out) {
  if (a.rank() != b.rank() || static_cast<size_t>(a.rank()) != full_shape.size()) return false;
  std::vector<Extent> extents(a.rank());
  for (int d = 0; d < a.rank(); ++d) {
    // Both extents fit, so their ends cannot overflow.
    const int64_t start = std::max(a.StartOf(d), b.StartOf(d));
    const int64_t end = std::min(a.StartOf(d) + a.LengthOf(d, full_shape),
                                 b.StartOf(d) + b.LengthOf(d, full_shape));
    if (end <= start) return false;
    extents[d] = Extent{start, end - start};
  }
  if (out != nullptr) *out = TensorSlice(std::move(extents));
  return true;
}

// ------------------------------------------------------------ shape and slice

absl::Status ParseShapeAndSlice(absl::string_view spec, std::vector<int64_t>* full_shape,
                                TensorSlice* slice) {
  const std::vector<absl::string_view> parts = absl::StrSplit(spec, ' ');
  if (parts.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid shape-and-slice ", Quote(spec),
                     ": expected dimensions and a slice separated by single spaces"));
  }
  if (AllDigits(parts.back())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid shape-and-slice ", Quote(spec), ": no slice part (a plain shape?)"));
  }
  std::vector<int64_t> shape(parts.size() - 1);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!ParseNonNegative(parts[d], &shape[d])) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid shape-and-slice ", Quote(spec), ": dimension ", d, " ",
                       Quote(parts[d]), " is not a non-negative decimal int64"));
    }
  }
  ASSIGN_OR_RETURN(TensorSlice parsed, TensorSlice::Parse(parts.back()));
  if (static_cast<size_t>(parsed.rank()) != shape.size()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid shape-and-slice ", Quote(spec),
                                                   ": slice has rank ", parsed.rank(),
                                                   " but the shape has rank ", shape.size()));
  }
  RETURN_IF_ERROR(parsed.CheckFits(shape));
  *full_shape = std::move(shape);
  *slice = std::move(parsed);
  return absl::OkStatus();
}

// A rank-0 slice formats as "" (which ParseShapeAndSlice rejects: SaveV2 uses
// the empty string to mean "not sliced").
std::string FormatShapeAndSlice(const std::vector<int64_t>& full_shape, const TensorSlice& slice) {
  if (full_shape.empty()) return slice.ToString();
  return absl::StrCat(absl::StrJoin(full_shape, " "), " ", slice.ToString());
}

// -------------------------------------------------------------- slice keys

std::string EncodeSliceKey(absl::string_view name, const TensorSlice& slice) {
  std::string key;
  internal::AppendNumIncreasing(0, &key);
  internal::AppendString(name, &key);
  internal::AppendNumIncreasing(static_cast<uint64_t>(slice.rank()), &key);
  for (const Extent& e : slice.extents()) {
    internal::AppendSignedNumIncreasing(e.full() ? 0 : e.start, &key);
    internal::AppendSignedNumIncreasing(e.full() ? Extent::kFullLength : e.length, &key);
  }
  return key;
}

// Accepts exactly the keys EncodeSliceKey produces for slices Parse accepts:
// canonical OrderedCode, start >= 0, length >= 0 or (start 0, length -1),
// start + length within int64, and no trailing bytes.
absl::Status DecodeSliceKey(absl::string_view key, std::string* name, TensorSlice* slice) {
  absl::string_view in = key;
  uint64_t leading = 0;
  if (!internal::ReadNumIncreasing(&in, &leading).ok() || leading != 0) {
    return MalformedKey(key, "does not start with NumIncreasing(0)");
  }
  std::string decoded_name;
  if (absl::Status s = internal::ReadString(&in, &decoded_name); !s.ok()) {
    return MalformedKey(key, absl::StrCat("bad name: ", s.message()));
  }
  uint64_t rank = 0;
  if (absl::Status s = internal::ReadNumIncreasing(&in, &rank); !s.ok()) {
    return MalformedKey(key, absl::StrCat("bad rank: ", s.message()));
  }
  // Each dimension takes at least two bytes; this also bounds the allocation.
  if (rank > in.size() / 2) {
    return MalformedKey(key, absl::StrCat("rank ", rank, " exceeds the remaining bytes"));
  }
  std::vector<Extent> extents(rank);
  for (uint64_t d = 0; d < rank; ++d) {
    Extent& e = extents[d];
    absl::Status s = internal::ReadSignedNumIncreasing(&in, &e.start);
    if (s.ok()) s = internal::ReadSignedNumIncreasing(&in, &e.length);
    if (!s.ok()) return MalformedKey(key, absl::StrCat("dimension ", d, ": ", s.message()));
    int64_t end;
    const bool valid = e.full() ? e.start == 0
                                : e.start >= 0 && e.length >= 0 &&
                                      !__builtin_add_overflow(e.start, e.length, &end);
    if (!valid) {
      return MalformedKey(key, absl::StrCat("dimension ", d, " has invalid extent start ",
                                            e.start, " length ", e.length));
    }
  }
  if (!in.empty()) return MalformedKey(key, absl::StrCat(in.size(), " trailing bytes"));
  *name = std::move(decoded_name);
  *slice = TensorSlice(std::move(extents));
  return absl::OkStatus();
}

// ------------------------------------------------------------------ copying

int64_t CopySliceIntersection(const char* src, const TensorSlice& src_slice, char* dst,
                              const TensorSlice& dst_slice,
                              const std::vector<int64_t>& full_shape, size_t elem_size) {
  TensorSlice inter;
  if (!TensorSlice::Intersect(src_slice, dst_slice, full_shape, &inter)) return 0;
  const int rank = inter.rank();
  if (rank == 0) {
    std::memcpy(dst, src, elem_size);
    return 1;
  }
  const std::vector<int64_t> src_shape = src_slice.SliceShape(full_shape);
  const std::vector<int64_t> dst_shape = dst_slice.SliceShape(full_shape);
  const std::vector<int64_t> len = inter.SliceShape(full_shape);

  // Dimensions k..rank-1 form one contiguous run in both buffers: every
  // dimension after k is fully covered by the intersection in src and dst.
  int k = rank - 1;
  int64_t run = len[k];
  while (k > 0 && len[k] == src_shape[k] && len[k] == dst_shape[k]) {
    --k;
    run *= len[k];
  }

  const std::vector<int64_t> src_strides = Strides(src_shape);
  const std::vector<int64_t> dst_strides = Strides(dst_shape);
  int64_t src_off = 0;
  int64_t dst_off = 0;
  for (int d = 0; d < rank; ++d) {
    src_off += (inter.StartOf(d) - src_slice.StartOf(d)) * src_strides[d];
    dst_off += (inter.StartOf(d) - dst_slice.StartOf(d)) * dst_strides[d];
  }

  // Odometer over the outer dimensions 0..k-1.
  const size_t run_bytes = static_cast<size_t>(run) * elem_size;
  std::vector<int64_t> idx(k, 0);
  int64_t copied = 0;
  while (true) {
    std::memcpy(dst + static_cast<size_t>(dst_off) * elem_size,
                src + static_cast<size_t>(src_off) * elem_size, run_bytes);
    copied += run;
    int d = k - 1;
    for (; d >= 0; --d) {
      src_off += src_strides[d];
      dst_off += dst_strides[d];
      if (++idx[d] < len[d]) break;
      src_off -= src_strides[d] * len[d];
      dst_off -= dst_strides[d] * len[d];
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return copied;
}

bool NumElements(const std::vector<int64_t>& shape, int64_t* out) {
  int64_t n = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(n, dim, &n)) return false;
  }
  *out = n;
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

}  // namespace cairn
