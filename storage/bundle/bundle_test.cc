#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/internal/entry_codec.h"
#include "storage/bundle/internal/table.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

std::string Bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override { storage_ = std::move(NewLocalStorage(dir_.path())).value(); }

  std::unique_ptr<BundleWriter> Writer(const std::string& prefix) {
    auto w = BundleWriter::Create(storage_.get(), prefix);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::move(w).value();
  }
  std::unique_ptr<BundleReader> Reader(const std::string& prefix) {
    auto r = BundleReader::Open(storage_.get(), prefix);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  testing::TempDir dir_;
  std::unique_ptr<Storage> storage_;
};

TEST_F(BundleTest, EveryFixedSizeDtypeRoundTrips) {
  const std::vector<DataType> dtypes = {
      DataType::kFloat,  DataType::kDouble,   DataType::kInt32,     DataType::kUint8,
      DataType::kInt16,  DataType::kInt8,     DataType::kComplex64, DataType::kInt64,
      DataType::kBool,   DataType::kQint8,    DataType::kQuint8,    DataType::kQint32,
      DataType::kBfloat16, DataType::kQint16, DataType::kQuint16,   DataType::kUint16,
      DataType::kComplex128, DataType::kHalf, DataType::kUint32,    DataType::kUint64,
      DataType::kFloat8E5M2, DataType::kFloat8E4M3FN};
  auto w = Writer("ckpt/all");
  std::map<std::string, std::string> expect;
  for (DataType dt : dtypes) {
    const std::string name = absl::StrCat("t_", DataTypeName(dt));
    const std::string data = Bytes(6 * DataTypeSize(dt), static_cast<uint32_t>(dt));
    ASSERT_TRUE(w->Add(name, dt, {2, 3}, data).ok()) << name;
    expect[name] = data;
  }
  ASSERT_TRUE(w->Add("empty", DataType::kFloat, {0, 5}, "").ok());
  ASSERT_TRUE(w->Finish().ok());

  auto r = Reader("ckpt/all");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->num_shards(), 1);
  for (const auto& [name, data] : expect) {
    auto t = r->ReadTensor(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t->data.view(), data) << name;
  }
  auto empty = r->Lookup("empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size, 0);
  EXPECT_EQ(empty->masked_crc32c, crc32c::Mask(0));  // spec §7.1
  EXPECT_TRUE(r->ReadTensor("empty").ok());
}

TEST_F(BundleTest, StringTensorsMatchTheSpecLayout) {
  auto w = Writer("s");
  ASSERT_TRUE(w->AddString("strs", {3}, {"", "abc", std::string(300, 'x')}).ok());
  ASSERT_TRUE(w->AddString("none", {0}, {}).ok());
  ASSERT_TRUE(w->AddString("one_empty", {}, {""}).ok());
  ASSERT_TRUE(w->Finish().ok());
  auto r = Reader("s");
  auto t = r->ReadTensor("strs");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->strings, (std::vector<std::string>{"", "abc", std::string(300, 'x')}));
  EXPECT_EQ(r->Lookup("none")->size, 4);       // just the length checksum
  EXPECT_EQ(r->Lookup("one_empty")->size, 5);  // one varint + checksum
  EXPECT_TRUE(r->ReadTensor("none").ok());
}

TEST_F(BundleTest, StreamingAddEqualsOneShotAdd) {
  const std::string data = Bytes(4 * 1000, 1);
  auto a = Writer("a");
  ASSERT_TRUE(a->Add("x", DataType::kFloat, {1000}, data).ok());
  ASSERT_TRUE(a->Finish().ok());
  auto b = Writer("b");
  ASSERT_TRUE(b->BeginTensor("x", DataType::kFloat, {1000}).ok());
  for (size_t i = 0; i < data.size(); i += 333) {
    ASSERT_TRUE(b->AppendData(absl::string_view(data).substr(i, 333)).ok());
  }
  ASSERT_TRUE(b->EndTensor().ok());
  ASSERT_TRUE(b->Finish().ok());
  EXPECT_EQ(testing::ReadFile(dir_.Join("a.index")), testing::ReadFile(dir_.Join("b.index")));
  EXPECT_EQ(testing::ReadFile(dir_.Join("a.data-00000-of-00001")),
            testing::ReadFile(dir_.Join("b.data-00000-of-00001")));
}

