#include "storage/bundle/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

// A ReadableFile over a string. `fake_size`, when set, is reported by Size()
// instead of the content's length (reads past the content fail).
class MemoryFile : public ReadableFile {
 public:
  explicit MemoryFile(std::string contents, uint64_t fake_size = UINT64_MAX)
      : contents_(std::move(contents)),
        size_(fake_size == UINT64_MAX ? contents_.size() : fake_size) {}

  absl::Status ReadAt(uint64_t offset, size_t n, char* dst) const override {
    if (fail_reads_) return absl::UnavailableError(absl::StrCat(name_, ": injected failure"));
    if (offset > contents_.size() || n > contents_.size() - offset) {
      return absl::OutOfRangeError(absl::StrCat(name_, ": read past the end"));
    }
    contents_.copy(dst, n, offset);
    return absl::OkStatus();
  }
  uint64_t Size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void set_fail_reads() { fail_reads_ = true; }

 private:
  std::string contents_;
  uint64_t size_;
  bool fail_reads_ = false;
  std::string name_ = "mem/model.safetensors";
};

std::string LengthPrefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

SafetensorsTensor Tensor(std::string name, DataType dtype, std::vector<int64_t> shape) {
  SafetensorsTensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  return t;
}

std::string Build(std::vector<SafetensorsTensor>* tensors,
                  const std::map<std::string, std::string>& metadata = {}) {
  absl::StatusOr<std::string> prefix = BuildSafetensorsPrefix(tensors, metadata);
  EXPECT_TRUE(prefix.ok()) << prefix.status();
  return prefix.ok() ? *prefix : std::string();
}

// ---------------------------------------------------------------------------
// dtype names

TEST(SafetensorsDtypeTest, MapsEveryExchangedType) {
  const std::pair<const char*, DataType> kPairs[] = {
      {"F16", DataType::kHalf},    {"BF16", DataType::kBfloat16}, {"F32", DataType::kFloat},
      {"F64", DataType::kDouble},  {"I8", DataType::kInt8},       {"I16", DataType::kInt16},
      {"I32", DataType::kInt32},   {"I64", DataType::kInt64},     {"U8", DataType::kUint8},
      {"U16", DataType::kUint16},  {"U32", DataType::kUint32},    {"U64", DataType::kUint64},
      {"BOOL", DataType::kBool},
  };
  for (const auto& [name, dtype] : kPairs) {
    DataType parsed = DataType::kInvalid;
    EXPECT_TRUE(DataTypeFromSafetensorsName(name, &parsed)) << name;
    EXPECT_EQ(parsed, dtype) << name;
    EXPECT_EQ(SafetensorsName(dtype), name);
  }
}

TEST(SafetensorsDtypeTest, RejectsOtherNamesAndTypes) {
  DataType parsed = DataType::kInvalid;
  for (const char* name : {"", "f32", "F8_E4M3", "F8_E5M2", "C64", "STRING", "F32 "}) {
    EXPECT_FALSE(DataTypeFromSafetensorsName(name, &parsed)) << name;
  }
  for (DataType dtype : {DataType::kInvalid, DataType::kString, DataType::kComplex64,
                         DataType::kComplex128, DataType::kQint8, DataType::kResource,
                         DataType::kVariant, static_cast<DataType>(999)}) {
    EXPECT_EQ(SafetensorsName(dtype), "") << static_cast<int>(dtype);
  }
}

TEST(SafetensorsTest, SliceMetadataKey) {
  EXPECT_EQ(SliceMetadataKey("emb/weights"), "cairn.slice.emb/weights");
}

// ---------------------------------------------------------------------------
// BuildSafetensorsPrefix: exact bytes

TEST(SafetensorsBuildTest, ExactBytesWithMetadata) {
  std::vector<SafetensorsTensor> tensors = {Tensor("b", DataType::kFloat, {2}),
                                            Tensor("a", DataType::kInt8, {3})};
  // F32 sorts before I8: b = [0, 8), a = [8, 11). The JSON is 132 bytes, padded
  // with 4 spaces to 136 = 0x88.
  const std::string expected =
      std::string("\x88\0\0\0\0\0\0\0", 8) +
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[8,11]}}"
      "    ";
  EXPECT_EQ(Build(&tensors, {{"k", "v"}}), expected);
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors[0].name, "b");
  EXPECT_EQ(tensors[0].begin, 0u);
  EXPECT_EQ(tensors[0].end, 8u);
  EXPECT_EQ(tensors[1].name, "a");
  EXPECT_EQ(tensors[1].begin, 8u);
  EXPECT_EQ(tensors[1].end, 11u);
}

