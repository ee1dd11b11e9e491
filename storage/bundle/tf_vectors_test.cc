// Golden tests against real checkpoints written by TensorFlow
// (../shared/testdata/tf, described in its SOURCES.md).
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/internal/entry_codec.h"
#include "storage/bundle/internal/table.h"
#include "storage/storage.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::SharedDir;
using testing::TfVectors;

#define SKIP_WITHOUT_SHARED()                                                  \
  if (SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared/testdata/tf not found; " \
                                           "golden tests need the shared test material"

struct Opened {
  std::unique_ptr<Storage> storage;
  std::unique_ptr<BundleReader> reader;
};

Opened OpenVector(const std::string& prefix_path) {
  auto split = SplitPrefixUri(prefix_path);
  EXPECT_TRUE(split.ok());
  Opened o;
  o.storage = std::move(OpenStorage(split->root_uri, {})).value();
  auto r = BundleReader::Open(o.storage.get(), split->prefix);
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) o.reader = std::move(r).value();
  return o;
}

std::string VectorPrefix(const std::string& name) {
  for (const auto& v : TfVectors()) {
    if (v.name == name) return v.prefix;
  }
  ADD_FAILURE() << "no vector " << name;
  return "";
}

template <typename T>
T Scalar(const BundleReader& r, const std::string& name) {
  auto t = r.ReadTensor(name);
  EXPECT_TRUE(t.ok()) << name << ": " << t.status();
  if (!t.ok()) return T();
  EXPECT_EQ(t->data.size(), sizeof(T)) << name;
  T v;
  std::memcpy(&v, t->data.data(), sizeof(T));
  return v;
}

TEST(TfVectors, AllPresent) {
  SKIP_WITHOUT_SHARED();
  EXPECT_GE(TfVectors().size(), 20u);
}

TEST(TfVectors, EveryTensorReadsWithValidChecksums) {
  SKIP_WITHOUT_SHARED();
  for (const auto& v : TfVectors()) {
    SCOPED_TRACE(v.name);
    // Every tensor (partitioned ones assembled from their slices) read
    // through the reader, which checks each CRC32C.
    Opened o = OpenVector(v.prefix);
    ASSERT_NE(o.reader, nullptr);
    auto entries = o.reader->ListTensors();
    ASSERT_TRUE(entries.ok()) << entries.status();
    EXPECT_FALSE(entries->empty());
    for (const BundleEntry& e : *entries) {
      auto t = o.reader->ReadTensor(e.key);
      EXPECT_TRUE(t.ok()) << e.key << ": " << t.status();
    }
  }
}

TEST(TfVectors, HalfPlusTwoValues) {
  SKIP_WITHOUT_SHARED();
  for (const char* name : {"serving_saved_model_half_plus_two_gpu/variables",
                           "serving_saved_model_half_plus_two_cpu/variables"}) {
    SCOPED_TRACE(name);
    Opened o = OpenVector(VectorPrefix(name));
    ASSERT_TRUE(o.reader);
    EXPECT_EQ(Scalar<float>(*o.reader, "a"), 0.5f);
    EXPECT_EQ(Scalar<float>(*o.reader, "b"), 2.0f);
    EXPECT_EQ(Scalar<float>(*o.reader, "c"), 3.0f);
  }
  Opened cpu = OpenVector(VectorPrefix("serving_saved_model_half_plus_two_cpu/variables"));
  EXPECT_EQ(Scalar<float>(*cpu.reader, "a2"), 0.5f);
  EXPECT_EQ(Scalar<float>(*cpu.reader, "c2"), 3.0f);
  Opened three = OpenVector(VectorPrefix("serving_saved_model_half_plus_three/variables"));
  EXPECT_EQ(Scalar<float>(*three.reader, "b"), 3.0f);
}

TEST(TfVectors, SnappyTf2Values) {
  SKIP_WITHOUT_SHARED();
  Opened o = OpenVector(VectorPrefix("serving_saved_model_half_plus_two_tf2_cpu/variables"));
  ASSERT_TRUE(o.reader);
  EXPECT_EQ(Scalar<float>(*o.reader, "a/.ATTRIBUTES/VARIABLE_VALUE"), 0.5f);
  EXPECT_EQ(Scalar<float>(*o.reader, "b/.ATTRIBUTES/VARIABLE_VALUE"), 2.0f);
  EXPECT_EQ(Scalar<float>(*o.reader, "c/.ATTRIBUTES/VARIABLE_VALUE"), 3.0f);
  auto graph = o.reader->ReadTensor("_CHECKPOINTABLE_OBJECT_GRAPH");
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_EQ(graph->strings.size(), 1u);
  EXPECT_EQ(graph->strings[0].size(), 613u);
}

