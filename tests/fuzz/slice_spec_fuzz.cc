// libFuzzer target for the slice text forms, slice keys and OrderedCode.
//
// The input is fed, whole, to TensorSlice::Parse, ParseShapeAndSlice,
// DecodeSliceKey and the OrderedCode readers. Failures must be
// InvalidArgument; successes must satisfy the round-trip invariants below.
// Only a broken invariant traps.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/internal/ordered_code.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {
namespace {

#define FUZZ_CHECK(cond)            \
  do {                              \
    if (!(cond)) __builtin_trap();  \
  } while (0)

// Largest full tensor whose slice copies are verified element by element.
constexpr int64_t kMaxCheckedElements = 4096;

void CheckFailure(const absl::Status& s) {
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
}

// Encoding a parsed slice under `name` and decoding it gives it back.
void CheckKeyRoundTrip(absl::string_view name, const TensorSlice& slice) {
  const std::string key = EncodeSliceKey(name, slice);
  std::string decoded_name;
  TensorSlice decoded;
  FUZZ_CHECK(DecodeSliceKey(key, &decoded_name, &decoded).ok());
  FUZZ_CHECK(decoded_name == name);
  FUZZ_CHECK(decoded == slice);
}

void FuzzSliceText(absl::string_view text) {
  absl::StatusOr<TensorSlice> slice = TensorSlice::Parse(text);
  if (!slice.ok()) return CheckFailure(slice.status());
  const std::string canonical = slice->ToString();
  absl::StatusOr<TensorSlice> again = TensorSlice::Parse(canonical);
  FUZZ_CHECK(again.ok() && *again == *slice);
  FUZZ_CHECK(again->ToString() == canonical);
  CheckKeyRoundTrip(text, *slice);
}

// Row-major linear index in `full_shape` of element `local` (a linear index
// within the slice's own shape).
int64_t FullIndexOf(int64_t local, const TensorSlice& slice, const std::vector<int64_t>& full_shape,
                    const std::vector<int64_t>& slice_shape) {
  int64_t full = 0;
  int64_t stride = 1;
  for (size_t d = full_shape.size(); d-- > 0;) {
    const int64_t coord = local % slice_shape[d] + slice.StartOf(static_cast<int>(d));
    local /= slice_shape[d];
    full += coord * stride;
    stride *= full_shape[d];
  }
  return full;
}

// Copies the full tensor into `slice` and back into a blank full tensor,
// checking every element against a direct index computation.
void CheckCopies(const std::vector<int64_t>& full_shape, const TensorSlice& slice) {
  int64_t full_n = 0;
  int64_t slice_n = 0;
  const std::vector<int64_t> slice_shape = slice.SliceShape(full_shape);
  if (!NumElements(full_shape, &full_n) || full_n > kMaxCheckedElements) return;
  FUZZ_CHECK(NumElements(slice_shape, &slice_n) && slice_n <= full_n);

  const TensorSlice all = TensorSlice::Full(static_cast<int>(full_shape.size()));
  std::vector<int32_t> full(static_cast<size_t>(full_n));
  for (int64_t i = 0; i < full_n; ++i) full[i] = static_cast<int32_t>(i);
  std::vector<int32_t> part(static_cast<size_t>(slice_n), -1);
  const size_t elem = sizeof(int32_t);
  FUZZ_CHECK(CopySliceIntersection(reinterpret_cast<const char*>(full.data()), all,
                                   reinterpret_cast<char*>(part.data()), slice, full_shape,
                                   elem) == slice_n);
  for (int64_t j = 0; j < slice_n; ++j) {
    FUZZ_CHECK(part[j] == FullIndexOf(j, slice, full_shape, slice_shape));
  }
  std::vector<int32_t> back(static_cast<size_t>(full_n), -1);
  FUZZ_CHECK(CopySliceIntersection(reinterpret_cast<const char*>(part.data()), slice,
                                   reinterpret_cast<char*>(back.data()), all, full_shape,
                                   elem) == slice_n);
  int64_t restored = 0;
  for (int64_t i = 0; i < full_n; ++i) {
    FUZZ_CHECK(back[i] == -1 || back[i] == i);
    restored += back[i] == i;
  }
  FUZZ_CHECK(restored == slice_n);
}

void FuzzShapeAndSlice(absl::string_view spec) {
  std::vector<int64_t> shape;
  TensorSlice slice;
  absl::Status s = ParseShapeAndSlice(spec, &shape, &slice);
  if (!s.ok()) return CheckFailure(s);
  FUZZ_CHECK(!shape.empty());
  FUZZ_CHECK(static_cast<size_t>(slice.rank()) == shape.size());
  FUZZ_CHECK(slice.CheckFits(shape).ok());

  std::vector<int64_t> shape2;
  TensorSlice slice2;
  FUZZ_CHECK(ParseShapeAndSlice(FormatShapeAndSlice(shape, slice), &shape2, &slice2).ok());
  FUZZ_CHECK(shape2 == shape && slice2 == slice);

  // Intersecting a slice with itself or the full tensor resolves its '-'s.
  const std::vector<int64_t> slice_shape = slice.SliceShape(shape);
  bool empty = false;
  for (int64_t len : slice_shape) empty = empty || len == 0;
  TensorSlice self;
  FUZZ_CHECK(TensorSlice::Intersect(slice, slice, shape, &self) == !empty);
  if (!empty) {
    FUZZ_CHECK(self.SliceShape(shape) == slice_shape);
    TensorSlice with_full;
    FUZZ_CHECK(TensorSlice::Intersect(slice, TensorSlice::Full(slice.rank()), shape, &with_full));
    FUZZ_CHECK(with_full == self);
  }
  CheckKeyRoundTrip(spec, slice);
  CheckCopies(shape, slice);
}

void FuzzSliceKey(absl::string_view key) {
  std::string name;
  TensorSlice slice;
  absl::Status s = DecodeSliceKey(key, &name, &slice);
  if (!s.ok()) return CheckFailure(s);
  // The decoder accepts only canonical keys, so re-encoding is exact.
  FUZZ_CHECK(EncodeSliceKey(name, slice) == key);
  absl::StatusOr<TensorSlice> reparsed = TensorSlice::Parse(slice.ToString());
  FUZZ_CHECK(reparsed.ok() && *reparsed == slice);
}

// Each successful OrderedCode read re-encodes to exactly the bytes consumed.
void FuzzOrderedCode(absl::string_view data) {
  {
    absl::string_view in = data;
    uint64_t v = 0;
    absl::Status s = internal::ReadNumIncreasing(&in, &v);
    if (s.ok()) {
      std::string enc;
      internal::AppendNumIncreasing(v, &enc);
      FUZZ_CHECK(enc == data.substr(0, data.size() - in.size()));
    } else {
      CheckFailure(s);
      FUZZ_CHECK(in.size() == data.size());
    }
  }
  {
    absl::string_view in = data;
    int64_t v = 0;
    absl::Status s = internal::ReadSignedNumIncreasing(&in, &v);
    if (s.ok()) {
      std::string enc;
      internal::AppendSignedNumIncreasing(v, &enc);
      FUZZ_CHECK(enc == data.substr(0, data.size() - in.size()));
    } else {
      CheckFailure(s);
      FUZZ_CHECK(in.size() == data.size());
    }
  }
  {
    absl::string_view in = data;
    std::string v;
    absl::Status s = internal::ReadString(&in, &v);
    if (s.ok()) {
      std::string enc;
      internal::AppendString(v, &enc);
      FUZZ_CHECK(enc == data.substr(0, data.size() - in.size()));
    } else {
      CheckFailure(s);
      FUZZ_CHECK(in.size() == data.size());
    }
  }
}

}  // namespace
}  // namespace cairn

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  cairn::FuzzSliceText(input);
  cairn::FuzzShapeAndSlice(input);
  cairn::FuzzSliceKey(input);
  cairn::FuzzOrderedCode(input);
  return 0;
}