// The byte vectors below are those the reference implementation's own unit
// tests (huggingface/safetensors, tensor.rs) expect from its serializer.
TEST(SafetensorsBuildTest, MatchesReferenceSerialization) {
  std::vector<SafetensorsTensor> tensors = {Tensor("attn.0", DataType::kFloat, {1, 2, 3})};
  EXPECT_EQ(Build(&tensors), std::string("\x40\0\0\0\0\0\0\0", 8) +
                                 "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],"
                                 "\"data_offsets\":[0,24]}}");
}

TEST(SafetensorsBuildTest, MatchesReferenceForcedAlignment) {
  std::vector<SafetensorsTensor> tensors = {Tensor("attn0", DataType::kFloat, {1, 1, 2, 3})};
  EXPECT_EQ(Build(&tensors), std::string("\x48\0\0\0\0\0\0\0", 8) +
                                 "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],"
                                 "\"data_offsets\":[0,24]}}       ");
}

TEST(SafetensorsBuildTest, MatchesReferenceEmpty) {
  std::vector<SafetensorsTensor> tensors;
  EXPECT_EQ(Build(&tensors), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  EXPECT_EQ(Build(&tensors, {{"framework", "pt"}}),
            std::string("\x28\0\0\0\0\0\0\0", 8) +
                "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
}

TEST(SafetensorsBuildTest, LayoutOrderFollowsReferenceDtypeOrder) {
  // Reference order, descending: U64 I64 F64 F32 U32 I32 BF16 F16 U16 I16 I8
  // U8 BOOL; names ascending within one dtype.
  std::vector<SafetensorsTensor> tensors = {
      Tensor("i", DataType::kBool, {1}),     Tensor("a", DataType::kDouble, {1}),
      Tensor("k", DataType::kInt8, {1}),     Tensor("z", DataType::kUint64, {1}),
      Tensor("c2", DataType::kFloat, {1}),   Tensor("b", DataType::kInt32, {1}),
      Tensor("e", DataType::kBfloat16, {1}), Tensor("m", DataType::kInt64, {1}),
      Tensor("c1", DataType::kFloat, {1}),   Tensor("f", DataType::kHalf, {1}),
      Tensor("g", DataType::kInt16, {1}),    Tensor("j", DataType::kUint8, {1}),
      Tensor("d", DataType::kUint32, {1}),   Tensor("h", DataType::kUint16, {1}),
      Tensor("C", DataType::kFloat, {1}),
  };
  Build(&tensors);
  std::vector<std::string> names;
  for (const SafetensorsTensor& t : tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"z", "m", "a", "C", "c1", "c2", "d", "b", "e", "f",
                                             "h", "g", "k", "j", "i"}));
  uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    EXPECT_EQ(t.begin, offset) << t.name;
    offset = t.end;
  }
  EXPECT_EQ(offset, 8u + 8 + 8 + 4 * 3 + 4 + 4 + 2 + 2 + 2 + 2 + 1 + 1 + 1);
}

TEST(SafetensorsBuildTest, NamesSortBytewise) {
  std::vector<SafetensorsTensor> tensors = {Tensor("\xc3\xa9", DataType::kFloat, {}),
                                            Tensor("z", DataType::kFloat, {}),
                                            Tensor("Z", DataType::kFloat, {})};
  Build(&tensors);
  EXPECT_EQ(tensors[0].name, "Z");
  EXPECT_EQ(tensors[1].name, "z");
  EXPECT_EQ(tensors[2].name, "\xc3\xa9");
}