TEST_F(BundleTest, AppendingPiecesEqualsAppendingTheirConcatenation) {
  const std::string data = Bytes(4 * 1000, 2);
  auto a = Writer("a");
  ASSERT_TRUE(a->Add("x", DataType::kFloat, {1000}, data).ok());
  const uint32_t a_crc = a->data_crc32c();
  ASSERT_TRUE(a->Finish().ok());
  auto b = Writer("b");
  ASSERT_TRUE(b->BeginTensor("x", DataType::kFloat, {1000}).ok());
  const absl::string_view d(data);
  // Two chunks of pieces (some empty), then too many bytes for the shape.
  std::vector<absl::string_view> first = {d.substr(0, 1), d.substr(1, 0), d.substr(1, 1500)};
  std::vector<absl::string_view> second = {d.substr(1501, 999), d.substr(2500)};
  ASSERT_TRUE(b->AppendData(absl::MakeConstSpan(first)).ok());
  ASSERT_TRUE(b->AppendData(absl::MakeConstSpan(second)).ok());
  EXPECT_EQ(b->data_crc32c(), a_crc);
  ASSERT_TRUE(b->EndTensor().ok());
  ASSERT_TRUE(b->Finish().ok());
  EXPECT_EQ(testing::ReadFile(dir_.Join("a.index")), testing::ReadFile(dir_.Join("b.index")));
  EXPECT_EQ(testing::ReadFile(dir_.Join("a.data-00000-of-00001")),
            testing::ReadFile(dir_.Join("b.data-00000-of-00001")));

  auto c = Writer("c");
  ASSERT_TRUE(c->BeginTensor("x", DataType::kFloat, {1}).ok());
  std::vector<absl::string_view> over = {d.substr(0, 3), d.substr(3, 2)};
  EXPECT_EQ(c->AppendData(absl::MakeConstSpan(over)).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BundleTest, WriterErrorsAreStickyAndLeaveNothing) {
  auto w = Writer("bad");
  ASSERT_TRUE(w->Add("x", DataType::kFloat, {1}, FloatBytes({1})).ok());
  EXPECT_EQ(w->Add("x", DataType::kFloat, {1}, FloatBytes({1})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(w->Add("y", DataType::kFloat, {1}, FloatBytes({1})).ok());
  EXPECT_FALSE(w->Finish().ok());
  EXPECT_FALSE(*storage_->Exists("bad.index"));
  auto listing = storage_->List("");
  EXPECT_TRUE(listing->empty()) << (*listing)[0];
}

TEST_F(BundleTest, WrongSizesAndDtypesAreRefused) {
  {
    auto w = Writer("w1");
    EXPECT_EQ(w->Add("x", DataType::kFloat, {3}, "12345678").code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    auto w = Writer("w2");
    EXPECT_FALSE(w->Add("v", DataType::kVariant, {1}, "x").ok());
  }
  {
    auto w = Writer("w3");
    EXPECT_FALSE(w->Add("", DataType::kFloat, {1}, "1234").ok());
  }
  {
    auto w = Writer("w4");
    EXPECT_FALSE(w->Add("huge", DataType::kFloat, {1LL << 40, 1LL << 40}, "").ok());
  }
  {  // Abandoned by destruction: no files remain.
    auto w = Writer("w5");
    ASSERT_TRUE(w->Add("x", DataType::kFloat, {1}, "1234").ok());
  }
  EXPECT_TRUE(storage_->List("")->empty());
}

TEST_F(BundleTest, SlicesAreStoredLikeTensorFlowAndReassembled) {
  // TF unit test "PartitionedVariables" (spec §8.1): foo [5,10], slices -:0,1 and -:1,9.
  auto w = Writer("p");
  std::vector<float> full(50);
  for (int i = 0; i < 50; ++i) full[i] = static_cast<float>(i);
  std::vector<float> col0, rest;
  for (int r = 0; r < 5; ++r) {
    col0.push_back(full[r * 10]);
    for (int c = 1; c < 10; ++c) rest.push_back(full[r * 10 + c]);
  }
  ASSERT_TRUE(w->AddSlice("foo", {5, 10}, *TensorSlice::Parse("-:0,1"), DataType::kFloat,
                          FloatBytes(col0)).ok());
  ASSERT_TRUE(w->AddSlice("foo", {5, 10}, *TensorSlice::Parse("-:1,9"), DataType::kFloat,
                          FloatBytes(rest)).ok());
  ASSERT_TRUE(w->Finish().ok());

  auto r = Reader("p");
  auto entry = r->Lookup("foo");
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(internal::EncodeEntry(*entry),
            std::string("\x08\x01\x12\x08\x12\x02\x08\x05\x12\x02\x08\x0a\x3a\x06\x0a\x00\x0a\x02"
                        "\x10\x01\x3a\x08\x0a\x00\x0a\x04\x08\x01\x10\x09",
                        30));
  std::vector<std::string> keys;
  ASSERT_TRUE(r->ForEachEntry([&](const BundleEntry& e) {
                 keys.push_back(e.key);
                 return absl::OkStatus();
               }).ok());
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0], std::string("\x00\x66\x6f\x6f\x00\x01\x01\x02\x80\x7f\x80\x81", 12));
  EXPECT_EQ(keys[1], std::string("\x00\x66\x6f\x6f\x00\x01\x01\x02\x80\x7f\x81\x89", 12));
  EXPECT_EQ(keys[2], "foo");

  auto whole = r->ReadTensor("foo");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->data.view(), FloatBytes(full));
  // Re-cut: rows 1..3, columns 0..4 spans both stored slices.
  auto part = r->ReadSlice("foo", *TensorSlice::Parse("1,3:0,5"));
  ASSERT_TRUE(part.ok()) << part.status();
  std::vector<float> want;
  for (int row = 1; row < 4; ++row)
    for (int c = 0; c < 5; ++c) want.push_back(full[row * 10 + c]);
  EXPECT_EQ(part->data.view(), FloatBytes(want));
}

TEST_F(BundleTest, OverlappingOrMismatchedSlicesAreRefused) {
  auto w = Writer("o");
  ASSERT_TRUE(w->AddSlice("e", {4, 2}, *TensorSlice::Parse("0,2:-"), DataType::kFloat,
                          FloatBytes({1, 2, 3, 4})).ok());
  EXPECT_EQ(w->AddSlice("e", {4, 2}, *TensorSlice::Parse("1,2:-"), DataType::kFloat,
                        FloatBytes({1, 2, 3, 4})).code(),
            absl::StatusCode::kInvalidArgument);
  auto w2 = Writer("o2");
  ASSERT_TRUE(w2->AddSlice("e", {4, 2}, *TensorSlice::Parse("0,2:-"), DataType::kFloat,
                           FloatBytes({1, 2, 3, 4})).ok());
  EXPECT_FALSE(w2->AddSlice("e", {4, 3}, *TensorSlice::Parse("2,2:-"), DataType::kFloat,
                            FloatBytes({1, 2, 3, 4, 5, 6})).ok());
}

TEST_F(BundleTest, PartialSlicesReportWhatIsMissing) {
  auto w = Writer("half");
  ASSERT_TRUE(w->AddSlice("e", {4, 2}, *TensorSlice::Parse("0,2:-"), DataType::kFloat,
                          FloatBytes({1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->Finish().ok());
  auto r = Reader("half");
  EXPECT_EQ(r->ReadTensor("e").status().code(), absl::StatusCode::kFailedPrecondition);
  auto ok = r->ReadSlice("e", *TensorSlice::Parse("1,1:-"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->data.view(), FloatBytes({3, 4}));
  EXPECT_EQ(r->ReadSlice("e", *TensorSlice::Parse("0,9:-")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r->ReadTensor("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BundleTest, MergeJoinsShardsAndSlicesLikeMergeBundles) {
  // Four writers each hold one row slice of "emb" plus their own tensor.
  std::vector<std::string> parts;
  std::vector<float> emb(8 * 3);
  for (size_t i = 0; i < emb.size(); ++i) emb[i] = static_cast<float>(i) * 0.5f;
  for (int i = 0; i < 4; ++i) {
    const std::string part = absl::StrCat("job/ckpt-1/variables_temp/part-0000", i, "-of-00004");
    auto w = Writer(part);
    std::vector<float> rows(emb.begin() + i * 6, emb.begin() + (i + 1) * 6);
    ASSERT_TRUE(w->AddSlice("emb", {8, 3}, TensorSlice({{2 * i, 2}, {}}), DataType::kFloat,
                            FloatBytes(rows)).ok());
    ASSERT_TRUE(w->Add(absl::StrCat("bias", i), DataType::kFloat, {1},
                       FloatBytes({static_cast<float>(i)})).ok());
    ASSERT_TRUE(w->Finish().ok());
    parts.push_back(part);
  }
  auto merged = MergeBundles(storage_.get(), parts, "job/ckpt-1/variables");
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->num_shards, 4);
  auto r = Reader("job/ckpt-1/variables");
  EXPECT_EQ(r->num_shards(), 4);
  auto whole = r->ReadTensor("emb");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->data.view(), FloatBytes(emb));
  EXPECT_EQ(r->Lookup("emb")->slices.size(), 4u);
  EXPECT_EQ(r->Lookup("bias3")->shard_id, 3);
  // Restore onto 2 workers: rows 0-3 and 4-7.
  auto lower = r->ReadSlice("emb", TensorSlice({{4, 4}, {}}));
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ(lower->data.view(),
            FloatBytes(std::vector<float>(emb.begin() + 12, emb.end())));
  // The parts are gone; only the merged bundle remains.
  auto files = *storage_->List("job");
  EXPECT_EQ(files.size(), 5u);
  EXPECT_FALSE(*storage_->Exists("job/ckpt-1/variables_temp"));
}

// The service's merge (MergeBundleParts) streams: a k-way merge in passes
// of at most `fan_in` parts. Whatever the fan-in, the merged index is the
// same bytes; slices of one tensor spread over passes are joined; nothing
// but the checkpoint's files is left.
class PartsMergeTest : public BundleTest {
 protected:
  static constexpr int kParts = 150;
  static constexpr int kRows = 2 * kParts;

  // Part i holds "w<i>" (not every part: every 7th is empty) and rows
  // [2i, 2i+2) of "emb" [kRows, 3].
  std::vector<std::string> WriteParts(const std::string& dir) {
    std::vector<std::string> parts;
    for (int i = 0; i < kParts; ++i) {
      const std::string part = absl::StrCat(dir, "/shard-", i, "/part");
      auto w = Writer(part);
      if (i % 7 != 3) {
        std::vector<float> rows(6);
        for (int k = 0; k < 6; ++k) rows[static_cast<size_t>(k)] = static_cast<float>(6 * i + k);
        EXPECT_TRUE(w->AddSlice("emb", {kRows, 3}, TensorSlice({{2 * i, 2}, {}}), DataType::kFloat,
                                FloatBytes(rows)).ok());
        EXPECT_TRUE(w->Add(absl::StrCat("w", i), DataType::kFloat, {1},
                           FloatBytes({static_cast<float>(i)})).ok());
      }
      EXPECT_TRUE(w->Finish().ok());
      parts.push_back(part);
    }
    return parts;
  }
};

TEST_F(PartsMergeTest, MergesManyPartsInPassesToTheSameIndex) {
  auto one_pass = MergeBundleParts(storage_.get(), WriteParts("a"), "a/merged/variables", 1000);
  ASSERT_TRUE(one_pass.ok()) << one_pass.status();
  auto passes = MergeBundleParts(storage_.get(), WriteParts("b"), "b/merged/variables", 4);
  ASSERT_TRUE(passes.ok()) << passes.status();
  ASSERT_EQ(passes->size(), static_cast<size_t>(kParts + 1));
  EXPECT_EQ(passes->back().sha256, one_pass->back().sha256) << "the indexes differ";
  EXPECT_EQ(testing::ReadFile(dir_.Join("a/merged/variables.index")),
            testing::ReadFile(dir_.Join("b/merged/variables.index")));

  auto r = Reader("b/merged/variables");
  EXPECT_EQ(r->num_shards(), kParts);
  for (int i = 0; i < kParts; ++i) {
    auto w = r->Lookup(absl::StrCat("w", i));
    if (i % 7 == 3) {
      EXPECT_FALSE(w.ok());
      continue;
    }
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->shard_id, i);
    EXPECT_EQ(r->ReadTensor(absl::StrCat("w", i))->data.view(), FloatBytes({static_cast<float>(i)}));
  }
  auto rows = r->ReadSlice("emb", TensorSlice({{8, 4}, {}}));  // parts 4 and 5
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<float> expected(12);
  for (int k = 0; k < 12; ++k) expected[static_cast<size_t>(k)] = static_cast<float>(24 + k);
  EXPECT_EQ(rows->data.view(), FloatBytes(expected));
  // Only the checkpoint's files are left: no run, no part index.
  auto left = storage_->List("b");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), static_cast<size_t>(kParts + 1));
  for (const std::string& f : *left) EXPECT_TRUE(absl::StrContains(f, "b/merged/variables.")) << f;
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(*left, ","), "run-")) << absl::StrJoin(*left, ",");
}

// A checkpoint of one shard: its merged index is its part's index, byte
// for byte (what lets a one-part merge publish the part's index as is).
TEST_F(PartsMergeTest, MergingOnePartGivesThePartsOwnIndex) {
  {
    auto w = Writer("one/shard-0/part");
    ASSERT_TRUE(w->AddSlice("emb", {10, 2}, TensorSlice({{2, 3}, {}}), DataType::kFloat,
                            FloatBytes({1, 2, 3, 4, 5, 6})).ok());
    ASSERT_TRUE(w->AddSlice("emb", {10, 2}, TensorSlice({{6, 1}, {}}), DataType::kFloat,
                            FloatBytes({7, 8})).ok());
    ASSERT_TRUE(w->AddString("vocab", {2}, {"a", ""}).ok());
    for (int i = 0; i < 3000; ++i) {  // several index blocks
      ASSERT_TRUE(w->Add(absl::StrCat("layer.", i), DataType::kInt8, {i % 5}, std::string(i % 5, 'x')).ok());
    }
    ASSERT_TRUE(w->Finish().ok());
  }
  const std::string part_index = testing::ReadFile(dir_.Join("one/shard-0/part.index"));
  auto merged = MergeBundleParts(storage_.get(), {"one/shard-0/part"}, "one/merged/variables", 4);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE(testing::ReadFile(dir_.Join("one/merged/variables.index")) == part_index);
  EXPECT_EQ(merged->back().size, part_index.size());
  auto r = Reader("one/merged/variables");
  EXPECT_EQ(r->num_shards(), 1);
  auto rows = r->ReadSlice("emb", TensorSlice({{2, 3}, {}}));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->data.view(), FloatBytes({1, 2, 3, 4, 5, 6}));
  EXPECT_FALSE(*storage_->Exists("one/shard-0/part.index"));
}

