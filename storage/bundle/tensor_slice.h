// Slices of partitioned tensors, in TensorFlow's terms (spec §8).
//
// A slice is one extent per dimension: `start,length`, or `-` for the whole
// dimension. Its text form joins the extents with ':' ("0,250:-"); the
// shape-and-slice form used by SaveV2 and by Cairn's safetensors metadata
// prefixes the full shape ("1000 64 0,250:-").
//
//   std::vector<int64_t> shape; cairn::TensorSlice slice;
//   RETURN_IF_ERROR(cairn::ParseShapeAndSlice("1000 64 0,250:-", &shape, &slice));
//   slice.SliceShape(shape);          // {250, 64}
//   cairn::EncodeSliceKey("emb", slice);  // the bundle key of that slice's data
#ifndef CAIRN_STORAGE_BUNDLE_TENSOR_SLICE_H_
#define CAIRN_STORAGE_BUNDLE_TENSOR_SLICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {

// One dimension of a slice. length == kFullLength means "the whole
// dimension" (TensorFlow's `-`, an Extent without `length` in the proto).
struct Extent {
  static constexpr int64_t kFullLength = -1;
  int64_t start = 0;
  int64_t length = kFullLength;
  bool full() const { return length == kFullLength; }
  bool operator==(const Extent& o) const { return start == o.start && length == o.length; }
};

class TensorSlice {
 public:
  TensorSlice() = default;
  explicit TensorSlice(std::vector<Extent> extents) : extents_(std::move(extents)) {}

  // Every dimension full.
  static TensorSlice Full(int rank);

  // Parses the text form "0,250:-" ("" is a rank-0 slice). Starts must be
  // >= 0 and lengths >= 0 (or '-'); numbers are decimal int64 without
  // overflow. Errors are InvalidArgument quoting the text.
  static absl::StatusOr<TensorSlice> Parse(absl::string_view text);

  int rank() const { return static_cast<int>(extents_.size()); }
  const std::vector<Extent>& extents() const { return extents_; }
  const Extent& extent(int d) const { return extents_[d]; }

  // Text form, the inverse of Parse: full dimensions print as '-'.
  std::string ToString() const;

  // OK if the rank matches and every extent lies within `full_shape`
  // (start + length <= dim, computed without overflow).
  absl::Status CheckFits(const std::vector<int64_t>& full_shape) const;

  // Start and length of dimension d resolved against the full shape.
  // REQUIRES: CheckFits(full_shape).ok()
  int64_t StartOf(int d) const { return extents_[d].start; }
  int64_t LengthOf(int d, const std::vector<int64_t>& full_shape) const {
    return extents_[d].full() ? full_shape[d] : extents_[d].length;
  }
  // The shape of the slice's data. REQUIRES: CheckFits(full_shape).ok()
  std::vector<int64_t> SliceShape(const std::vector<int64_t>& full_shape) const;
  // True if the slice covers the whole tensor (each extent full, or spanning
  // its whole dimension). REQUIRES: CheckFits(full_shape).ok()
  bool CoversAll(const std::vector<int64_t>& full_shape) const;

  // The intersection of two slices of the same tensor, expressed with
  // explicit extents (no '-'). Returns false if it is empty (some dimension
  // has no overlap, or a zero length). REQUIRES: both fit full_shape.
  static bool Intersect(const TensorSlice& a, const TensorSlice& b,
                        const std::vector<int64_t>& full_shape, TensorSlice* out);

  bool operator==(const TensorSlice& o) const { return extents_ == o.extents_; }

 private:
  std::vector<Extent> extents_;
};

// Parses "D0 D1 ... Dn-1 SLICE" (full dims then the slice text, separated by
// single spaces). The slice's rank must equal the number of dims, and it must
// fit. A spec with no slice part ("10 5") is rejected: use the plain shape.
absl::Status ParseShapeAndSlice(absl::string_view spec, std::vector<int64_t>* full_shape,
                                TensorSlice* slice);
// The inverse: "1000 64 0,250:-".
std::string FormatShapeAndSlice(const std::vector<int64_t>& full_shape, const TensorSlice& slice);

// A shape for messages: "[1000,64]", "[]" for a scalar.
std::string ShapeString(const std::vector<int64_t>& shape);

// The bundle key holding one slice's data: TensorFlow's EncodeTensorNameSlice,
// OrderedCode of (0, name, rank, start_0, length_0, ...), where a full
// dimension contributes start 0 and length -1 (spec §8.1).
std::string EncodeSliceKey(absl::string_view name, const TensorSlice& slice);
// Decodes a key produced by EncodeSliceKey. InvalidArgument if malformed.
absl::Status DecodeSliceKey(absl::string_view key, std::string* name, TensorSlice* slice);

// Copies the elements in the intersection of `src_slice` and `dst_slice`
// from `src` (holding exactly src_slice's elements, row-major) to `dst`
// (holding exactly dst_slice's elements, row-major). Both slices are of a
// tensor of `full_shape` with `elem_size`-byte elements. Returns the number of
// elements copied (0 if they do not intersect).
// REQUIRES: both slices fit full_shape.
int64_t CopySliceIntersection(const char* src, const TensorSlice& src_slice, char* dst,
                              const TensorSlice& dst_slice,
                              const std::vector<int64_t>& full_shape, size_t elem_size);

// Number of elements of a shape; false on a negative dimension or on int64
// overflow. A rank-0 shape has one element.
bool NumElements(const std::vector<int64_t>& shape, int64_t* out);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_TENSOR_SLICE_H_