TEST(SafetensorsBuildTest, EscapesStringsLikeSerdeJson) {
  std::vector<SafetensorsTensor> tensors = {
      Tensor(std::string("q\"b\\s/n\nt\tc\x01\x1f\x7f\xc3\xa9", 16), DataType::kUint8, {0})};
  const std::string prefix = Build(&tensors, {{"k\b", "v\f\r"}});
  const std::string json = prefix.substr(8);
  EXPECT_EQ(json,
            "{\"__metadata__\":{\"k\\b\":\"v\\f\\r\"},"
            "\"q\\\"b\\\\s/n\\nt\\tc\\u0001\\u001f\x7f\xc3\xa9\":"
            "{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"
            "       ");  // 113 bytes + 7 spaces
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(json, 0);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->tensors[0].name, tensors[0].name);
  EXPECT_EQ(header->metadata.at("k\b"), "v\f\r");
}

TEST(SafetensorsBuildTest, HeaderIsAlwaysPaddedToEightBytes) {
  for (int len = 0; len < 20; ++len) {
    std::vector<SafetensorsTensor> tensors = {
        Tensor(std::string(len, 'x'), DataType::kInt16, {len})};
    const std::string prefix = Build(&tensors);
    ASSERT_GE(prefix.size(), 8u);
    EXPECT_EQ(prefix.size() % 8, 0u) << len;
    EXPECT_EQ(prefix.substr(0, 8), LengthPrefix(prefix.size() - 8));
    const size_t padding = prefix.size() - 1 - prefix.find_last_not_of(' ');
    EXPECT_LT(padding, 8u) << len;
  }
}

// ---------------------------------------------------------------------------
// BuildSafetensorsPrefix: errors

void ExpectBuildError(std::vector<SafetensorsTensor> tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::string& substring) {
  const std::vector<SafetensorsTensor> before = tensors;
  absl::StatusOr<std::string> prefix = BuildSafetensorsPrefix(&tensors, metadata);
  ASSERT_FALSE(prefix.ok());
  EXPECT_EQ(prefix.status().code(), absl::StatusCode::kInvalidArgument) << prefix.status();
  EXPECT_THAT(std::string(prefix.status().message()), HasSubstr(substring));
  // The vector is untouched on failure.
  ASSERT_EQ(tensors.size(), before.size());
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(tensors[i].name, before[i].name);
}

TEST(SafetensorsBuildTest, RejectsWhatSafetensorsCannotHold) {
  ExpectBuildError({Tensor("ok", DataType::kFloat, {1}), Tensor("words", DataType::kString, {2})},
                   {}, "\"words\"");
  ExpectBuildError({Tensor("c", DataType::kComplex64, {1})}, {}, "complex64");
  ExpectBuildError({Tensor("x", DataType::kInvalid, {1})}, {}, "\"x\"");
  ExpectBuildError({Tensor("dup", DataType::kFloat, {1}), Tensor("dup", DataType::kInt8, {1})},
                   {}, "duplicate tensor name \"dup\"");
  ExpectBuildError({Tensor("__metadata__", DataType::kFloat, {1})}, {}, "__metadata__");
  ExpectBuildError({Tensor("neg", DataType::kFloat, {2, -1})}, {}, "negative dimension");
  ExpectBuildError({Tensor("big", DataType::kFloat, {INT64_MAX, INT64_MAX})}, {}, "overflow");
  ExpectBuildError({Tensor("big", DataType::kDouble, {int64_t{1} << 61})}, {}, "overflow");
  ExpectBuildError({Tensor("deep", DataType::kFloat, std::vector<int64_t>(65, 1))}, {}, "rank");
  ExpectBuildError({Tensor("bad\xff", DataType::kFloat, {1})}, {}, "UTF-8");
  ExpectBuildError({}, {{"k", "bad\xc3"}}, "UTF-8");
  // Each tensor fits, but not all of them together.
  ExpectBuildError({Tensor("a", DataType::kUint8, {INT64_MAX}),
                    Tensor("b", DataType::kUint8, {INT64_MAX}),
                    Tensor("c", DataType::kUint8, {2})},
                   {}, "overflow");
}

// ---------------------------------------------------------------------------
// Round trip