TEST_F(PartsMergeTest, DuplicatesAndOverlapsAreRefusedAcrossPasses) {
  std::vector<std::string> parts = WriteParts("c");
  {
    auto w = Writer("c/extra/part");  // "w5" again, in a later pass
    ASSERT_TRUE(w->Add("w5", DataType::kFloat, {1}, FloatBytes({9})).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  parts.push_back("c/extra/part");
  auto dup = MergeBundleParts(storage_.get(), parts, "c/merged/variables", 4);
  ASSERT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument) << dup.status();
  EXPECT_TRUE(absl::StrContains(dup.status().message(), "\"w5\" is saved by more than one shard"))
      << dup.status();

  std::vector<std::string> overlap = WriteParts("d");
  {
    auto w = Writer("d/extra/part");  // rows 11-12 of emb: saved already
    ASSERT_TRUE(w->AddSlice("emb", {kRows, 3}, TensorSlice({{11, 2}, {}}), DataType::kFloat,
                            FloatBytes(std::vector<float>(6, 1.0f))).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  overlap.push_back("d/extra/part");
  auto refused = MergeBundleParts(storage_.get(), overlap, "d/merged/variables", 4);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "overlaps")) << refused.status();
}

TEST_F(BundleTest, MergeRefusesDuplicateTensors) {
  for (const char* p : {"d1", "d2"}) {
    auto w = Writer(p);
    ASSERT_TRUE(w->Add("same", DataType::kFloat, {1}, FloatBytes({1})).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  auto merged = MergeBundles(storage_.get(), {"d1", "d2"}, "out");
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(merged.status().message().find("same"), std::string::npos);
}

TEST_F(BundleTest, EveryFlippedDataByteIsCaughtAndNamed) {
  auto w = Writer("f");
  ASSERT_TRUE(w->Add("alpha", DataType::kFloat, {4}, FloatBytes({1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->AddString("beta", {2}, {"xy", "z"}).ok());
  ASSERT_TRUE(w->Add("gamma", DataType::kInt64, {2}, Bytes(16, 9)).ok());
  ASSERT_TRUE(w->Finish().ok());
  const std::string path = dir_.Join("f.data-00000-of-00001");
  const std::string good = testing::ReadFile(path);
  auto r0 = Reader("f");
  std::vector<BundleEntry> entries = *r0->ListTensors();
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::string bad = good;
    bad[pos] ^= 1;
    testing::WriteFile(path, bad);
    auto r = Reader("f");
    std::string culprit;
    for (const BundleEntry& e : entries) {
      if (static_cast<int64_t>(pos) >= e.offset && static_cast<int64_t>(pos) < e.offset + e.size) {
        culprit = e.key;
      }
    }
    auto t = r->ReadTensor(culprit);
    ASSERT_FALSE(t.ok()) << "flip at " << pos;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(t.status().message().find(culprit), std::string::npos) << t.status();
    EXPECT_NE(t.status().message().find("f.data-00000-of-00001"), std::string::npos);
  }
}

// /proc/self/maps names the files mapped into this process.
bool IsMapped(const std::string& path) {
  return testing::ReadFile("/proc/self/maps").find(path) != std::string::npos;
}

TEST_F(BundleTest, MappedReadsAreCheckedCopyOnWriteViewsThatOutliveTheFiles) {
  const std::string big = Bytes(3 << 20, 1);
  auto w = Writer("m");
  ASSERT_TRUE(w->Add("big", DataType::kFloat, {3 << 18}, big).ok());
  ASSERT_TRUE(w->AddString("names", {2}, {"xy", "z"}).ok());
  ASSERT_TRUE(w->Add("small", DataType::kInt64, {2}, Bytes(16, 2)).ok());
  ASSERT_TRUE(w->AddSlice("emb", {4, 2}, *TensorSlice::Parse("0,2:-"), DataType::kInt32,
                          Bytes(16, 3)).ok());
  ASSERT_TRUE(w->AddSlice("emb", {4, 2}, *TensorSlice::Parse("2,2:-"), DataType::kInt32,
                          Bytes(16, 4)).ok());
  ASSERT_TRUE(w->Finish().ok());
  const std::string path = dir_.Join("m.data-00000-of-00001");
  const std::string file_before = testing::ReadFile(path);

  Tensor mapped_big;
  {
    BundleReaderOptions options;
    options.map_files = true;
    auto mapped = std::move(BundleReader::Open(storage_.get(), "m", options)).value();
    auto copied = Reader("m");
    for (const char* name : {"big", "names", "small", "emb"}) {
      auto a = mapped->ReadTensor(name);
      auto b = copied->ReadTensor(name);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(a->dtype, b->dtype) << name;
      EXPECT_EQ(a->shape, b->shape) << name;
      EXPECT_EQ(a->data.view(), b->data.view()) << name;
      EXPECT_EQ(a->strings, b->strings) << name;
    }
    auto part = mapped->ReadSlice("big", *TensorSlice::Parse("10,20"));
    ASSERT_TRUE(part.ok()) << part.status();
    EXPECT_EQ(part->data.view(), absl::string_view(big).substr(40, 80));
    mapped_big = std::move(mapped->ReadTensor("big")).value();
    EXPECT_TRUE(IsMapped(path)) << "map_files read " << path << " without mapping it";
  }
  // The reader and the storage are gone; the view still holds the mapping.
  storage_.reset();
  ASSERT_EQ(mapped_big.data.view(), big);
  // Writing to the tensor copies the written pages; the file is unchanged.
  std::memset(mapped_big.data.data(), 0x5a, 4096 * 3);
  EXPECT_EQ(testing::ReadFile(path), file_before);
  EXPECT_EQ(mapped_big.data.view().substr(4096 * 3), absl::string_view(big).substr(4096 * 3));
  // Retention may delete the files while the tensor lives.
  ASSERT_EQ(std::remove(path.c_str()), 0);
  EXPECT_EQ(mapped_big.data.view().substr(4096 * 3), absl::string_view(big).substr(4096 * 3));
  mapped_big = Tensor();
  EXPECT_FALSE(IsMapped(path)) << "the mapping outlived its last tensor";
}

TEST_F(BundleTest, MappedReadsCatchEveryFlippedByte) {
  auto w = Writer("f");
  ASSERT_TRUE(w->Add("alpha", DataType::kFloat, {4}, FloatBytes({1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->Add("gamma", DataType::kInt64, {2}, Bytes(16, 9)).ok());
  ASSERT_TRUE(w->Finish().ok());
  const std::string path = dir_.Join("f.data-00000-of-00001");
  const std::string good = testing::ReadFile(path);
  BundleReaderOptions options;
  options.map_files = true;
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::string bad = good;
    bad[pos] ^= 1;
    testing::WriteFile(path, bad);
    auto r = std::move(BundleReader::Open(storage_.get(), "f", options)).value();
    const std::string culprit = pos < 16 ? "alpha" : "gamma";
    auto t = r->ReadTensor(culprit);
    ASSERT_FALSE(t.ok()) << "flip at " << pos;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(t.status().message().find(culprit), std::string::npos) << t.status();
    EXPECT_NE(t.status().message().find("f.data-00000-of-00001"), std::string::npos);
  }
}

TEST_F(BundleTest, MapFilesFallsBackToCopiesWhereStorageCannotMap) {
  auto memory = NewMemoryStorage();
  auto w = std::move(BundleWriter::Create(memory.get(), "p")).value();
  ASSERT_TRUE(w->Add("x", DataType::kFloat, {4}, FloatBytes({1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->Finish().ok());
  BundleReaderOptions options;
  options.map_files = true;
  auto r = std::move(BundleReader::Open(memory.get(), "p", options)).value();
  auto t = r->ReadTensor("x");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->data.view(), FloatBytes({1, 2, 3, 4}));
}

TEST_F(BundleTest, TruncatedDataFileIsDataLoss) {
  auto w = Writer("t");
  ASSERT_TRUE(w->Add("x", DataType::kFloat, {4}, FloatBytes({1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->Finish().ok());
  testing::WriteFile(dir_.Join("t.data-00000-of-00001"), "abc");
  auto r = Reader("t");
  EXPECT_EQ(r->ReadTensor("x").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BundleTest, BigEndianBundlesAreSwappedAfterTheChecksum) {
  // Build by hand what a big-endian host would write.
  const uint32_t be_one = 0x3f800000u;  // 1.0f
  std::string data;
  for (int i = 3; i >= 0; --i) data.push_back(static_cast<char>((be_one >> (8 * i)) & 0xff));
  {
    auto f = std::move(storage_->NewWritableFile("be.data-00000-of-00001")).value();
    ASSERT_TRUE(f->Append(data).ok());
    ASSERT_TRUE(f->Close().ok());
  }
  auto idx = std::move(storage_->NewWritableFile("be.index")).value();
  internal::TableBuilder table(internal::TableBuilder::Options(), idx.get());
  internal::BundleHeader header;
  header.big_endian = true;
  ASSERT_TRUE(table.Add("", internal::EncodeHeader(header)).ok());
  BundleEntry e;
  e.dtype = static_cast<int32_t>(DataType::kFloat);
  e.shape = {};
  e.size = 4;
  e.masked_crc32c = crc32c::Mask(crc32c::Value(data.data(), 4));
  ASSERT_TRUE(table.Add("one", internal::EncodeEntry(e)).ok());
  ASSERT_TRUE(table.Finish().ok());
  ASSERT_TRUE(idx->Close().ok());
  auto r = Reader("be");
  EXPECT_TRUE(r->big_endian());
  auto t = r->ReadTensor("one");
  ASSERT_TRUE(t.ok()) << t.status();
  float v;
  std::memcpy(&v, t->data.data(), 4);
  EXPECT_EQ(v, 1.0f);
}

TEST_F(BundleTest, HostileEntriesAreRejectedWithoutHugeAllocations) {
  {
    auto f = std::move(storage_->NewWritableFile("h.data-00000-of-00001")).value();
    ASSERT_TRUE(f->Append("1234").ok());
    ASSERT_TRUE(f->Close().ok());
  }
  auto idx = std::move(storage_->NewWritableFile("h.index")).value();
  internal::TableBuilder table(internal::TableBuilder::Options(), idx.get());
  ASSERT_TRUE(table.Add("", internal::EncodeHeader({})).ok());
  BundleEntry big;
  big.dtype = 1;
  big.shape = {1LL << 40};
  big.size = 4LL << 40;
  ASSERT_TRUE(table.Add("big", internal::EncodeEntry(big)).ok());
  BundleEntry shard;
  shard.dtype = 1;
  shard.shard_id = 7;
  shard.size = 4;
  ASSERT_TRUE(table.Add("shard", internal::EncodeEntry(shard)).ok());
  BundleEntry str;
  str.dtype = 7;
  str.shape = {1LL << 50};
  str.size = 4;
  ASSERT_TRUE(table.Add("str", internal::EncodeEntry(str)).ok());
  ASSERT_TRUE(table.Finish().ok());
  ASSERT_TRUE(idx->Close().ok());
  auto r = Reader("h");
  EXPECT_EQ(r->ReadTensor("big").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r->ReadTensor("shard").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r->ReadTensor("str").status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace cairn