TEST(TfVectors, IntegerAndEstimatorValues) {
  SKIP_WITHOUT_SHARED();
  Opened tfx = OpenVector(VectorPrefix("tfx_estimator_tf1_ckpt/model.ckpt-1000"));
  EXPECT_EQ(Scalar<int64_t>(*tfx.reader, "global_step"), 1000);
  EXPECT_EQ(Scalar<int64_t>(*tfx.reader, "training/Ftrl/iter"), 1000);
  auto entries = tfx.reader->ListTensors();
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->size(), 60u);

  Opened i64 = OpenVector(VectorPrefix("tfjs_int64_multiply/variables"));
  EXPECT_EQ(Scalar<int64_t>(*i64.reader, "v1/.ATTRIBUTES/VARIABLE_VALUE"), 3);
  EXPECT_EQ(Scalar<int64_t>(*i64.reader, "v2/.ATTRIBUTES/VARIABLE_VALUE"), 2);
  Opened i32 = OpenVector(VectorPrefix("tfjs_times_two_int/variables"));
  EXPECT_EQ(Scalar<int32_t>(*i32.reader, "v/.ATTRIBUTES/VARIABLE_VALUE"), 2);

  Opened mgr5 = OpenVector(VectorPrefix("rl_ckpt_nstep_manager/ckpt-5"));
  Opened mgr6 = OpenVector(VectorPrefix("rl_ckpt_nstep_manager/ckpt-6"));
  EXPECT_EQ(Scalar<int64_t>(*mgr5.reader, "save_counter/.ATTRIBUTES/VARIABLE_VALUE"), 5);
  EXPECT_EQ(Scalar<int64_t>(*mgr6.reader, "save_counter/.ATTRIBUTES/VARIABLE_VALUE"), 6);
  EXPECT_EQ(Scalar<int64_t>(*mgr6.reader, "opt/iter/.ATTRIBUTES/VARIABLE_VALUE"), 50194);
}

TEST(TfVectors, TwoShardBundles) {
  SKIP_WITHOUT_SHARED();
  Opened o = OpenVector(VectorPrefix("keras_iris_weights_2shards/model.ckpt"));
  ASSERT_TRUE(o.reader);
  EXPECT_EQ(o.reader->num_shards(), 2);
  EXPECT_EQ(Scalar<int64_t>(*o.reader, "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"), 3840);
  auto kernel = o.reader->ReadTensor("layer-1/kernel/.ATTRIBUTES/VARIABLE_VALUE");
  ASSERT_TRUE(kernel.ok());
  EXPECT_EQ(kernel->shape, (std::vector<int64_t>{4, 128}));
  float first;
  std::memcpy(&first, kernel->data.data(), 4);
  EXPECT_FLOAT_EQ(first, -0.0863988995552063f);
  // A whole tensor can be read as any slice: rows 1..2 of the [4,128] kernel.
  auto rows = o.reader->ReadSlice("layer-1/kernel/.ATTRIBUTES/VARIABLE_VALUE",
                                  *TensorSlice::Parse("1,2:-"));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(0, std::memcmp(rows->data.data(), kernel->data.data() + 128 * 4, 2 * 128 * 4));
}

// Re-encodes every entry with Cairn's writer path (entry codec + table
// builder) and compares with TensorFlow's bytes.
TEST(TfVectors, IndexRebuildIsByteIdentical) {
  SKIP_WITHOUT_SHARED();
  int rebuilt = 0;
  for (const auto& v : TfVectors()) {
    SCOPED_TRACE(v.name);
    const std::string original = testing::ReadFile(v.prefix + ".index");
    auto split = SplitPrefixUri(v.prefix);
    auto storage = std::move(OpenStorage(split->root_uri, {})).value();
    auto file = std::move(storage->NewReadableFile(split->prefix + ".index")).value();
    auto table = std::move(internal::Table::Open(file.get())).value();
    // A vector is "Snappy" if any block says so; rebuild it the same way.
    const bool snappy = v.name.find("half_plus_two_cpu") != std::string::npos ||
                        v.name.find("half_plus_two_tf2_cpu") != std::string::npos;

    testing::TempDir tmp;
    auto out_storage = std::move(NewLocalStorage(tmp.path())).value();
    auto out = std::move(out_storage->NewWritableFile("rebuilt.index")).value();
    internal::TableBuilder::Options options;
    options.snappy = snappy;
    internal::TableBuilder builder(options, out.get());
    auto it = table->NewIterator();
    ASSERT_TRUE(it->SeekToFirst().ok());
    internal::BundleHeader header;
    for (; it->Valid(); it->Next().IgnoreError()) {
      std::string value;
      if (it->key().empty()) {
        ASSERT_TRUE(internal::DecodeHeader(it->value(), &header).ok());
        value = internal::EncodeHeader(header);
      } else {
        BundleEntry e;
        ASSERT_TRUE(internal::DecodeEntry(it->key(), it->value(), header.num_shards, &e).ok());
        value = internal::EncodeEntry(e);
      }
      EXPECT_EQ(value, std::string(it->value())) << "entry " << it->key();
      ASSERT_TRUE(builder.Add(it->key(), value).ok());
    }
    ASSERT_TRUE(builder.Finish().ok());
    ASSERT_TRUE(out->Close().ok());
    EXPECT_EQ(testing::ReadFile(tmp.Join("rebuilt.index")), original);
    ++rebuilt;
  }
  EXPECT_GE(rebuilt, 21);
}

}  // namespace
}  // namespace cairn