TEST(SafetensorsRoundTripTest, BuildThenRead) {
  std::vector<SafetensorsTensor> tensors = {
      Tensor("layer/kernel", DataType::kFloat, {3, 4}),
      Tensor("layer/bias", DataType::kHalf, {4}),
      Tensor("step", DataType::kInt64, {}),
      Tensor("mask", DataType::kBool, {2, 0, 5}),
      Tensor("emb", DataType::kBfloat16, {7, 2}),
      Tensor("ids", DataType::kUint32, {5}),
  };
  const std::map<std::string, std::string> metadata = {
      {SliceMetadataKey("emb"), "10 2 3,7:-"}, {"format", "cairn"}};
  const std::string prefix = Build(&tensors, metadata);
  uint64_t data_size = 0;
  for (const SafetensorsTensor& t : tensors) data_size = std::max(data_size, t.end);
  EXPECT_EQ(data_size, 48u + 8 + 0 + 28 + 20 + 8);

  MemoryFile file(prefix + std::string(data_size, '\x5a'));
  absl::StatusOr<SafetensorsHeader> header = ReadSafetensorsHeader(file);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->data_start, prefix.size());
  EXPECT_EQ(header->metadata, metadata);
  ASSERT_EQ(header->tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensor& want = tensors[i];
    const SafetensorsTensor& got = header->tensors[i];
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.dtype, want.dtype) << want.name;
    EXPECT_EQ(got.shape, want.shape) << want.name;
    EXPECT_EQ(got.begin, want.begin) << want.name;
    EXPECT_EQ(got.end, want.end) << want.name;
  }

  // Rebuilding from what was read reproduces the same bytes.
  std::vector<SafetensorsTensor> again = header->tensors;
  std::reverse(again.begin(), again.end());
  EXPECT_EQ(Build(&again, header->metadata), prefix);
}

// ---------------------------------------------------------------------------
// ParseSafetensorsHeader: accepted inputs

TEST(SafetensorsParseTest, AcceptsValidVariations) {
  // Key order in the JSON does not matter; output is in data-offset order.
  // Gaps, trailing data, whitespace and empty tensors sharing an offset are
  // all allowed.
  const std::string json =
      "  {\"z\": {\"shape\": [2], \"data_offsets\": [0, 8], \"dtype\": \"F32\"},\n"
      "   \"e1\": {\"dtype\": \"I32\", \"shape\": [0, 3], \"data_offsets\": [8, 8]},\n"
      "   \"e0\": {\"dtype\": \"I32\", \"shape\": [3, 0], \"data_offsets\": [8, 8]},\n"
      "   \"a\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [12, 13]},\n"
      "   \"__metadata__\": {}}   ";
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(json, 100);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->data_start, 8 + json.size());
  EXPECT_TRUE(header->metadata.empty());
  ASSERT_EQ(header->tensors.size(), 4u);
  EXPECT_EQ(header->tensors[0].name, "z");
  EXPECT_EQ(header->tensors[1].name, "e0");
  EXPECT_EQ(header->tensors[2].name, "e1");
  EXPECT_EQ(header->tensors[3].name, "a");
  EXPECT_EQ(header->tensors[3].shape, std::vector<int64_t>{});
  EXPECT_EQ(header->tensors[0].dtype, DataType::kFloat);
}

TEST(SafetensorsParseTest, AcceptsEmptyHeaderAndMaxRank) {
  ASSERT_TRUE(ParseSafetensorsHeader("{}", 0).ok());
  std::string shape = "[1";
  for (int i = 1; i < 64; ++i) shape += ",1";
  shape += "]";
  EXPECT_TRUE(ParseSafetensorsHeader(
                  "{\"t\":{\"dtype\":\"F64\",\"shape\":" + shape + ",\"data_offsets\":[0,8]}}", 8)
                  .ok());
}

// ---------------------------------------------------------------------------
// ParseSafetensorsHeader: every validation error

struct BadHeader {
  const char* why;
  std::string json;
  uint64_t data_size;
  const char* message;  // a substring the error must contain
};

std::string Entry(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}

