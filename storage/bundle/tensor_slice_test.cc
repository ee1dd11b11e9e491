#include "storage/bundle/tensor_slice.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/bundle/internal/ordered_code.h"

namespace cairn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

// Bytes from a list of values, e.g. Bytes({0x00, 0x66}).
std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

std::string Num(uint64_t v) {
  std::string s;
  internal::AppendNumIncreasing(v, &s);
  return s;
}
std::string Signed(int64_t v) {
  std::string s;
  internal::AppendSignedNumIncreasing(v, &s);
  return s;
}
std::string Str(absl::string_view v) {
  std::string s;
  internal::AppendString(v, &s);
  return s;
}

// ------------------------------------------------------------- OrderedCode

TEST(OrderedCodeTest, NumIncreasingExamples) {
  EXPECT_EQ(Num(0), Bytes({0x00}));
  EXPECT_EQ(Num(2), Bytes({0x01, 0x02}));
  EXPECT_EQ(Num(300), Bytes({0x02, 0x01, 0x2c}));
  EXPECT_EQ(Num(std::numeric_limits<uint64_t>::max()),
            Bytes({0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(OrderedCodeTest, NumIncreasingRoundTripAndConsumesOnlyItsBytes) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{1} << 40,
                     std::numeric_limits<uint64_t>::max()}) {
    std::string enc = Num(v) + "tail";
    absl::string_view in = enc;
    uint64_t out = 12345;
    ASSERT_TRUE(internal::ReadNumIncreasing(&in, &out).ok()) << v;
    EXPECT_EQ(out, v);
    EXPECT_EQ(in, "tail");
  }
}

TEST(OrderedCodeTest, NumIncreasingRejectsMalformed) {
  for (const std::string& bad : {std::string(), Bytes({0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9}),
                                 Bytes({0x02, 0x01}), Bytes({0x02, 0x00, 0x05})}) {
    absl::string_view in = bad;
    uint64_t out = 7;
    absl::Status s = internal::ReadNumIncreasing(&in, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(in.size(), bad.size()) << "input must be left unconsumed";
    EXPECT_EQ(out, 7u);
  }
}

TEST(OrderedCodeTest, StringEscapes) {
  EXPECT_EQ(Str("foo"), Bytes({0x66, 0x6f, 0x6f, 0x00, 0x01}));
  EXPECT_EQ(Str(""), Bytes({0x00, 0x01}));
  EXPECT_EQ(Str(Bytes({0x00, 0x41, 0xff})), Bytes({0x00, 0xff, 0x41, 0xff, 0x00, 0x00, 0x01}));
}

TEST(OrderedCodeTest, StringRoundTrip) {
  for (const std::string& v : {std::string(), std::string("foo"), Bytes({0x00}), Bytes({0xff}),
                               Bytes({0x00, 0x01, 0xff, 0x00, 0x00, 0xff, 0xff}),
                               std::string("a/b:c")}) {
    std::string enc = Str(v) + "x";
    absl::string_view in = enc;
    std::string out;
    ASSERT_TRUE(internal::ReadString(&in, &out).ok());
    EXPECT_EQ(out, v);
    EXPECT_EQ(in, "x");
  }
}

TEST(OrderedCodeTest, StringRejectsMalformed) {
  for (const std::string& bad :
       {std::string(), std::string("foo"), Bytes({0x66, 0x00}), Bytes({0x66, 0xff}),
        Bytes({0x00, 0x02}), Bytes({0xff, 0x01, 0x00, 0x01}), Bytes({0x00, 0xff, 0x00})}) {
    absl::string_view in = bad;
    std::string out = "unchanged";
    absl::Status s = internal::ReadString(&in, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(in.size(), bad.size());
    EXPECT_EQ(out, "unchanged");
  }
}

TEST(OrderedCodeTest, SignedNumIncreasingSpecExamples) {
  EXPECT_EQ(Signed(0), Bytes({0x80}));
  EXPECT_EQ(Signed(5), Bytes({0x85}));
  EXPECT_EQ(Signed(-1), Bytes({0x7f}));
  EXPECT_EQ(Signed(-64), Bytes({0x40}));
  EXPECT_EQ(Signed(63), Bytes({0xbf}));
  EXPECT_EQ(Signed(64), Bytes({0xc0, 0x40}));
  EXPECT_EQ(Signed(-65), Bytes({0x3f, 0xbf}));
  EXPECT_EQ(Signed(0x424242), Bytes({0xf0, 0x42, 0x42, 0x42}));
  EXPECT_EQ(Signed(-0x800), Bytes({0x38, 0x00}));
  EXPECT_EQ(Signed(100), Bytes({0xc0, 0x64}));
  EXPECT_EQ(Signed(1000), Bytes({0xc3, 0xe8}));
  EXPECT_EQ(Signed(kInt64Max), Bytes({0xff, 0xc0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(Signed(kInt64Min), Bytes({0x00, 0x3f, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}));
}

// Boundary values for every encoding length, both signs.
std::vector<int64_t> SignedTestValues() {
  std::vector<int64_t> values = {0, 1, -1, 63, 64, -64, -65, kInt64Max, kInt64Min};
  for (int n = 1; n <= 9; ++n) {
    const int64_t limit = int64_t{1} << (7 * n - 1);  // n bytes hold [-limit, limit)
    for (int64_t v : {limit - 1, limit, limit + 1, -limit, -limit - 1, -limit + 1}) {
      values.push_back(v);
    }
  }
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2000; ++i) {
    const int64_t r = static_cast<int64_t>(rng());
    values.push_back(r >> (rng() % 64));
  }
  return values;
}

TEST(OrderedCodeTest, SignedNumIncreasingRoundTrip) {
  for (int64_t v : SignedTestValues()) {
    const std::string enc = Signed(v);
    EXPECT_EQ(enc.size(), static_cast<size_t>(internal::SignedNumIncreasingLength(v)));
    std::string with_tail = enc + "\x01";
    absl::string_view in = with_tail;
    int64_t out = 0;
    ASSERT_TRUE(internal::ReadSignedNumIncreasing(&in, &out).ok()) << v;
    EXPECT_EQ(out, v);
    EXPECT_EQ(in, "\x01");
  }
}

TEST(OrderedCodeTest, SignedNumIncreasingPreservesOrder) {
  std::vector<int64_t> values = SignedTestValues();
  std::sort(values.begin(), values.end());
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i - 1] == values[i]) continue;
    EXPECT_LT(Signed(values[i - 1]), Signed(values[i])) << values[i - 1] << " " << values[i];
  }
}

TEST(OrderedCodeTest, SignedNumIncreasingRejectsMalformed) {
  const std::string bad_inputs[] = {
      std::string(),
      Bytes({0xc3}),                                                  // truncated 2-byte
      Bytes({0x38}),                                                  // truncated negative
      Bytes({0xff}),                                                  // truncated prefix
      Bytes({0xc0, 0x05}),                                            // overlong 5
      Bytes({0x3f, 0xff}),                                            // overlong -1
      Bytes({0xff, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),                 // 11-byte prefix
      Bytes({0xff, 0xc0, 0x80, 0, 0, 0, 0, 0, 0, 0}),                 // 2^63
      Bytes({0xff, 0xc1, 0x00, 0, 0, 0, 0, 0, 0, 0}),                 // 2^64
      Bytes({0x00, 0x3f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),  // -2^63-1
  };
  for (const std::string& bad : bad_inputs) {
    absl::string_view in = bad;
    int64_t out = 99;
    absl::Status s = internal::ReadSignedNumIncreasing(&in, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(in.size(), bad.size());
    EXPECT_EQ(out, 99);
  }
}

// ------------------------------------------------------------- TensorSlice

TEST(TensorSliceTest, ParseAndToString) {
  absl::StatusOr<TensorSlice> s = TensorSlice::Parse("0,250:-");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->rank(), 2);
  EXPECT_EQ(s->extent(0), (Extent{0, 250}));
  EXPECT_TRUE(s->extent(1).full());
  EXPECT_EQ(s->ToString(), "0,250:-");

  for (absl::string_view text : {"", "-", "0,0", "3,4:-:0,1", "9223372036854775806,1",
                                 "0,9223372036854775807"}) {
    absl::StatusOr<TensorSlice> p = TensorSlice::Parse(text);
    ASSERT_TRUE(p.ok()) << text << ": " << p.status();
    EXPECT_EQ(p->ToString(), text);
  }
  EXPECT_EQ(TensorSlice::Parse("")->rank(), 0);
}

TEST(TensorSliceTest, ParseAcceptsLeadingZeros) {
  absl::StatusOr<TensorSlice> s = TensorSlice::Parse("007,010");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ToString(), "7,10");
}

TEST(TensorSliceTest, ParseRejectsBadText) {
  for (absl::string_view text :
       {"0,", ",5", "a,b", "-1,5", "0,-1", "1,2,3", "0,5::-", ":", "- ", " 0,1", "+1,2", "0x1,2",
        "--", "1", "0,9223372036854775808", "99999999999999999999,1", "9223372036854775807,1",
        "-:", "0,1:"}) {
    absl::StatusOr<TensorSlice> s = TensorSlice::Parse(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr(std::string(text))) << s.status();
  }
}

TEST(TensorSliceTest, ParseErrorQuotesBinaryInputEscaped) {
  absl::StatusOr<TensorSlice> s = TensorSlice::Parse(absl::string_view("\x00\xff", 2));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("\\x00\\xff"));
}

TEST(TensorSliceTest, FullAndCoversAll) {
  const std::vector<int64_t> shape = {4, 5};
  EXPECT_EQ(TensorSlice::Full(2).ToString(), "-:-");
  EXPECT_EQ(TensorSlice::Full(0).rank(), 0);
  EXPECT_TRUE(TensorSlice::Full(2).CoversAll(shape));
  EXPECT_TRUE(TensorSlice::Parse("0,4:-")->CoversAll(shape));
  EXPECT_TRUE(TensorSlice::Parse("0,4:0,5")->CoversAll(shape));
  EXPECT_FALSE(TensorSlice::Parse("0,3:-")->CoversAll(shape));
  EXPECT_FALSE(TensorSlice::Parse("1,3:-")->CoversAll(shape));
  EXPECT_TRUE(TensorSlice().CoversAll({}));
}

TEST(TensorSliceTest, CheckFits) {
  EXPECT_TRUE(TensorSlice::Parse("0,4:1,4")->CheckFits({4, 5}).ok());
  EXPECT_TRUE(TensorSlice::Parse("-:5,0")->CheckFits({4, 5}).ok());
  EXPECT_TRUE(TensorSlice().CheckFits({}).ok());

  absl::Status rank = TensorSlice::Parse("0,4")->CheckFits({4, 5});
  EXPECT_EQ(rank.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rank.message(), HasSubstr("rank"));

  absl::Status oob = TensorSlice::Parse("0,4:1,5")->CheckFits({4, 5});
  EXPECT_EQ(oob.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(oob.message(), HasSubstr("\"0,4:1,5\""));

  EXPECT_FALSE(TensorSlice::Parse("-")->CheckFits({-1}).ok());
  EXPECT_FALSE(TensorSlice({Extent{2, Extent::kFullLength}}).CheckFits({4}).ok());
  EXPECT_FALSE(TensorSlice({Extent{-1, 2}}).CheckFits({4}).ok());
  EXPECT_FALSE(TensorSlice({Extent{0, -2}}).CheckFits({4}).ok());
  EXPECT_FALSE(TensorSlice({Extent{kInt64Max, 1}}).CheckFits({kInt64Max}).ok());
  EXPECT_TRUE(TensorSlice({Extent{kInt64Max - 1, 1}}).CheckFits({kInt64Max}).ok());
}

TEST(TensorSliceTest, SliceShape) {
  EXPECT_THAT(TensorSlice::Parse("0,250:-")->SliceShape({1000, 64}), ElementsAre(250, 64));
  EXPECT_TRUE(TensorSlice().SliceShape({}).empty());
}

// ---------------------------------------------------------- ShapeAndSlice

TEST(ShapeAndSliceTest, ParsesHeaderExample) {
  std::vector<int64_t> shape;
  TensorSlice slice;
  ASSERT_TRUE(ParseShapeAndSlice("1000 64 0,250:-", &shape, &slice).ok());
  EXPECT_THAT(shape, ElementsAre(1000, 64));
  EXPECT_EQ(slice.ToString(), "0,250:-");
  EXPECT_THAT(slice.SliceShape(shape), ElementsAre(250, 64));
  EXPECT_EQ(FormatShapeAndSlice(shape, slice), "1000 64 0,250:-");
}

TEST(ShapeAndSliceTest, RoundTrips) {
  for (absl::string_view spec : {"10 5 0,5:0,5", "10 -", "0 5 -:0,5", "0 5 0,0:-", "3 4 5 1,2:-:4,1",
                                 "9223372036854775807 9223372036854775806,1"}) {
    std::vector<int64_t> shape;
    TensorSlice slice;
    absl::Status s = ParseShapeAndSlice(spec, &shape, &slice);
    ASSERT_TRUE(s.ok()) << spec << ": " << s;
    EXPECT_EQ(FormatShapeAndSlice(shape, slice), spec);
  }
}

TEST(ShapeAndSliceTest, RejectsBadSpecs) {
  for (absl::string_view spec :
       {"", "10 5", "10", "-", "10 5 0,5", "10 5 0,11:-", "10 5 5,6:-", "0 5 0,1:-", "-10 5 -:-",
        "10  5 -:-", " 10 -", "10 - ", "10\t-", "99999999999999999999 -", "10 5 -:-:-",
        "10 5 0,5:0,5 ", "x -", "10 0,-1"}) {
    std::vector<int64_t> shape = {77};
    TensorSlice slice = TensorSlice::Full(3);
    absl::Status s = ParseShapeAndSlice(spec, &shape, &slice);
    ASSERT_FALSE(s.ok()) << spec;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(shape, ElementsAre(77)) << "outputs untouched on error";
    EXPECT_EQ(slice.rank(), 3);
  }
  std::vector<int64_t> shape;
  TensorSlice slice;
  absl::Status s = ParseShapeAndSlice("10 5 0,11:-", &shape, &slice);
  EXPECT_THAT(s.message(), HasSubstr("0,11:-"));
  s = ParseShapeAndSlice("10 5", &shape, &slice);
  EXPECT_THAT(s.message(), HasSubstr("\"10 5\""));
}

TEST(ShapeAndSliceTest, RankZeroFormatsEmpty) {
  EXPECT_EQ(FormatShapeAndSlice({}, TensorSlice()), "");
}

// ---------------------------------------------------------------- slice keys

TEST(SliceKeyTest, SpecWorkedExample) {
  const std::string key1 = EncodeSliceKey("foo", *TensorSlice::Parse("-:0,1"));
  const std::string key2 = EncodeSliceKey("foo", *TensorSlice::Parse("-:1,9"));
  EXPECT_EQ(key1, Bytes({0x00, 0x66, 0x6f, 0x6f, 0x00, 0x01, 0x01, 0x02, 0x80, 0x7f, 0x80, 0x81}));
  EXPECT_EQ(key2, Bytes({0x00, 0x66, 0x6f, 0x6f, 0x00, 0x01, 0x01, 0x02, 0x80, 0x7f, 0x81, 0x89}));
  // Table order from the spec: "", slice key 1, slice key 2, "foo".
  EXPECT_LT(std::string(), key1);
  EXPECT_LT(key1, key2);
  EXPECT_LT(key2, std::string("foo"));
}

// Lowercase hex of `s`.
std::string Hex(absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// Keys computed independently by shared/tools/tfbundle.py encode_slice_key.
TEST(SliceKeyTest, MatchesPythonEncoder) {
  EXPECT_EQ(Hex(EncodeSliceKey(Bytes({'a', 0x00, 'b', 0xff, 'c'}),
                               *TensorSlice::Parse("-:4242424242,1000000000000:"
                                                   "9223372036854775806,1"))),
            "006100ff62ff006300010103807ff8fcde41b2fce8d4a51000ffc07ffffffffffffffe81");
  EXPECT_EQ(Hex(EncodeSliceKey("42", *TensorSlice::Parse("689230811806,71214217469:0,0"))),
            "00343200010102fca0795b929efc1094b2b8fd8080");
}

TEST(SliceKeyTest, RoundTrips) {
  const std::string names[] = {"", "foo", "layer/kernel", Bytes({0x00}), Bytes({0xff}),
                               Bytes({0x00, 0xff, 0x00, 0x01, 0xff, 0x00})};
  const TensorSlice slices[] = {
      TensorSlice(),
      *TensorSlice::Parse("-"),
      *TensorSlice::Parse("0,0"),
      *TensorSlice::Parse("0,250:-"),
      *TensorSlice::Parse("9223372036854775806,1:-:0,9223372036854775807"),
      *TensorSlice::Parse("64,64:8191,8192:4242424242,1000000000000"),
  };
  for (const std::string& name : names) {
    for (const TensorSlice& slice : slices) {
      const std::string key = EncodeSliceKey(name, slice);
      std::string out_name = "x";
      TensorSlice out_slice = TensorSlice::Full(7);
      absl::Status s = DecodeSliceKey(key, &out_name, &out_slice);
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_EQ(out_name, name);
      EXPECT_EQ(out_slice, slice) << slice.ToString() << " vs " << out_slice.ToString();
    }
  }
}

TEST(SliceKeyTest, RejectsMalformed) {
  const std::string good = EncodeSliceKey("foo", *TensorSlice::Parse("-:0,1"));
  std::string negative_start = Bytes({0x00, 0x66, 0x00, 0x01, 0x01, 0x7f, 0x81});  // start -1
  std::string full_nonzero = Bytes({0x00, 0x66, 0x00, 0x01, 0x01, 0x81, 0x7f});    // 1,-1
  std::string length_m2 = Bytes({0x00, 0x66, 0x00, 0x01, 0x01, 0x80, 0x7e});       // 0,-2
  std::string end_overflow = Bytes({0x00, 0x66, 0x00, 0x01, 0x01});
  end_overflow += Signed(kInt64Max) + Signed(1);
  const std::string bad_keys[] = {
      std::string(),
      good.substr(0, good.size() - 1),  // truncated
      good + "\x80",                    // trailing byte
      "\x01" + good.substr(1),          // leading NumIncreasing(1)
      Bytes({0x00, 0x66, 0x00, 0x01, 0x01}),              // rank 1, no extents
      Bytes({0x00, 0x66, 0x00, 0x01, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
      Bytes({0x00, 0x66, 0x00, 0x01, 0x01, 0xc0, 0x00, 0x80}),  // overlong start
      Bytes({0x00, 0x66, 0x00, 0x02, 0x00}),                    // bad escape in name
      Bytes({0x00, 0x66, 0x6f}),                                // unterminated name
      negative_start,
      full_nonzero,
      length_m2,
      end_overflow,
  };
  for (const std::string& key : bad_keys) {
    std::string name = "unchanged";
    TensorSlice slice = TensorSlice::Full(3);
    absl::Status s = DecodeSliceKey(key, &name, &slice);
    ASSERT_FALSE(s.ok()) << testing::PrintToString(key);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(name, "unchanged");
    EXPECT_EQ(slice.rank(), 3);
  }
}

// ---------------------------------------------------------------- Intersect

TEST(IntersectTest, Basic) {
  const std::vector<int64_t> shape = {10, 8};
  TensorSlice out;
  ASSERT_TRUE(TensorSlice::Intersect(*TensorSlice::Parse("0,5:-"), *TensorSlice::Parse("3,6:2,2"),
                                     shape, &out));
  EXPECT_EQ(out.ToString(), "3,2:2,2");
  ASSERT_TRUE(TensorSlice::Intersect(TensorSlice::Full(2), TensorSlice::Full(2), shape, &out));
  EXPECT_EQ(out.ToString(), "0,10:0,8");
  ASSERT_TRUE(TensorSlice::Intersect(TensorSlice(), TensorSlice(), {}, &out));
  EXPECT_EQ(out.rank(), 0);
  EXPECT_TRUE(TensorSlice::Intersect(*TensorSlice::Parse("0,5:-"), TensorSlice::Full(2), shape,
                                     nullptr));
}

TEST(IntersectTest, Empty) {
  const std::vector<int64_t> shape = {10, 8};
  TensorSlice out = TensorSlice::Full(1);
  EXPECT_FALSE(TensorSlice::Intersect(*TensorSlice::Parse("0,5:-"), *TensorSlice::Parse("5,5:-"),
                                      shape, &out));
  EXPECT_FALSE(TensorSlice::Intersect(*TensorSlice::Parse("0,5:0,0"), TensorSlice::Full(2), shape,
                                      &out));
  EXPECT_FALSE(TensorSlice::Intersect(*TensorSlice::Parse("0,5:0,4"),
                                      *TensorSlice::Parse("0,5:4,4"), shape, &out));
  EXPECT_FALSE(TensorSlice::Intersect(TensorSlice::Full(2), TensorSlice::Full(2), {0, 8}, &out));
  EXPECT_EQ(out.rank(), 1) << "out untouched when empty";
}

// ------------------------------------------------------ CopySliceIntersection

// Row-major linear index of `coord` within `shape`.
int64_t Linear(const std::vector<int64_t>& coord, const std::vector<int64_t>& shape) {
  int64_t idx = 0;
  for (size_t d = 0; d < shape.size(); ++d) idx = idx * shape[d] + coord[d];
  return idx;
}

// Element-by-element reference implementation.
int64_t NaiveCopy(const char* src, const TensorSlice& src_slice, char* dst,
                  const TensorSlice& dst_slice, const std::vector<int64_t>& full_shape,
                  size_t elem_size) {
  int64_t n = 0;
  EXPECT_TRUE(NumElements(full_shape, &n));
  const std::vector<int64_t> src_shape = src_slice.SliceShape(full_shape);
  const std::vector<int64_t> dst_shape = dst_slice.SliceShape(full_shape);
  const size_t rank = full_shape.size();
  int64_t copied = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> coord(rank), src_coord(rank), dst_coord(rank);
    int64_t rem = i;
    for (size_t d = rank; d-- > 0;) {
      coord[d] = rem % full_shape[d];
      rem /= full_shape[d];
    }
    bool inside = true;
    for (size_t d = 0; d < rank; ++d) {
      src_coord[d] = coord[d] - src_slice.StartOf(d);
      dst_coord[d] = coord[d] - dst_slice.StartOf(d);
      inside = inside && src_coord[d] >= 0 && src_coord[d] < src_shape[d] && dst_coord[d] >= 0 &&
               dst_coord[d] < dst_shape[d];
    }
    if (!inside) continue;
    std::memcpy(dst + Linear(dst_coord, dst_shape) * elem_size,
                src + Linear(src_coord, src_shape) * elem_size, elem_size);
    ++copied;
  }
  return copied;
}

// A buffer for `slice` whose elements hold distinct recognizable bytes.
std::vector<char> Filled(const TensorSlice& slice, const std::vector<int64_t>& full_shape,
                         size_t elem_size, int seed) {
  int64_t n = 0;
  EXPECT_TRUE(NumElements(slice.SliceShape(full_shape), &n));
  std::vector<char> buf(static_cast<size_t>(n) * elem_size);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 7 + seed * 13 + 1);
  return buf;
}

// Runs both implementations on the same inputs and compares the results.
void ExpectCopyMatchesNaive(const TensorSlice& src_slice, const TensorSlice& dst_slice,
                            const std::vector<int64_t>& full_shape, size_t elem_size) {
  SCOPED_TRACE(src_slice.ToString() + " -> " + dst_slice.ToString());
  ASSERT_TRUE(src_slice.CheckFits(full_shape).ok());
  ASSERT_TRUE(dst_slice.CheckFits(full_shape).ok());
  const std::vector<char> src = Filled(src_slice, full_shape, elem_size, 1);
  std::vector<char> expected = Filled(dst_slice, full_shape, elem_size, 2);
  std::vector<char> actual = expected;
  const int64_t n_expected =
      NaiveCopy(src.data(), src_slice, expected.data(), dst_slice, full_shape, elem_size);
  const int64_t n_actual = CopySliceIntersection(src.data(), src_slice, actual.data(), dst_slice,
                                                 full_shape, elem_size);
  EXPECT_EQ(n_actual, n_expected);
  EXPECT_EQ(actual, expected);
}

TEST(CopySliceIntersectionTest, OneDimensional) {
  const std::vector<int64_t> shape = {20};
  for (const char* a : {"-", "0,5", "3,10", "19,1", "0,0"}) {
    for (const char* b : {"-", "0,20", "4,3", "10,10", "5,0"}) {
      ExpectCopyMatchesNaive(*TensorSlice::Parse(a), *TensorSlice::Parse(b), shape, 4);
    }
  }
}

TEST(CopySliceIntersectionTest, RankZero) {
  const char src[3] = {1, 2, 3};
  char dst[3] = {0, 0, 0};
  EXPECT_EQ(CopySliceIntersection(src, TensorSlice(), dst, TensorSlice(), {}, 3), 1);
  EXPECT_EQ(std::string(dst, 3), std::string(src, 3));
}

TEST(CopySliceIntersectionTest, ZeroSizeDimsCopyNothing) {
  const std::vector<int64_t> shape = {4, 0, 3};
  char dst = 'z';
  EXPECT_EQ(CopySliceIntersection(nullptr, TensorSlice::Full(3), &dst, TensorSlice::Full(3), shape,
                                  4),
            0);
  EXPECT_EQ(dst, 'z');
  ExpectCopyMatchesNaive(*TensorSlice::Parse("0,0:-"), TensorSlice::Full(2), {4, 3}, 2);
}

TEST(CopySliceIntersectionTest, RecutFourRowSlicesIntoTwo) {
  const std::vector<int64_t> shape = {8, 6};
  const size_t elem = sizeof(int32_t);
  // The full tensor holds its own linear index.
  std::vector<int32_t> full(48);
  for (int i = 0; i < 48; ++i) full[i] = i;
  const TensorSlice full_slice = TensorSlice::Full(2);

  std::vector<TensorSlice> sources;
  std::vector<std::vector<int32_t>> source_data;
  for (int r = 0; r < 8; r += 2) {
    sources.push_back(TensorSlice({Extent{r, 2}, Extent{}}));
    source_data.emplace_back(12);
    EXPECT_EQ(CopySliceIntersection(reinterpret_cast<const char*>(full.data()), full_slice,
                                    reinterpret_cast<char*>(source_data.back().data()),
                                    sources.back(), shape, elem),
              12);
  }
  for (int r = 0; r < 8; r += 4) {
    const TensorSlice dst_slice({Extent{r, 4}, Extent{0, 6}});
    std::vector<int32_t> dst(24, -1);
    int64_t total = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
      total += CopySliceIntersection(reinterpret_cast<const char*>(source_data[i].data()),
                                     sources[i], reinterpret_cast<char*>(dst.data()), dst_slice,
                                     shape, elem);
      ExpectCopyMatchesNaive(sources[i], dst_slice, shape, elem);
    }
    EXPECT_EQ(total, 24);
    for (int i = 0; i < 24; ++i) EXPECT_EQ(dst[i], r * 6 + i);
  }
}

TEST(CopySliceIntersectionTest, TwoDimensionalColumnsAndBlocks) {
  const std::vector<int64_t> shape = {7, 9};
  const char* specs[] = {"-:-", "-:0,3", "-:3,6", "0,4:-", "2,3:4,4", "6,1:8,1", "1,5:0,9", "3,4:2,7"};
  for (const char* a : specs) {
    for (const char* b : specs) {
      ExpectCopyMatchesNaive(*TensorSlice::Parse(a), *TensorSlice::Parse(b), shape, 3);
    }
  }
}

// A random slice of `shape`, sometimes full, sometimes whole-dim, sometimes
// empty.
TensorSlice RandomSlice(const std::vector<int64_t>& shape, std::mt19937* rng) {
  std::vector<Extent> extents;
  for (int64_t dim : shape) {
    const int kind = static_cast<int>((*rng)() % 5);
    if (kind == 0) {
      extents.push_back(Extent{});
    } else if (kind == 1) {
      extents.push_back(Extent{0, dim});
    } else {
      const int64_t start = static_cast<int64_t>((*rng)() % (dim + 1));
      const int64_t length = static_cast<int64_t>((*rng)() % (dim - start + 1));
      extents.push_back(Extent{start, length});
    }
  }
  return TensorSlice(std::move(extents));
}

TEST(CopySliceIntersectionTest, RandomThreeAndFourDimensional) {
  std::mt19937 rng(7);
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{3, 4, 5}, std::vector<int64_t>{2, 3, 1, 4},
        std::vector<int64_t>{5, 1, 6}}) {
    for (int i = 0; i < 400; ++i) {
      const size_t elem = 1 + rng() % 5;
      ExpectCopyMatchesNaive(RandomSlice(shape, &rng), RandomSlice(shape, &rng), shape, elem);
    }
  }
}

TEST(CopySliceIntersectionTest, ThreeDimensionalRecut) {
  // Slices along the middle dimension copied into slices along the first.
  const std::vector<int64_t> shape = {4, 6, 5};
  for (int m = 0; m < 6; m += 3) {
    for (int f = 0; f < 4; f += 2) {
      ExpectCopyMatchesNaive(TensorSlice({Extent{}, Extent{m, 3}, Extent{}}),
                             TensorSlice({Extent{f, 2}, Extent{}, Extent{}}), shape, 8);
    }
  }
}

// ------------------------------------------------------------- NumElements

TEST(NumElementsTest, Works) {
  int64_t n = -7;
  ASSERT_TRUE(NumElements({}, &n));
  EXPECT_EQ(n, 1);
  ASSERT_TRUE(NumElements({2, 3, 4}, &n));
  EXPECT_EQ(n, 24);
  ASSERT_TRUE(NumElements({0, kInt64Max}, &n));
  EXPECT_EQ(n, 0);
  ASSERT_TRUE(NumElements({kInt64Max, 1}, &n));
  EXPECT_EQ(n, kInt64Max);
}

TEST(NumElementsTest, RejectsNegativeAndOverflow) {
  int64_t n = 5;
  EXPECT_FALSE(NumElements({-1}, &n));
  EXPECT_FALSE(NumElements({3, -1, 0}, &n));
  EXPECT_FALSE(NumElements({int64_t{1} << 32, int64_t{1} << 32}, &n));
  EXPECT_FALSE(NumElements({kInt64Max, 2}, &n));
  EXPECT_FALSE(NumElements({int64_t{1} << 62, 2}, &n));
  EXPECT_EQ(n, 5) << "output untouched on failure";
}

}  // namespace
}  // namespace cairn