std::vector<BadHeader> BadHeaders() {
  const std::string ok_t = "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";
  std::string rank65 = "[1";
  for (int i = 1; i < 65; ++i) rank65 += ",1";
  rank65 += "]";
  return {
      {"empty", "", 8, "invalid JSON"},
      {"truncated", "{\"w\":{\"dtype\":\"F32\",\"sha", 8, "invalid JSON"},
      {"trailing garbage", "{} x", 8, "invalid JSON"},
      {"two values", "{}{}", 8, "invalid JSON"},
      {"not JSON", "hello", 8, "invalid JSON"},
      {"number overflow", "{\"w\":1e999}", 8, "invalid JSON"},
      {"lone surrogate", "{\"\\ud800\":1}", 8, "invalid JSON"},
      {"bad UTF-8", "{\"w\xff\":{" + ok_t + "}}", 8, "invalid JSON"},
      {"array root", "[]", 8, "not a JSON object"},
      {"string root", "\"x\"", 8, "not a JSON object"},
      {"null root", "null", 8, "not a JSON object"},
      {"deep nesting", std::string(1000, '[') + std::string(1000, ']'), 8, "not a JSON object"},
      {"deep in tensor", "{\"w\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}}",
       8, "\"w\": a shape dimension is an array, not an integer"},
      {"entry not object", "{\"w\":[1,2]}", 8, "\"w\": entry is an array, not a JSON object"},
      {"entry is number", "{\"w\":1}", 8, "\"w\": entry is an integer, not a JSON object"},
      {"missing dtype", "{" + Entry("w", "\"shape\":[2],\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": missing field \"dtype\""},
      {"missing shape", "{" + Entry("w", "\"dtype\":\"F32\",\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": missing field \"shape\""},
      {"missing offsets", "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2]") + "}", 8,
       "\"w\": missing field \"data_offsets\""},
      {"extra field", "{" + Entry("w", ok_t + ",\"extra\":1") + "}", 8,
       "\"w\": unexpected field \"extra\""},
      {"dtype not string",
       "{" + Entry("w", "\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": \"dtype\" is an integer, not a string"},
      {"unknown dtype",
       "{" + Entry("w", "\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": unsupported dtype \"F8_E4M3\""},
      {"lowercase dtype",
       "{" + Entry("w", "\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]") + "}", 8,
       "unsupported dtype"},
      {"shape not array",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": \"shape\" is an integer, not an array"},
      {"shape negative",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": a shape dimension is negative"},
      {"shape float",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]") + "}", 8,
       "\"w\": a shape dimension is a non-integer number"},
      {"shape string",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]") + "}", 8,
       "not an integer"},
      {"shape bool",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]") + "}", 8,
       "not an integer"},
      {"shape dim beyond int64",
       "{" + Entry("w", "\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]") +
           "}",
       8, "too large"},
      {"shape dim beyond uint64",
       "{" + Entry("w", "\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,8]") +
           "}",
       8, "not an integer"},
      {"rank 65",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":" + rank65 + ",\"data_offsets\":[0,4]") + "}",
       8, "\"w\": rank exceeds the maximum of 64"},
      {"element count overflow",
       "{" + Entry("w", "\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],"
                        "\"data_offsets\":[0,0]") + "}",
       8, "\"w\": number of elements overflows"},
      {"byte size overflow",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                        "\"data_offsets\":[0,0]") + "}",
       8, "\"w\": size in bytes overflows"},
      {"offsets not array",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":8") + "}", 8,
       "\"w\": \"data_offsets\" is an integer, not an array of 2"},
      {"one offset", "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]") + "}",
       8, "not an array of 2"},
      {"three offsets",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]") + "}", 8,
       "not an array of 2"},
      {"negative offset",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]") + "}", 8,
       "\"w\": data_offsets[0] is negative"},
      {"float offset",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]") + "}", 8,
       "\"w\": data_offsets[1] is a non-integer number"},
      {"offset not number",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,null]") + "}", 8,
       "not an integer"},
      {"begin after end",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]") + "}", 8,
       "\"w\": data_offsets [8, 0] end before they begin"},
      {"end past data",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]") + "}", 8,
       "\"w\": data_offsets [4, 12] extend past the data section of 8 bytes"},
      {"huge offsets",
       "{" + Entry("w", "\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":"
                        "[18446744073709551615,18446744073709551615]") + "}",
       8, "extend past"},
      {"size mismatch",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]") + "}", 16,
       "\"w\": data_offsets [0, 8] hold 8 bytes but dtype F32 and the shape need 12"},
      {"overlap",
       "{" + Entry("a", ok_t) + "," +
           Entry("b", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]") + "}",
       16, "\"b\": data_offsets [4, 12] overlap those of tensor \"a\" [0, 8]"},
      {"same range", "{" + Entry("a", ok_t) + "," + Entry("b", ok_t) + "}", 16, "overlap"},
      {"empty inside another",
       "{" + Entry("a", ok_t) + "," +
           Entry("b", "\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]") + "}",
       16, "\"b\": data_offsets [4, 4] overlap"},
      {"duplicate tensor", "{" + Entry("w", ok_t) + "," + Entry("w", ok_t) + "}", 16,
       "duplicate tensor name \"w\""},
      {"duplicate field", "{" + Entry("w", ok_t + ",\"dtype\":\"F32\"") + "}", 8,
       "\"w\": duplicate field \"dtype\""},
      {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 8,
       "\"__metadata__\" has duplicate key \"k\""},
      {"duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 8,
       "\"__metadata__\" appears twice"},
      {"deep in metadata", "{\"__metadata__\":{\"k\":" + std::string(1000, '[') + "}}", 8,
       "value for \"k\" is an array, not a string"},
      {"object in offsets",
       "{" + Entry("w", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{},8]") + "}", 8,
       "\"w\": data_offsets[0] is an object, not an integer"},
      {"entry is string", "{\"w\":\"F32\"}", 8, "\"w\": entry is a string, not a JSON object"},
      {"empty entry", "{\"w\":{}}", 8, "\"w\": missing field \"dtype\""},
      {"metadata not object", "{\"__metadata__\":\"x\"}", 8,
       "\"__metadata__\" is not a JSON object"},
      {"metadata null", "{\"__metadata__\":null}", 8, "\"__metadata__\" is not a JSON object"},
      {"metadata number value", "{\"__metadata__\":{\"k\":1}}", 8,
       "\"__metadata__\" value for \"k\" is an integer, not a string"},
      {"metadata null value", "{\"__metadata__\":{\"k\":null}}", 8, "not a string"},
      {"metadata object value", "{\"__metadata__\":{\"k\":{}}}", 8, "not a string"},
      {"metadata array value", "{\"__metadata__\":{\"k\":[\"v\"]}}", 8, "not a string"},
  };
}

TEST(SafetensorsParseTest, RejectsEveryInvalidHeader) {
  for (const BadHeader& bad : BadHeaders()) {
    absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(bad.json, bad.data_size);
    ASSERT_FALSE(header.ok()) << bad.why;
    EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument)
        << bad.why << ": " << header.status();
    EXPECT_THAT(std::string(header.status().message()), HasSubstr(bad.message)) << bad.why;
  }
}

TEST(SafetensorsParseTest, ReadRejectsInvalidHeaderNamingTheFile) {
  for (const BadHeader& bad : BadHeaders()) {
    MemoryFile file(LengthPrefix(bad.json.size()) + bad.json + std::string(bad.data_size, '\0'));
    absl::StatusOr<SafetensorsHeader> header = ReadSafetensorsHeader(file);
    ASSERT_FALSE(header.ok()) << bad.why;
    EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument) << bad.why;
    EXPECT_THAT(std::string(header.status().message()), HasSubstr("mem/model.safetensors: "));
    EXPECT_THAT(std::string(header.status().message()), HasSubstr(bad.message)) << bad.why;
  }
}

TEST(SafetensorsParseTest, RejectsOversizedHeaderString) {
  const std::string huge(100'000'001, ' ');
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(huge, 0);
  ASSERT_FALSE(header.ok());
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(header.status().message()), HasSubstr("exceeds the maximum"));
}

TEST(SafetensorsParseTest, StopsAtTheFirstMisplacedValue) {
  // Parsing stops at the first bracket that has no place in a header, so
  // neither deep nesting nor a huge array costs memory or time.
  const std::string deep = "{\"w\":{\"shape\":[" + std::string(50'000'000, '[');
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(deep, 0);
  ASSERT_FALSE(header.ok());
  EXPECT_THAT(std::string(header.status().message()),
              HasSubstr("\"w\": a shape dimension is an array, not an integer"));

  std::string wide = "{\"w\":{\"shape\":[";
  for (int i = 0; i < 1'000'000; ++i) wide += "1,";
  header = ParseSafetensorsHeader(wide, 0);
  ASSERT_FALSE(header.ok());
  EXPECT_THAT(std::string(header.status().message()), HasSubstr("rank exceeds"));
}

TEST(SafetensorsParseTest, LongNamesAreTruncatedInErrors) {
  const std::string name(10000, 'n');
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader("{\"" + name + "\":1}", 0);
  ASSERT_FALSE(header.ok());
  EXPECT_LT(header.status().message().size(), 1000u);
}

// ---------------------------------------------------------------------------
// ReadSafetensorsHeader: file-level errors

void ExpectReadError(const MemoryFile& file, absl::StatusCode code, const std::string& substring) {
  absl::StatusOr<SafetensorsHeader> header = ReadSafetensorsHeader(file);
  ASSERT_FALSE(header.ok());
  EXPECT_EQ(header.status().code(), code) << header.status();
  EXPECT_THAT(std::string(header.status().message()), HasSubstr("mem/model.safetensors"));
  EXPECT_THAT(std::string(header.status().message()), HasSubstr(substring));
}

TEST(SafetensorsReadTest, RejectsTruncatedFiles) {
  ExpectReadError(MemoryFile(""), absl::StatusCode::kInvalidArgument, "too short");
  ExpectReadError(MemoryFile(std::string("\x02\0\0\0\0\0\0", 7)), absl::StatusCode::kInvalidArgument,
                  "too short");
  ExpectReadError(MemoryFile(LengthPrefix(3) + "{}"), absl::StatusCode::kInvalidArgument,
                  "header length 3 exceeds the 2 bytes after the length");
  ExpectReadError(MemoryFile(LengthPrefix(UINT64_MAX)), absl::StatusCode::kInvalidArgument,
                  "exceeds the maximum");
  // A length just above the limit is refused before anything is allocated,
  // even if the file claims to be big enough.
  ExpectReadError(MemoryFile(LengthPrefix(100'000'001), uint64_t{1} << 40),
                  absl::StatusCode::kInvalidArgument, "exceeds the maximum");
}

TEST(SafetensorsReadTest, EveryTruncationOfAValidFileFailsCleanly) {
  std::vector<SafetensorsTensor> tensors = {Tensor("w", DataType::kFloat, {2, 2}),
                                            Tensor("b", DataType::kInt8, {3})};
  const std::string prefix = Build(&tensors, {{"k", "v"}});
  const std::string file_bytes = prefix + std::string(19, '\1');
  ASSERT_TRUE(ReadSafetensorsHeader(MemoryFile(file_bytes)).ok());
  for (size_t len = 0; len < file_bytes.size(); ++len) {
    absl::StatusOr<SafetensorsHeader> header =
        ReadSafetensorsHeader(MemoryFile(file_bytes.substr(0, len)));
    EXPECT_FALSE(header.ok()) << len;
    EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument) << len;
  }
}

TEST(SafetensorsReadTest, PropagatesReadErrors) {
  MemoryFile file(LengthPrefix(2) + "{}");
  file.set_fail_reads();
  ExpectReadError(file, absl::StatusCode::kUnavailable, "injected failure");
}

TEST(SafetensorsReadTest, RandomMutationsNeverCrash) {
  std::vector<SafetensorsTensor> tensors = {Tensor("w", DataType::kFloat, {2, 2}),
                                            Tensor("b", DataType::kInt8, {3}),
                                            Tensor("s", DataType::kUint64, {})};
  const std::string prefix = Build(&tensors, {{"k", "v"}});
  const std::string original = prefix + std::string(27, '\1');
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::string bytes = original;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % bytes.size();
      switch (rng() % 3) {
        case 0:
          bytes[pos] = static_cast<char>(rng());
          break;
        case 1:
          bytes.erase(pos, 1);
          break;
        default:
          bytes.insert(pos, 1, "{}[]\",:0-9e "[rng() % 12]);
          break;
      }
      if (bytes.empty()) bytes = "x";
    }
    absl::StatusOr<SafetensorsHeader> header = ReadSafetensorsHeader(MemoryFile(bytes));
    if (header.ok()) {
      ++accepted;
      for (const SafetensorsTensor& t : header->tensors) {
        EXPECT_LE(t.begin, t.end);
        EXPECT_LE(header->data_start + t.end, bytes.size());
      }
    } else {
      EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument)
          << header.status();
    }
  }
  EXPECT_GT(accepted, 0);  // some mutations only touch data bytes
}

}  // namespace
}  // namespace cairn
