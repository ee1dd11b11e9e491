// Tests of the client library (client/client.h) and of `cairn save | restore
// | list`, the latter run as real processes. The service side is played by
// small in-process fakes of the Coordinator and ShardWriter services that
// record what the client sends (the fake writer writes a real bundle), so
// these tests pin the client's half of the protocol; end-to-end tests with
// the real servers live with the servers.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/shard_stream.h"
#include "client/tools.h"
#include "gtest/gtest.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/safetensors.h"
#include "storage/storage.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

namespace v1 = ::cairn::v1;
using testing::BinPath;
using testing::Run;
using testing::RunResult;

// ----------------------------------------------------------------- helpers

std::string Floats(int64_t n, float start) {
  std::string out(static_cast<size_t>(n) * 4, '\0');
  for (int64_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(&out[static_cast<size_t>(i) * 4], &v, 4);
  }
  return out;
}

// Rows [r0, r0+nr) and columns [c0, c0+nc) of a row-major float matrix with
// `cols` columns.
std::string SubMatrix(const std::string& m, int64_t cols, int64_t r0, int64_t nr, int64_t c0,
                      int64_t nc) {
  std::string out;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    out += m.substr(static_cast<size_t>((r * cols + c0) * 4), static_cast<size_t>(nc * 4));
  }
  return out;
}

TensorSlice Slice(const std::string& text) {
  auto s = TensorSlice::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : TensorSlice();
}

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return Run(args);
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

void WriteSafetensors(const std::string& path, std::vector<SafetensorsTensor> infos,
                      std::map<std::string, std::string> data,
                      const std::map<std::string, std::string>& metadata) {
  auto prefix = BuildSafetensorsPrefix(&infos, metadata);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  std::string bytes = *prefix;
  for (const auto& info : infos) bytes += data[info.name];
  testing::WriteFile(path, bytes);
}

// The checkpoint most tests restore from: four single-writer parts merged
// into DIR/job/ckpt-5/variables, as the service's commit does. Part k holds
// rows [25k, 25k+25) of "emb" (100 x 6 floats) and its own "w_k"; part 0
// also holds a string tensor "names" and an int64 scalar "step".
class FourPartCheckpoint {
 public:
  FourPartCheckpoint() {
    auto storage = OpenStorage(dir_.path(), {});
    EXPECT_TRUE(storage.ok()) << storage.status();
    storage_ = std::move(storage).value();
    emb_ = Floats(100 * 6, 0.0f);
    std::vector<std::string> parts;
    for (int k = 0; k < 4; ++k) {
      const std::string part = absl::StrCat("job/ckpt-5/variables_temp/part-0000", k, "-of-00004");
      auto w = BundleWriter::Create(storage_.get(), part);
      EXPECT_TRUE(w.ok()) << w.status();
      EXPECT_TRUE((*w)->AddSlice("emb", {100, 6}, TensorSlice({{25 * k, 25}, {}}),
                                 DataType::kFloat, SubMatrix(emb_, 6, 25 * k, 25, 0, 6))
                      .ok());
      w_[k] = Floats(3 + k, 100.0f * static_cast<float>(k));
      EXPECT_TRUE((*w)->Add(absl::StrCat("w_", k), DataType::kFloat, {3 + k}, w_[k]).ok());
      if (k == 0) {
        EXPECT_TRUE((*w)->AddString("names", {3}, {"alpha", "", "gamma"}).ok());
        int64_t step = 5;
        EXPECT_TRUE((*w)->Add("step", DataType::kInt64, {},
                              absl::string_view(reinterpret_cast<const char*>(&step), 8))
                        .ok());
      }
      EXPECT_TRUE((*w)->Finish().ok());
      parts.push_back(part);
    }
    auto merged = MergeBundles(storage_.get(), parts, "job/ckpt-5/variables");
    EXPECT_TRUE(merged.ok()) << merged.status();
    EXPECT_EQ(merged->num_shards, 4);
  }

  // Corrupts the stored data of tensor `name` (its first byte).
  bool FlipFirstByteOf(const std::string& name) {
    auto reader = BundleReader::Open(storage_.get(), "job/ckpt-5/variables");
    if (!reader.ok()) return false;
    auto entry = (*reader)->Lookup(name);
    if (!entry.ok()) return false;
    const std::string file = dir_.Join(DataFileName("job/ckpt-5/variables", entry->shard_id, 4));
    std::string data = testing::ReadFile(file);
    data[static_cast<size_t>(entry->offset)] ^= 1;
    testing::WriteFile(file, data);
    return true;
  }

  std::string prefix() const { return dir_.Join("job/ckpt-5/variables"); }
  std::string uri() const { return "file://" + prefix(); }
  const std::string& emb() const { return emb_; }
  const std::string& w(int k) const { return w_[k]; }
  const testing::TempDir& dir() const { return dir_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<Storage> storage_;
  std::string emb_;
  std::string w_[4];
};

// ------------------------------------------------------- RestoreFromPrefix

TEST(RestoreFromPrefix, EveryTensorWhole) {
  FourPartCheckpoint ckpt;
  for (int threads : {1, 3, 16}) {
    SCOPED_TRACE(threads);
    for (const std::string& prefix : {ckpt.prefix(), ckpt.uri()}) {
      auto r = RestoreFromPrefix(prefix, {}, threads);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->size(), 7u);  // emb, w_0..w_3, names, step: no slice keys
      const RestoredTensor& emb = r->at("emb");
      EXPECT_EQ(emb.tensor.dtype, DataType::kFloat);
      EXPECT_EQ(emb.tensor.shape, (std::vector<int64_t>{100, 6}));
      EXPECT_EQ(emb.full_shape, (std::vector<int64_t>{100, 6}));
      EXPECT_FALSE(emb.slice.has_value());
      EXPECT_EQ(emb.tensor.data.view(), ckpt.emb());
      for (int k = 0; k < 4; ++k) {
        EXPECT_EQ(r->at(absl::StrCat("w_", k)).tensor.data.view(), ckpt.w(k));
      }
      EXPECT_EQ(r->at("names").tensor.dtype, DataType::kString);
      EXPECT_EQ(r->at("names").tensor.strings, (std::vector<std::string>{"alpha", "", "gamma"}));
      EXPECT_EQ(r->at("step").tensor.shape, std::vector<int64_t>{});
      int64_t step;
      std::memcpy(&step, r->at("step").tensor.data.data(), 8);
      EXPECT_EQ(step, 5);
    }
  }
}

TEST(RestoreFromPrefix, NamedSubset) {
  FourPartCheckpoint ckpt;
  RestoreRequest request;
  request.tensors = {"w_2", "names", "w_2"};
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at("w_2").tensor.data.view(), ckpt.w(2));
  EXPECT_EQ(r->at("names").tensor.strings.size(), 3u);
}

// A tensor saved as 4 row slices by 4 writers is re-cut to any box: one that
// spans three of the stored slices, one inside a single slice, and the whole.
TEST(RestoreFromPrefix, SliceRecutAcrossFourPartMergedBundle) {
  FourPartCheckpoint ckpt;
  struct Case {
    std::string slice;
    int64_t r0, nr, c0, nc;
  };
  for (const Case& c : std::vector<Case>{{"10,60:1,3", 10, 60, 1, 3},
                                         {"30,5:-", 30, 5, 0, 6},
                                         {"-:5,1", 0, 100, 5, 1},
                                         {"0,100:0,6", 0, 100, 0, 6}}) {
    SCOPED_TRACE(c.slice);
    for (int threads : {1, 4}) {
      RestoreRequest request;
      request.slices["emb"] = Slice(c.slice);
      auto r = RestoreFromPrefix(ckpt.prefix(), request, threads);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->size(), 7u);  // the others whole
      const RestoredTensor& emb = r->at("emb");
      EXPECT_EQ(emb.tensor.shape, (std::vector<int64_t>{c.nr, c.nc}));
      EXPECT_EQ(emb.full_shape, (std::vector<int64_t>{100, 6}));
      ASSERT_TRUE(emb.slice.has_value());
      EXPECT_EQ(emb.slice->ToString(), c.slice);
      EXPECT_EQ(emb.tensor.data.view(), SubMatrix(ckpt.emb(), 6, c.r0, c.nr, c.c0, c.nc));
      EXPECT_EQ(r->at("w_1").tensor.data.view(), ckpt.w(1));
    }
  }
  // A tensor named only in `slices` joins a named subset.
  RestoreRequest request;
  request.tensors = {"w_3"};
  request.slices["emb"] = Slice("99,1:-");
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at("emb").tensor.data.view(), SubMatrix(ckpt.emb(), 6, 99, 1, 0, 6));
  // Slicing a whole (unpartitioned) tensor works too.
  request = {};
  request.tensors = {"w_3"};
  request.slices["w_3"] = Slice("2,3");
  r = RestoreFromPrefix(ckpt.prefix(), request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->at("w_3").tensor.data.view(), ckpt.w(3).substr(8, 12));
}

TEST(RestoreFromPrefix, MissingTensorOrCheckpointIsNotFound) {
  FourPartCheckpoint ckpt;
  RestoreRequest request;
  request.tensors = {"w_0", "nope"};
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(r.status().message(), "\"nope\"")) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), ckpt.prefix())) << r.status();

  request = {};
  request.slices["ghost"] = Slice("0,1");
  r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(r.status().message(), "\"ghost\"")) << r.status();

  r = RestoreFromPrefix(ckpt.dir().Join("job/ckpt-6/variables"), {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(r.status().message(), "ckpt-6")) << r.status();
}

TEST(RestoreFromPrefix, BadSlicesAreInvalidArgument) {
  FourPartCheckpoint ckpt;
  RestoreRequest request;
  request.slices["names"] = Slice("0,2");  // strings are restored whole
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "\"names\"")) << r.status();
  // ... but asking for all of a string tensor is fine.
  request.slices["names"] = Slice("-");
  EXPECT_TRUE(RestoreFromPrefix(ckpt.prefix(), request).ok());

  request = {};
  request.slices["emb"] = Slice("90,20:-");  // past the end
  r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "\"emb\"")) << r.status();
  request.slices["emb"] = Slice("0,5");  // wrong rank
  r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RestoreFromPrefix, IntoCallerMemoryWholeAndSliced) {
  FourPartCheckpoint ckpt;
  std::string w1(ckpt.w(1).size(), '\0');
  std::string rows(10 * 6 * 4, '\0');  // emb rows 20-29: across two stored slices
  RestoreRequest request;
  request.tensors = {"w_1", "emb", "names"};
  request.slices["emb"] = Slice("20,10:-");
  request.into["w_1"] = absl::MakeSpan(w1);
  request.into["emb"] = absl::MakeSpan(rows);
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(w1, ckpt.w(1));
  EXPECT_EQ(rows, SubMatrix(ckpt.emb(), 6, 20, 10, 0, 6));
  // The results view the caller's memory; the others are as usual.
  EXPECT_EQ(r->at("w_1").tensor.data.data(), w1.data());
  EXPECT_EQ(r->at("emb").tensor.data.data(), rows.data());
  EXPECT_EQ(r->at("emb").tensor.shape, (std::vector<int64_t>{10, 6}));
  EXPECT_EQ(r->at("names").tensor.strings, (std::vector<std::string>{"alpha", "", "gamma"}));
}

TEST(RestoreFromPrefix, IntoCallerMemoryChecksEveryDestinationBeforeWriting) {
  FourPartCheckpoint ckpt;
  std::string w0(ckpt.w(0).size(), 'x');
  std::string small(ckpt.w(2).size() - 4, 'x');
  RestoreRequest request;
  request.into["w_0"] = absl::MakeSpan(w0);
  request.into["w_2"] = absl::MakeSpan(small);  // one float short
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "\"w_2\"")) << r.status();
  EXPECT_EQ(w0, std::string(w0.size(), 'x')) << "written before every size was checked";

  request.into.erase("w_2");
  request.into["nope"] = absl::MakeSpan(small);
  EXPECT_EQ(RestoreFromPrefix(ckpt.prefix(), request).status().code(), absl::StatusCode::kNotFound);
  request.into.erase("nope");
  request.tensors = {"w_1"};  // w_0 has a destination but is not requested
  EXPECT_EQ(RestoreFromPrefix(ckpt.prefix(), request).status().code(),
            absl::StatusCode::kInvalidArgument);
  request.tensors.clear();
  request.into.clear();
  std::string strings(16, 'x');
  request.into["names"] = absl::MakeSpan(strings);
  auto s = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.status().message(), "string")) << s.status();

  // A corrupt tensor restored into caller memory is DataLoss all the same.
  ASSERT_TRUE(ckpt.FlipFirstByteOf("w_0"));
  request.into.clear();
  request.into["w_0"] = absl::MakeSpan(w0);
  auto c = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(c.status().message(), "w_0")) << c.status();
}

TEST(RestoreFromPrefix, CorruptDataIsDataLossNamingTheTensor) {
  FourPartCheckpoint ckpt;
  ASSERT_TRUE(ckpt.FlipFirstByteOf("w_2"));
  auto r = RestoreFromPrefix(ckpt.prefix(), {}, 4);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(r.status().message(), "w_2")) << r.status();
}

// ---------------------------------------------------------------- progress

// Records a ProgressFn's calls, checking as they come that no two overlap
// (client/progress.h: never two at once).
class ProgressLog {
 public:
  ProgressFn Fn() {
    return [this](uint64_t done, uint64_t total) {
      if (inside_.fetch_add(1) != 0) overlapped_ = true;
      calls_.emplace_back(done, total);
      std::this_thread::yield();
      inside_.fetch_sub(1);
    };
  }
  const std::vector<std::pair<uint64_t, uint64_t>>& calls() const { return calls_; }

  // The contract after a success: (0, total) first, (total, total) last and
  // only once, `done` never decreasing, `total` fixed.
  void ExpectComplete(uint64_t total) const {
    EXPECT_FALSE(overlapped_.load()) << "two calls at once";
    ASSERT_GE(calls_.size(), 1u);
    EXPECT_EQ(calls_.front(), std::make_pair(uint64_t{0}, total));
    EXPECT_EQ(calls_.back(), std::make_pair(total, total));
    for (size_t i = 0; i < calls_.size(); ++i) {
      EXPECT_EQ(calls_[i].second, total) << "call " << i;
      if (i > 0) {
        EXPECT_GE(calls_[i].first, calls_[i - 1].first) << "call " << i;
      }
      if (i + 1 < calls_.size() && total > 0) {
        EXPECT_LT(calls_[i].first, total) << "(total, total) reported before the end, call " << i;
      }
    }
  }

 private:
  std::atomic<int> inside_{0};
  std::atomic<bool> overlapped_{false};
  std::vector<std::pair<uint64_t, uint64_t>> calls_;
};

// emb 100x6 floats, w_0..w_3 of 3..6 floats, the int64 step, and the three
// strings of "names" at one byte per element.
constexpr uint64_t kFourPartRestoreBytes = 100 * 6 * 4 + (3 + 4 + 5 + 6) * 4 + 8 + 3;

TEST(Progress, RestoreFromPrefixCountsEachTensorAsItIsRead) {
  FourPartCheckpoint ckpt;
  for (int threads : {1, 4}) {
    SCOPED_TRACE(threads);
    ProgressLog log;
    auto r = RestoreFromPrefix(ckpt.prefix(), {}, threads, log.Fn());
    ASSERT_TRUE(r.ok()) << r.status();
    log.ExpectComplete(kFourPartRestoreBytes);
    EXPECT_EQ(log.calls().size(), 8u) << "the start, then one call per tensor";
  }
  // A slice counts the bytes of the slice.
  ProgressLog log;
  RestoreRequest request;
  request.tensors = {"emb"};
  request.slices["emb"] = Slice("0,10:-");
  auto r = RestoreFromPrefix(ckpt.prefix(), request, 2, log.Fn());
  ASSERT_TRUE(r.ok()) << r.status();
  log.ExpectComplete(10 * 6 * 4);
}

TEST(Progress, AFailedRestoreNeverReportsTheTotal) {
  FourPartCheckpoint ckpt;
  ASSERT_TRUE(ckpt.FlipFirstByteOf("w_2"));
  ProgressLog log;
  ASSERT_FALSE(RestoreFromPrefix(ckpt.prefix(), {}, 1, log.Fn()).ok());
  ASSERT_FALSE(log.calls().empty());
  EXPECT_EQ(log.calls().front(), std::make_pair(uint64_t{0}, kFourPartRestoreBytes));
  EXPECT_LT(log.calls().back().first, kFourPartRestoreBytes);
}

TEST(Progress, VerifyCountsTensorsAndDeepVerifyCountsFiles) {
  FourPartCheckpoint ckpt;
  ProgressLog log;
  auto report = VerifyCheckpoint(ckpt.uri(), log.Fn());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->ok());
  log.ExpectComplete(report->bytes);
  EXPECT_GT(report->bytes, 2400u);
  EXPECT_GE(log.calls().size(), 8u) << "the start, then one call per tensor or slice";

  // Every file of the checkpoint, plus one that is missing: it counts as
  // done (and is a problem), so the bar still ends at the total.
  std::vector<ExpectedFile> files;
  uint64_t total = 0;
  for (const std::string& name :
       {std::string("job/ckpt-5/variables.index"),
        absl::StrCat("job/ckpt-5/variables.data-00000-of-00004"),
        absl::StrCat("job/ckpt-5/variables.data-00003-of-00004")}) {
    const uint64_t size = testing::ReadFile(ckpt.dir().Join(name)).size();
    files.push_back({name, size, 0, ""});
    total += size;
  }
  files.push_back({"job/ckpt-5/absent", 1000, 0, ""});
  total += 1000;
  ProgressLog files_log;
  auto deep = VerifyFiles("file://" + ckpt.dir().path(), files, files_log.Fn());
  ASSERT_TRUE(deep.ok()) << deep.status();
  EXPECT_EQ(deep->problems.size(), 1u);
  files_log.ExpectComplete(total);
}

TEST(Progress, ConvertCountsEveryChunkBothWays) {
  testing::TempDir dir;
  const std::string big = testing::PatternBytes((9 << 20) + 12, 3);  // two 8 MiB reads
  const std::string small = Floats(5, 1);
  const std::string src = dir.Join("in.safetensors");
  WriteSafetensors(src,
                   {{"big", DataType::kUint8, {static_cast<int64_t>(big.size())}},
                    {"small", DataType::kFloat, {5}}},
                   {{"big", big}, {"small", small}}, {});
  const uint64_t total = big.size() + small.size();
  for (int shards : {1, 2}) {
    SCOPED_TRACE(shards);
    ConvertOptions options;
    options.shards = shards;
    ProgressLog log;
    options.progress = log.Fn();
    const std::string prefix = dir.Join(absl::StrCat("out", shards, "/variables"));
    ASSERT_TRUE(ConvertSafetensorsToBundle(src, prefix, options).ok());
    log.ExpectComplete(total);
    EXPECT_EQ(log.calls().size(), 4u) << "the start, 8 MiB, the rest of big, small";

    ConvertOptions back_options;
    ProgressLog back_log;
    back_options.progress = back_log.Fn();
    const std::string back = dir.Join(absl::StrCat("back", shards, ".safetensors"));
    ASSERT_TRUE(ConvertBundleToSafetensors(prefix, back, back_options).ok());
    back_log.ExpectComplete(total);
    EXPECT_EQ(back_log.calls().size(), 3u) << "the start, then one call per tensor";
    EXPECT_EQ(testing::ReadFile(back), testing::ReadFile(src));
  }
}

// ------------------------------------------------ SaveShard input checks

class SaveShardValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions options;
    options.coordinator = "127.0.0.1:1";  // nothing listens: no RPC may be needed
    options.rpc_timeout_ms = 5000;
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }

  // Expects InvalidArgument mentioning `needle`.
  void ExpectInvalid(const SaveShardOptions& options, const std::vector<SaveTensor>& tensors,
                     const std::string& needle) {
    auto r = client_->SaveShard(options, tensors);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << needle << ": " << r.status();
    EXPECT_TRUE(Contains(r.status().message(), needle)) << needle << ": " << r.status();
  }

  std::unique_ptr<Client> client_;
  std::string floats6_ = Floats(6, 0);
};

TEST_F(SaveShardValidation, ConnectNeedsAnAddress) {
  EXPECT_EQ(Client::Connect({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SaveShardValidation, BadJobStepOrShard) {
  std::vector<SaveTensor> ok = {{"w", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}}};
  ExpectInvalid({"", 1, 0, 1, {}}, ok, "job name");
  ExpectInvalid({".hidden", 1, 0, 1, {}}, ok, ".hidden");
  ExpectInvalid({"a/b", 1, 0, 1, {}}, ok, "a/b");
  ExpectInvalid({"bad job", 1, 0, 1, {}}, ok, "bad job");
  ExpectInvalid({std::string(129, 'j'), 1, 0, 1, {}}, ok, "129");
  ExpectInvalid({"job", -1, 0, 1, {}}, ok, "step -1");
  ExpectInvalid({"job", 1, 0, 0, {}}, ok, "num_shards");
  ExpectInvalid({"job", 1, 4, 4, {}}, ok, "shard index 4");
  ExpectInvalid({"job", 1, -1, 4, {}}, ok, "shard index -1");
  ExpectInvalid({"job", 1, 0, 1, {{"", 1.0}}}, ok, "metric");
  ExpectInvalid({"job", 1, 0, 1, {{"loss", std::nan("")}}}, ok, "\"loss\"");
}

TEST_F(SaveShardValidation, BadTensors) {
  const SaveShardOptions o{"job", 1, 0, 1, {}};
  ExpectInvalid(o, {{"", DataType::kFloat, {6}, std::nullopt, floats6_, {}}}, "tensor #0");
  ExpectInvalid(o, {{"w", DataType::kInvalid, {6}, std::nullopt, floats6_, {}}}, "\"w\"");
  ExpectInvalid(o, {{"w", DataType::kResource, {6}, std::nullopt, floats6_, {}}}, "resource");
  ExpectInvalid(o, {{"w", DataType::kFloat, {-1, 6}, std::nullopt, floats6_, {}}}, "\"w\"");
  ExpectInvalid(o, {{"w", DataType::kFloat, {1LL << 40, 1LL << 40}, std::nullopt, "", {}}},
                "\"w\"");
  // 2^61 elements of 8 bytes overflow a byte count.
  ExpectInvalid(o, {{"w", DataType::kDouble, {1LL << 61}, std::nullopt, "", {}}}, "overflow");
  ExpectInvalid(o, {{"w", DataType::kFloat, {7}, std::nullopt, floats6_, {}}}, "needs 28 bytes");
  ExpectInvalid(o, {{"w", DataType::kFloat, {6}, std::nullopt, floats6_.substr(1), {}}},
                "but 23 were given");
  // Slices: must have the shape's rank and fit it; data is the slice's.
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("0,2"), floats6_, {}}}, "rank");
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("9,2:-"), floats6_, {}}},
                "does not fit");
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("0,3:-"), floats6_, {}}},
                "needs 36 bytes");
  // Strings: values in `strings`, whole only.
  ExpectInvalid(o, {{"s", DataType::kString, {3}, std::nullopt, "", {"a", "b"}}}, "needs 3 strings");
  ExpectInvalid(o, {{"s", DataType::kString, {2}, std::nullopt, "xx", {"a", "b"}}}, "\"s\"");
  ExpectInvalid(o, {{"s", DataType::kString, {4}, Slice("0,2"), "", {"a", "b"}}}, "slices");
  ExpectInvalid(o, {{"w", DataType::kFloat, {6}, std::nullopt, floats6_, {"x"}}}, "\"w\"");
  // Duplicates.
  ExpectInvalid(o,
                {{"w", DataType::kFloat, {6}, std::nullopt, floats6_, {}},
                 {"w", DataType::kFloat, {6}, std::nullopt, floats6_, {}}},
                "more than once");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}}},
                "more than once");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {6, 3}, Slice("2,2:-"), floats6_, {}}},
                "earlier slice");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}}},
                "more than once");
}

// Valid input gets as far as the coordinator, which is not there.
TEST_F(SaveShardValidation, UnreachableCoordinatorIsNamed) {
  std::vector<SaveTensor> ok = {{"w", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}},
                                {"e", DataType::kFloat, {4, 3}, Slice("2,2:-"), floats6_, {}},
                                {"s", DataType::kString, {}, std::nullopt, "", {"x"}},
                                {"z", DataType::kFloat, {0, 5}, std::nullopt, "", {}}};
  auto r = client_->SaveShard({"job", 1, 0, 1, {}}, ok);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "coordinator 127.0.0.1:1")) << r.status();
  auto l = client_->List("job");
  EXPECT_EQ(l.status().code(), absl::StatusCode::kUnavailable) << l.status();
  EXPECT_EQ(client_->List("../x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Get("job", -3).status().code(), absl::StatusCode::kInvalidArgument);
}

// Bad retention input is refused before any RPC: the coordinator is not
// there, so anything that reaches it would be Unavailable instead.
TEST_F(SaveShardValidation, RetentionInputIsCheckedClientSide) {
  auto expect_invalid = [this](const RetentionPolicy& p, const std::string& needle) {
    absl::Status s = client_->SetPolicy("j", p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle << ": " << s;
    EXPECT_TRUE(Contains(s.message(), needle)) << needle << ": " << s;
    EXPECT_TRUE(Contains(s.message(), "job j")) << s;
  };
  RetentionPolicy p;
  p.keep_last = -1;
  expect_invalid(p, "keep-last");
  p = {};
  p.keep_every_steps = -5;
  expect_invalid(p, "keep-every-steps");
  p = {};
  p.keep_every_hours = -1;
  expect_invalid(p, "keep-every-hours");
  p.keep_every_hours = std::nan("");
  expect_invalid(p, "keep-every-hours");
  p.keep_every_hours = std::numeric_limits<double>::infinity();
  expect_invalid(p, "keep-every-hours");
  p = {};
  p.keep_best = -1;
  p.metric = "loss";
  expect_invalid(p, "keep-best");
  p.keep_best = 2;
  p.metric = "";
  expect_invalid(p, "metric");
  p.keep_best = 0;
  p.metric = "loss";
  expect_invalid(p, "\"loss\"");

  const auto invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(client_->SetPolicy("bad job", {}).code(), invalid);
  EXPECT_EQ(client_->GetPolicy(".x").status().code(), invalid);
  EXPECT_EQ(client_->Gc("", true).status().code(), invalid);
  EXPECT_EQ(client_->Pin("a/b", 1, true).code(), invalid);
  EXPECT_EQ(client_->Pin("j", -1, true).code(), invalid);
  EXPECT_EQ(client_->AcquireLease("j", -1, 1000).status().code(), invalid);
  EXPECT_EQ(client_->AcquireLease("j", 1, 0).status().code(), invalid);
  EXPECT_EQ(client_->ReleaseLease("").code(), invalid);

  // Valid input gets as far as the (absent) coordinator, which is named.
  p = {};
  p.keep_best = 1;
  p.metric = "loss";
  p.keep_every_hours = 0.25;
  absl::Status s = client_->SetPolicy("j", p);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(Contains(s.message(), "coordinator 127.0.0.1:1")) << s;
  EXPECT_EQ(client_->SetPolicy("j", {}).code(), absl::StatusCode::kUnavailable);
  s = client_->Pin("j", 3, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(Contains(s.message(), "j/3")) << s;
  EXPECT_EQ(client_->Gc("j", true).status().code(), absl::StatusCode::kUnavailable);
}

// ------------------------------------------------ fake service, save & list

// A ShardWriter that records every message and writes the shard as a real
// single-file bundle at the staging prefix under `root`.
class FakeWriter final : public v1::ShardWriter::Service {
 public:
  struct Received {
    v1::TensorHeader header;
    std::string data;
    std::vector<size_t> chunks;
  };

  explicit FakeWriter(std::string root) : root_(std::move(root)) {}

  grpc::Status SaveShard(grpc::ServerContext*, grpc::ServerReader<v1::SaveShardMessage>* reader,
                         v1::SaveShardResponse* response) override {
    v1::SaveShardMessage msg;
    if (!reader->Read(&msg) || !msg.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header first");
    }
    v1::SaveShardHeader header = msg.header();
    auto storage = OpenStorage(root_, {});
    if (!storage.ok()) return rpc::ToGrpc(storage.status());
    auto writer = BundleWriter::Create(storage->get(), header.staging_prefix());
    if (!writer.ok()) return rpc::ToGrpc(writer.status());
    std::vector<Received> received;
    bool in_tensor = false;
    absl::Status s;
    while (s.ok() && reader->Read(&msg)) {
      if (msg.has_header()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "2nd header");
      if (msg.has_tensor()) {
        if (in_tensor) s = (*writer)->EndTensor();
        in_tensor = false;
        received.push_back({msg.tensor(), "", {}});
        const v1::TensorHeader& th = msg.tensor();
        std::vector<int64_t> shape(th.shape().begin(), th.shape().end());
        const DataType dtype = static_cast<DataType>(th.dtype());
        if (!s.ok()) break;
        if (dtype == DataType::kString) {
          s = (*writer)->AddString(th.name(), shape, {th.string_values().begin(),
                                                      th.string_values().end()});
        } else if (!th.slice().empty()) {
          auto slice = TensorSlice::Parse(th.slice());
          s = slice.ok() ? (*writer)->BeginSlice(th.name(), shape, *slice, dtype) : slice.status();
          in_tensor = true;
        } else {
          s = (*writer)->BeginTensor(th.name(), dtype, shape);
          in_tensor = true;
        }
      } else {
        if (received.empty() || !in_tensor) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "data outside a tensor");
        }
        received.back().data += msg.data();
        received.back().chunks.push_back(msg.data().size());
        s = (*writer)->AppendData(msg.data());
      }
    }
    if (s.ok() && in_tensor) s = (*writer)->EndTensor();
    if (s.ok()) s = (*writer)->Finish();
    if (!s.ok()) return rpc::ToGrpc(s);
    response->set_committed(header.shard_index() == header.num_shards() - 1);
    response->set_bytes((*writer)->data_bytes());
    response->set_num_tensors(static_cast<int64_t>(received.size()));
    std::lock_guard<std::mutex> lock(mu_);
    headers_.push_back(header);
    tensors_.push_back(std::move(received));
    return grpc::Status::OK;
  }

  std::vector<v1::SaveShardHeader> headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return headers_;
  }
  std::vector<std::vector<Received>> tensors() {
    std::lock_guard<std::mutex> lock(mu_);
    return tensors_;
  }

 private:
  const std::string root_;
  std::mutex mu_;
  std::vector<v1::SaveShardHeader> headers_;
  std::vector<std::vector<Received>> tensors_;
};

// A Coordinator that assigns `writer_address` for every shard and answers
// List/Get from the checkpoints a test adds. The retention RPCs record their
// requests: SetPolicy stores the policy GetPolicy returns, Pin needs a known
// checkpoint, Gc answers with a canned response, leases are numbered
// "lease-N". `calls()` lists the Get/AcquireLease/ReleaseLease calls in
// order; hooks run when a lease is acquired or released.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status BeginShard(grpc::ServerContext*, const v1::BeginShardRequest* request,
                          v1::BeginShardResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    begins_.push_back(*request);
    response->set_writer_address(writer_address_);
    response->set_token(absl::StrCat("token-", begins_.size()));
    response->set_staging_prefix(
        request->num_shards() == 1
            ? absl::StrCat(request->job(), "/ckpt-", request->step(), "/variables")
            : absl::StrCat(request->job(), "/ckpt-", request->step(), "/variables_temp/part-",
                           request->shard_index()));
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request,
                    v1::ListResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (request->include_uncommitted()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the client asks for committed only");
    }
    for (const auto& [key, info] : checkpoints_) {
      if (key.first == request->job()) *response->add_checkpoints() = info;
    }
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* request,
                   v1::GetResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(request->latest() ? "Get(latest)" : absl::StrCat("Get(", request->step(), ")"));
    const v1::CheckpointInfo* found = nullptr;
    for (const auto& [key, info] : checkpoints_) {
      if (key.first == request->job() && (request->latest() || key.second == request->step())) {
        found = &info;
      }
    }
    if (found == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no committed checkpoint of job ", request->job(),
                                       request->latest() ? "" : absl::StrCat(" at step ",
                                                                             request->step())));
    }
    *response->mutable_checkpoint() = *found;
    return grpc::Status::OK;
  }

  grpc::Status SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* request,
                         v1::SetPolicyResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    set_policies_.push_back(*request);
    policies_[request->job()] = request->policy();
    return grpc::Status::OK;
  }

  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    get_policies_.push_back(*request);
    auto it = policies_.find(request->job());
    if (it != policies_.end()) *response->mutable_policy() = it->second;
    return grpc::Status::OK;
  }

  grpc::Status Pin(grpc::ServerContext*, const v1::PinRequest* request,
                   v1::PinResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    pins_.push_back(*request);
    auto it = checkpoints_.find({request->job(), request->step()});
    if (it == checkpoints_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no committed checkpoint of job ", request->job(),
                                       " at step ", request->step()));
    }
    it->second.set_pinned(request->pinned());
    return grpc::Status::OK;
  }

  grpc::Status Gc(grpc::ServerContext*, const v1::GcRequest* request,
                  v1::GcResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    gcs_.push_back(*request);
    *response = gc_response_;
    if (request->dry_run()) response->set_deleted(0);  // nothing is deleted
    return grpc::Status::OK;
  }

  grpc::Status AcquireLease(grpc::ServerContext*, const v1::AcquireLeaseRequest* request,
                            v1::AcquireLeaseResponse* response) override {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(absl::StrCat("AcquireLease(", request->step(), ")"));
      acquires_.push_back(*request);
      if (!acquire_error_.ok()) return acquire_error_;
      if (!checkpoints_.count({request->job(), request->step()})) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("no committed checkpoint of job ", request->job(),
                                         " at step ", request->step()));
      }
      response->set_lease_id(absl::StrCat("lease-", acquires_.size()));
      response->set_expires_at_micros(1700000000000000 + request->ttl_ms() * 1000);
      hook = on_acquire_;
    }
    if (hook) hook();
    return grpc::Status::OK;
  }

  grpc::Status ReleaseLease(grpc::ServerContext*, const v1::ReleaseLeaseRequest* request,
                            v1::ReleaseLeaseResponse*) override {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(absl::StrCat("ReleaseLease(", request->lease_id(), ")"));
      releases_.push_back(request->lease_id());
      hook = on_release_;
      if (!release_error_.ok()) return release_error_;
    }
    if (hook) hook();
    return grpc::Status::OK;
  }

  void set_gc_response(const v1::GcResponse& r) {
    std::lock_guard<std::mutex> lock(mu_);
    gc_response_ = r;
  }
  void set_acquire_error(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    acquire_error_ = s;
  }
  void set_release_error(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    release_error_ = s;
  }
  void set_lease_hooks(std::function<void()> on_acquire, std::function<void()> on_release) {
    std::lock_guard<std::mutex> lock(mu_);
    on_acquire_ = std::move(on_acquire);
    on_release_ = std::move(on_release);
  }
  std::vector<v1::SetPolicyRequest> set_policies() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_policies_;
  }
  std::vector<v1::GetPolicyRequest> get_policies() {
    std::lock_guard<std::mutex> lock(mu_);
    return get_policies_;
  }
  std::vector<v1::PinRequest> pins() {
    std::lock_guard<std::mutex> lock(mu_);
    return pins_;
  }
  std::vector<v1::GcRequest> gcs() {
    std::lock_guard<std::mutex> lock(mu_);
    return gcs_;
  }
  std::vector<v1::AcquireLeaseRequest> acquires() {
    std::lock_guard<std::mutex> lock(mu_);
    return acquires_;
  }
  std::vector<std::string> releases() {
    std::lock_guard<std::mutex> lock(mu_);
    return releases_;
  }
  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  void clear_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.clear();
  }

  void set_writer_address(const std::string& a) {
    std::lock_guard<std::mutex> lock(mu_);
    writer_address_ = a;
  }
  void AddCheckpoint(const v1::CheckpointInfo& info) {
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_[{info.job(), info.step()}] = info;
  }
  std::vector<v1::BeginShardRequest> begins() {
    std::lock_guard<std::mutex> lock(mu_);
    return begins_;
  }

 private:
  std::mutex mu_;
  std::string writer_address_;
  std::vector<v1::BeginShardRequest> begins_;
  std::map<std::pair<std::string, int64_t>, v1::CheckpointInfo> checkpoints_;
  std::map<std::string, v1::RetentionPolicy> policies_;
  std::vector<v1::SetPolicyRequest> set_policies_;
  std::vector<v1::GetPolicyRequest> get_policies_;
  std::vector<v1::PinRequest> pins_;
  std::vector<v1::GcRequest> gcs_;
  v1::GcResponse gc_response_;
  std::vector<v1::AcquireLeaseRequest> acquires_;
  std::vector<std::string> releases_;
  std::vector<std::string> calls_;
  grpc::Status acquire_error_, release_error_;
  std::function<void()> on_acquire_, on_release_;
};

// One retention decision in a canned GcResponse.
void AddDecision(v1::GcResponse* response, int64_t step, bool keep,
                 const std::vector<std::string>& kept_by, const std::string& reason) {
  v1::RetentionDecision* d = response->add_decisions();
  d->set_step(step);
  d->set_keep(keep);
  for (const std::string& rule : kept_by) d->add_kept_by(rule);
  d->set_reason(reason);
}

class FakeService : public ::testing::Test {
 protected:
  void SetUp() override {
    writer_ = std::make_unique<FakeWriter>(root_.path());
    writer_server_ = Start(writer_.get(), &writer_address_);
    coordinator_.set_writer_address(writer_address_);
    coordinator_server_ = Start(&coordinator_, &coordinator_address_);
    ASSERT_TRUE(writer_server_ && coordinator_server_);
    ClientOptions options;
    options.coordinator = coordinator_address_;
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }

  void TearDown() override {
    if (coordinator_server_) coordinator_server_->Shutdown();
    if (writer_server_) writer_server_->Shutdown();
  }

  static std::unique_ptr<grpc::Server> Start(grpc::Service* service, std::string* address) {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", rpc::ServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
    builder.RegisterService(service);
    auto server = builder.BuildAndStart();
    *address = absl::StrCat("127.0.0.1:", port);
    return server;
  }

  // Registers JOB/STEP (written by the fake writer) as committed.
  v1::CheckpointInfo Commit(const std::string& job, int64_t step) {
    v1::CheckpointInfo info;
    info.set_job(job);
    info.set_step(step);
    info.set_state(v1::COMMITTED);
    info.set_num_shards(1);
    info.set_committed_at_micros(1700000000123456 + step);
    info.set_bytes(3 * 1024 * 1024 + 300 * 1024);
    (*info.mutable_metrics())["loss"] = 0.25;
    info.set_pinned(step % 2 == 0);
    info.add_kept_by("keep-last");
    info.set_prefix_uri(absl::StrCat("file://", root_.path(), "/", job, "/ckpt-", step, "/variables"));
    coordinator_.AddCheckpoint(info);
    return info;
  }

  testing::TempDir root_;
  std::unique_ptr<FakeWriter> writer_;
  FakeCoordinator coordinator_;
  std::unique_ptr<grpc::Server> writer_server_, coordinator_server_;
  std::string writer_address_, coordinator_address_;
  std::unique_ptr<Client> client_;
};

TEST_F(FakeService, SaveShardStreamsHeaderTensorsAndChunks) {
  // 9 MiB + 4 bytes: chunks of 4 MiB, 4 MiB, 1 MiB + 4.
  const std::string big = testing::PatternBytes(9 * (1 << 20) + 4, 1);
  const std::string rows = Floats(2 * 3, 7);
  std::vector<SaveTensor> tensors = {
      {"big", DataType::kUint8, {static_cast<int64_t>(big.size())}, std::nullopt, big, {}},
      {"emb", DataType::kFloat, {10, 3}, Slice("4,2:-"), rows, {}},
      {"vocab", DataType::kString, {2}, std::nullopt, "", {"hello", std::string("\0x", 2)}},
      {"empty", DataType::kFloat, {0, 4}, std::nullopt, "", {}},
  };
  SaveShardOptions options{"run-1", 42, 0, 1, {{"loss", 0.5}, {"acc", 0.9}}};
  auto result = client_->SaveShard(options, tensors);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->committed);
  EXPECT_EQ(result->num_tensors, 4);
  EXPECT_GE(result->bytes, big.size() + rows.size());

  auto begins = coordinator_.begins();
  ASSERT_EQ(begins.size(), 1u);
  EXPECT_EQ(begins[0].job(), "run-1");
  EXPECT_EQ(begins[0].step(), 42);
  EXPECT_EQ(begins[0].shard_index(), 0);
  EXPECT_EQ(begins[0].num_shards(), 1);
  EXPECT_EQ(begins[0].metrics().at("loss"), 0.5);
  EXPECT_EQ(begins[0].metrics().at("acc"), 0.9);

  auto headers = writer_->headers();
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].job(), "run-1");
  EXPECT_EQ(headers[0].step(), 42);
  EXPECT_EQ(headers[0].token(), "token-1");
  EXPECT_EQ(headers[0].staging_prefix(), "run-1/ckpt-42/variables");
  auto received = writer_->tensors();
  ASSERT_EQ(received.size(), 1u);
  ASSERT_EQ(received[0].size(), 4u);
  const auto& r_big = received[0][0];
  EXPECT_EQ(r_big.header.name(), "big");
  EXPECT_EQ(r_big.header.dtype(), static_cast<int>(DataType::kUint8));
  EXPECT_EQ(r_big.header.slice(), "");
  EXPECT_EQ(r_big.chunks, (std::vector<size_t>{rpc::kChunkBytes, rpc::kChunkBytes, (1 << 20) + 4}));
  EXPECT_TRUE(r_big.data == big);
  const auto& r_emb = received[0][1];
  EXPECT_EQ(r_emb.header.slice(), "4,2:-");
  EXPECT_EQ(std::vector<int64_t>(r_emb.header.shape().begin(), r_emb.header.shape().end()),
            (std::vector<int64_t>{10, 3}));
  EXPECT_EQ(r_emb.data, rows);
  const auto& r_vocab = received[0][2];
  EXPECT_EQ(r_vocab.header.dtype(), static_cast<int>(DataType::kString));
  ASSERT_EQ(r_vocab.header.string_values_size(), 2);
  EXPECT_EQ(r_vocab.header.string_values(1), std::string("\0x", 2));
  EXPECT_TRUE(r_vocab.chunks.empty());
  EXPECT_TRUE(received[0][3].chunks.empty());

  // And back, through the coordinator's Get.
  Commit("run-1", 42);
  RestoreRequest whole;
  whole.tensors = {"big", "vocab", "empty"};
  auto restored = client_->Restore("run-1", std::nullopt, whole);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->at("big").tensor.data.view() == big);
  EXPECT_EQ(restored->at("vocab").tensor.strings,
            (std::vector<std::string>{"hello", std::string("\0x", 2)}));
  EXPECT_EQ(restored->at("empty").tensor.shape, (std::vector<int64_t>{0, 4}));
  // Only rows 4-5 of emb were saved: that slice restores, the whole does not.
  auto all = client_->Restore("run-1", 42, {});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kFailedPrecondition) << all.status();
  EXPECT_TRUE(Contains(all.status().message(), "\"emb\"")) << all.status();
  RestoreRequest part;
  part.tensors = {"emb"};
  part.slices["emb"] = Slice("4,2:-");
  auto emb = client_->Restore("run-1", 42, part);
  ASSERT_TRUE(emb.ok()) << emb.status();
  EXPECT_EQ(emb->at("emb").tensor.data.view(), rows);
  EXPECT_EQ(client_->Restore("run-1", 41, {}).status().code(), absl::StatusCode::kNotFound);
}

// The save's progress is the tensor data as it goes out, chunk by chunk,
// from the caller's thread or (async) the background one.
TEST_F(FakeService, SaveShardReportsEveryChunkSent) {
  const std::string big = testing::PatternBytes(9 * (1 << 20) + 4, 2);
  const std::string rows = Floats(2 * 3, 7);
  std::vector<SaveTensor> tensors = {
      {"big", DataType::kUint8, {static_cast<int64_t>(big.size())}, std::nullopt, big, {}},
      {"vocab", DataType::kString, {1}, std::nullopt, "", {"not counted"}},
      {"emb", DataType::kFloat, {10, 3}, Slice("4,2:-"), rows, {}},
  };
  const uint64_t total = big.size() + rows.size();
  ProgressLog log;
  SaveShardOptions options{"progress", 1, 0, 1, {}};
  options.progress = log.Fn();
  ASSERT_TRUE(client_->SaveShard(options, tensors).ok());
  log.ExpectComplete(total);
  EXPECT_EQ(log.calls(), (std::vector<std::pair<uint64_t, uint64_t>>{
                             {0, total},
                             {rpc::kChunkBytes, total},
                             {2 * rpc::kChunkBytes, total},
                             {big.size(), total},
                             {total, total}}));

  ProgressLog async_log;
  options.step = 2;
  options.progress = async_log.Fn();
  auto handle = client_->SaveShardAsync(options, tensors);
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_TRUE((*handle)->Wait().ok());
  async_log.ExpectComplete(total);
  EXPECT_EQ(async_log.calls().size(), 5u);
}

TEST_F(FakeService, ListAndGetMapTheCatalog) {
  Commit("j", 200);
  Commit("j", 100);
  Commit("other", 5);
  auto list = client_->List("j");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].step, 100);
  EXPECT_EQ((*list)[1].step, 200);
  const CheckpointSummary& c = (*list)[0];
  EXPECT_EQ(c.job, "j");
  EXPECT_EQ(c.state, CheckpointState::kCommitted);
  EXPECT_EQ(c.num_shards, 1);
  EXPECT_EQ(c.committed_at_micros, 1700000000123456 + 100);
  EXPECT_EQ(c.metrics.at("loss"), 0.25);
  EXPECT_TRUE(c.pinned);
  EXPECT_EQ(c.kept_by, std::vector<std::string>{"keep-last"});
  EXPECT_TRUE(Contains(c.prefix_uri, "j/ckpt-100/variables"));
  auto latest = client_->Get("j", std::nullopt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step, 200);
  auto missing = client_->Get("j", 7);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->List("nobody").ok());
}

// `cairn save`, `list` and `restore --coordinator` against the fakes.
TEST_F(FakeService, CliSaveListRestore) {
  testing::TempDir dir;
  const std::string emb = Floats(4 * 3, 1);
  const std::string bias = Floats(3, 50);
  const std::string src = dir.Join("mine.safetensors");
  WriteSafetensors(src, {{"emb", DataType::kFloat, {4, 3}}, {"bias", DataType::kFloat, {3}}},
                   {{"emb", emb}, {"bias", bias}},
                   {{"cairn.slice.emb", "8 3 4,4:-"}, {"note", "hi"}});
  RunResult save = Cairn({"save", "--coordinator=" + coordinator_address_, "--job=cli", "--step=7",
                          "--from=" + src, "--metric=loss=0.125", "--metric=acc=1"});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_TRUE(Contains(save.out, "saved shard 0/1 of cli/step 7: 2 tensors")) << save.out;
  EXPECT_TRUE(Contains(save.out, "checkpoint cli/7 committed")) << save.out;
  EXPECT_TRUE(Contains(save.err, "\"note\"")) << save.err;  // metadata not kept
  auto begins = coordinator_.begins();
  ASSERT_EQ(begins.size(), 1u);
  EXPECT_EQ(begins[0].metrics().at("loss"), 0.125);
  auto received = writer_->tensors();
  ASSERT_EQ(received.size(), 1u);
  for (const auto& t : received[0]) {
    if (t.header.name() == "emb") {
      EXPECT_EQ(t.header.slice(), "4,4:-");
      EXPECT_EQ(t.header.shape_size(), 2);
      EXPECT_EQ(t.header.shape(0), 8);
      EXPECT_EQ(t.data, emb);
    } else {
      EXPECT_EQ(t.data, bias);
    }
  }

  // Shard 1 of 3 is not the last: durable, not committed.
  save = Cairn({"save", "--coordinator=" + coordinator_address_, "--job=cli", "--step=8",
                "--from=" + src, "--shard=1/3"});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_TRUE(Contains(save.out, "saved shard 1/3 of cli/step 8")) << save.out;
  EXPECT_FALSE(Contains(save.out, "committed")) << save.out;
  EXPECT_EQ(coordinator_.begins().back().shard_index(), 1);
  EXPECT_EQ(coordinator_.begins().back().num_shards(), 3);

  Commit("cli", 7);
  RunResult list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=cli", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto json = nlohmann::json::parse(list.out);
  EXPECT_EQ(json["job"], "cli");
  ASSERT_EQ(json["checkpoints"].size(), 1u);
  const auto& c = json["checkpoints"][0];
  EXPECT_EQ(c["step"], 7);
  EXPECT_EQ(c["committed_at"], "2023-11-14T22:13:20.123463Z");
  EXPECT_EQ(c["bytes"], 3 * 1024 * 1024 + 300 * 1024);
  EXPECT_EQ(c["num_shards"], 1);
  EXPECT_EQ(c["metrics"]["loss"], 0.25);
  EXPECT_EQ(c["pinned"], false);
  EXPECT_EQ(c["kept_by"], nlohmann::json({"keep-last"}));
  EXPECT_TRUE(Contains(std::string(c["prefix"]), "cli/ckpt-7/variables"));
  EXPECT_EQ(c.size(), 8u);
  list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=cli"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "2023-11-14T22:13:20Z")) << list.out;
  EXPECT_TRUE(Contains(list.out, "3.3 MiB")) << list.out;
  EXPECT_TRUE(Contains(list.out, "loss=0.25")) << list.out;
  EXPECT_TRUE(Contains(list.out, "keep-last")) << list.out;
  list = Cairn({"list", "--coordinator=" + coordinator_address_, "--job=empty", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(list.out)["checkpoints"].size(), 0u);

  // Restore the newest step; emb (of which only rows 4-7 were saved) comes
  // back as that slice, marked.
  const std::string out = dir.Join("out.safetensors");
  RunResult restore = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=cli",
                             "--to=" + out, "--slice=emb=8 3 4,4:-"});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  EXPECT_TRUE(Contains(restore.out, "cli/7")) << restore.out;
  SafetensorsHeader header;
  auto tensors = testing::ReadSafetensorsTensors(out, &header);
  EXPECT_EQ(tensors["bias"], bias);
  EXPECT_EQ(tensors["emb"], emb);
  EXPECT_EQ(header.metadata["cairn.slice.emb"], "8 3 4,4:-");
  restore = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=cli", "--step=9",
                   "--to=" + out});
  EXPECT_EQ(restore.exit_code, 1);
  EXPECT_TRUE(Contains(restore.err, "cli")) << restore.err;
}

// ----------------------------------------------------- retention and leases

// Moves a checkpoint's directory out of the way and back, so that its files
// can be read only between a lease's acquisition and its release.
class LeaseGate {
 public:
  LeaseGate(const std::string& root, const std::string& job, int64_t step)
      : there_(absl::StrCat(root, "/", job, "/ckpt-", step)),
        away_(absl::StrCat(root, "/", job, "/away-", step)) {}
  void Hide() { Move(there_, away_); }
  void Show() { Move(away_, there_); }

 private:
  static void Move(const std::string& from, const std::string& to) {
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    if (ec) ADD_FAILURE() << "rename " << from << " -> " << to << ": " << ec.message();
  }
  const std::string there_, away_;
};

grpc::Status GrpcError(grpc::StatusCode code, const std::string& msg) {
  return grpc::Status(code, msg);
}

TEST_F(FakeService, RestoreHoldsALeaseAroundTheRead) {
  const std::string w = Floats(6, 3);
  ASSERT_TRUE(client_
                  ->SaveShard({"lease-job", 42, 0, 1, {}},
                              {{"w", DataType::kFloat, {2, 3}, std::nullopt, w, {}}})
                  .ok());
  Commit("lease-job", 7);
  Commit("lease-job", 42);
  // The files exist only while a lease is held: a read outside the lease fails.
  LeaseGate gate(root_.path(), "lease-job", 42);
  gate.Hide();
  coordinator_.set_lease_hooks([&gate] { gate.Show(); }, [&gate] { gate.Hide(); });
  coordinator_.clear_calls();
  auto restored = client_->Restore("lease-job", std::nullopt, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w").tensor.data.view(), w);
  // The newest step is resolved first, then that step is leased.
  EXPECT_EQ(coordinator_.calls(),
            (std::vector<std::string>{"Get(latest)", "AcquireLease(42)", "ReleaseLease(lease-1)"}));
  auto acquires = coordinator_.acquires();
  ASSERT_EQ(acquires.size(), 1u);
  EXPECT_EQ(acquires[0].job(), "lease-job");
  EXPECT_EQ(acquires[0].step(), 42);
  EXPECT_EQ(acquires[0].ttl_ms(), 60 * 60 * 1000);

  // A failed read releases its lease too.
  RestoreRequest missing;
  missing.tensors = {"nope"};
  auto r = client_->Restore("lease-job", 42, missing);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "\"nope\"")) << r.status();
  EXPECT_EQ(coordinator_.releases(), (std::vector<std::string>{"lease-1", "lease-2"}));

  // A failed release does not fail the restore: the lease expires by itself.
  coordinator_.set_release_error(GrpcError(grpc::StatusCode::INTERNAL, "catalog hiccup"));
  restored = client_->Restore("lease-job", 42, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(coordinator_.releases().size(), 3u);
  coordinator_.set_release_error(grpc::Status::OK);
  coordinator_.set_lease_hooks(nullptr, nullptr);  // the files stay where they are now

  // The checkpoint went between Get and AcquireLease: NotFound, nothing read
  // or released.
  coordinator_.set_acquire_error(
      GrpcError(grpc::StatusCode::NOT_FOUND, "checkpoint lease-job/42 was deleted by retention"));
  coordinator_.clear_calls();
  r = client_->Restore("lease-job", 42, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "lease-job/42")) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), coordinator_address_)) << r.status();
  EXPECT_EQ(coordinator_.calls(), (std::vector<std::string>{"Get(42)", "AcquireLease(42)"}));
  // Any other refusal fails the restore as well.
  coordinator_.set_acquire_error(
      GrpcError(grpc::StatusCode::FAILED_PRECONDITION, "checkpoint lease-job/42 is being deleted"));
  r = client_->Restore("lease-job", 42, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  // A coordinator that predates leases (and retention) answers UNIMPLEMENTED:
  // the restore goes ahead without a lease.
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::UNIMPLEMENTED, ""));
  coordinator_.clear_calls();
  restored = client_->Restore("lease-job", 42, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(coordinator_.calls(), (std::vector<std::string>{"Get(42)", "AcquireLease(42)"}));
}

TEST_F(FakeService, CliRestoreHoldsALease) {
  testing::TempDir dir;
  const std::string w = Floats(4, 9);
  ASSERT_TRUE(client_
                  ->SaveShard({"lease-job", 42, 0, 1, {}},
                              {{"w", DataType::kFloat, {4}, std::nullopt, w, {}}})
                  .ok());
  Commit("lease-job", 42);
  LeaseGate gate(root_.path(), "lease-job", 42);
  gate.Hide();
  coordinator_.set_lease_hooks([&gate] { gate.Show(); }, [&gate] { gate.Hide(); });
  coordinator_.clear_calls();
  const std::string out = dir.Join("out.safetensors");
  RunResult r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job",
                       "--to=" + out, "--slice=w=4 1,2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadSafetensorsTensors(out)["w"], w.substr(4, 8));
  EXPECT_EQ(coordinator_.calls(),
            (std::vector<std::string>{"Get(latest)", "AcquireLease(42)", "ReleaseLease(lease-1)"}));
  ASSERT_EQ(coordinator_.acquires().size(), 1u);
  EXPECT_EQ(coordinator_.acquires()[0].ttl_ms(), 60 * 60 * 1000);
  // A failed restore (bad --slice shape, found in the index) releases too.
  r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job",
             "--to=" + out, "--slice=w=5 1,2"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(coordinator_.releases(), (std::vector<std::string>{"lease-1", "lease-2"}));
  // The checkpoint is gone by the time of the lease: exit 1 naming it.
  coordinator_.set_lease_hooks(nullptr, nullptr);
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::NOT_FOUND, "deleted by retention"));
  r = Cairn({"restore", "--coordinator=" + coordinator_address_, "--job=lease-job", "--step=42",
             "--to=" + out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "lease-job/42")) << r.err;
  EXPECT_EQ(coordinator_.releases().size(), 2u);
}

TEST_F(FakeService, RetentionCallsMapToRequests) {
  RetentionPolicy policy;
  policy.keep_last = 3;
  policy.keep_every_steps = 1000;
  policy.keep_every_hours = 0.5;
  policy.keep_best = 2;
  policy.metric = "loss";
  policy.maximize = true;
  ASSERT_TRUE(client_->SetPolicy("j", policy).ok());
  auto sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].job(), "j");
  EXPECT_EQ(sets[0].policy().keep_last(), 3);
  EXPECT_EQ(sets[0].policy().keep_every_steps(), 1000);
  EXPECT_EQ(sets[0].policy().keep_every_hours(), 0.5);
  EXPECT_EQ(sets[0].policy().keep_best(), 2);
  EXPECT_EQ(sets[0].policy().metric(), "loss");
  EXPECT_TRUE(sets[0].policy().maximize());
  auto got = client_->GetPolicy("j");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->keep_last, 3);
  EXPECT_EQ(got->keep_every_steps, 1000);
  EXPECT_EQ(got->keep_every_hours, 0.5);
  EXPECT_EQ(got->keep_best, 2);
  EXPECT_EQ(got->metric, "loss");
  EXPECT_TRUE(got->maximize);
  auto none = client_->GetPolicy("other");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->keep_last + none->keep_every_steps + none->keep_best, 0);
  EXPECT_EQ(none->keep_every_hours, 0);
  EXPECT_TRUE(none->metric.empty());
  EXPECT_EQ(coordinator_.get_policies().size(), 2u);

  Commit("j", 100);
  ASSERT_TRUE(client_->Pin("j", 100, true).ok());
  ASSERT_TRUE(client_->Pin("j", 100, false).ok());
  auto pins = coordinator_.pins();
  ASSERT_EQ(pins.size(), 2u);
  EXPECT_EQ(pins[0].job(), "j");
  EXPECT_EQ(pins[0].step(), 100);
  EXPECT_TRUE(pins[0].pinned());
  EXPECT_FALSE(pins[1].pinned());
  absl::Status pin = client_->Pin("j", 9, true);
  EXPECT_EQ(pin.code(), absl::StatusCode::kNotFound) << pin;
  EXPECT_TRUE(Contains(pin.message(), "pinning j/9")) << pin;
  EXPECT_TRUE(Contains(pin.message(), "coordinator " + coordinator_address_)) << pin;

  // Gc: decisions come back ascending by step, whatever the wire order.
  v1::GcResponse canned;
  AddDecision(&canned, 200, true, {"newest"}, "kept by newest");
  AddDecision(&canned, 50, false, {}, "no rule keeps it");
  AddDecision(&canned, 100, true, {"keep-last", "pinned"}, "kept by keep-last, pinned");
  canned.set_deleted(1);
  coordinator_.set_gc_response(canned);
  auto gc = client_->Gc("j", false);
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->deleted, 1);
  ASSERT_EQ(gc->decisions.size(), 3u);
  EXPECT_EQ(gc->decisions[0].step, 50);
  EXPECT_FALSE(gc->decisions[0].keep);
  EXPECT_TRUE(gc->decisions[0].kept_by.empty());
  EXPECT_EQ(gc->decisions[0].reason, "no rule keeps it");
  EXPECT_EQ(gc->decisions[1].step, 100);
  EXPECT_TRUE(gc->decisions[1].keep);
  EXPECT_EQ(gc->decisions[1].kept_by, (std::vector<std::string>{"keep-last", "pinned"}));
  EXPECT_EQ(gc->decisions[2].step, 200);
  gc = client_->Gc("j", true);
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->deleted, 0);
  auto gcs = coordinator_.gcs();
  ASSERT_EQ(gcs.size(), 2u);
  EXPECT_EQ(gcs[0].job(), "j");
  EXPECT_FALSE(gcs[0].dry_run());
  EXPECT_TRUE(gcs[1].dry_run());

  auto lease = client_->AcquireLease("j", 100, 5000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(*lease, "lease-1");
  EXPECT_EQ(coordinator_.acquires()[0].ttl_ms(), 5000);
  EXPECT_TRUE(client_->ReleaseLease(*lease).ok());
  EXPECT_EQ(coordinator_.releases(), std::vector<std::string>{"lease-1"});
  lease = client_->AcquireLease("j", 9, 5000);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kNotFound) << lease.status();
  EXPECT_TRUE(Contains(lease.status().message(), "j/9")) << lease.status();
  // A coordinator without the call: UNIMPLEMENTED, said plainly.
  coordinator_.set_acquire_error(GrpcError(grpc::StatusCode::UNIMPLEMENTED, ""));
  lease = client_->AcquireLease("j", 100, 5000);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kUnimplemented) << lease.status();
  EXPECT_TRUE(Contains(lease.status().message(), "leasing j/100: coordinator " +
                                                     coordinator_address_ +
                                                     ": does not support this call"))
      << lease.status();
}

TEST_F(FakeService, CliPolicyFlagsMapToTheRequest) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  RunResult r = Cairn({"policy", coord, "--job=j", "--keep-last=3", "--keep-every-steps=1000",
                       "--keep-every-hours=0.5", "--keep-best=2", "--metric=loss", "--mode=max"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "retention policy of job j: keep-last=3 keep-every-steps=1000 keep-every-hours=0.5 "
            "keep-best=2(loss,max)\n");
  auto sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].job(), "j");
  EXPECT_EQ(sets[0].policy().keep_last(), 3);
  EXPECT_EQ(sets[0].policy().keep_every_steps(), 1000);
  EXPECT_EQ(sets[0].policy().keep_every_hours(), 0.5);
  EXPECT_EQ(sets[0].policy().keep_best(), 2);
  EXPECT_EQ(sets[0].policy().metric(), "loss");
  EXPECT_TRUE(sets[0].policy().maximize());

  // Only the rules given; --mode defaults to min; the new policy replaces the old.
  r = Cairn({"policy", coord, "--job=j", "--keep-best=1", "--metric=acc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: keep-best=1(acc,min)\n");
  sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].policy().keep_last(), 0);
  EXPECT_EQ(sets[1].policy().keep_every_steps(), 0);
  EXPECT_EQ(sets[1].policy().keep_every_hours(), 0);
  EXPECT_EQ(sets[1].policy().keep_best(), 1);
  EXPECT_EQ(sets[1].policy().metric(), "acc");
  EXPECT_FALSE(sets[1].policy().maximize());

  // No rule flags: the policy is cleared (keep everything).
  r = Cairn({"policy", coord, "--job=j"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: none (keep everything)\n");
  sets = coordinator_.set_policies();
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[2].policy().SerializeAsString(), "");  // every field at its default

  // --show reads the policy without setting one.
  ASSERT_EQ(Cairn({"policy", coord, "--job=j", "--keep-last=5", "--keep-every-hours=24"}).exit_code,
            0);
  r = Cairn({"policy", coord, "--job=j", "--show"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job j: keep-last=5 keep-every-hours=24\n");
  EXPECT_EQ(coordinator_.set_policies().size(), 4u);
  ASSERT_EQ(coordinator_.get_policies().size(), 1u);
  EXPECT_EQ(coordinator_.get_policies()[0].job(), "j");
  r = Cairn({"policy", coord, "--job=fresh", "--show"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "retention policy of job fresh: none (keep everything)\n");

  // Usage errors: exit 2, nothing sent.
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--keep-best=2"},
           {"--metric=loss"},
           {"--keep-best=0", "--metric=loss"},
           {"--mode=max"},
           {"--keep-best=1", "--metric=loss", "--mode=median"},
           {"--keep-best=1", "--metric="},
           {"--keep-best=1", "--metric"},
           {"--keep-best=-1", "--metric=loss"},
           {"--keep-last=-1"},
           {"--keep-last=x"},
           {"--keep-last"},
           {"--keep-every-steps=-2"},
           {"--keep-every-hours=-1"},
           {"--keep-every-hours=nan"},
           {"--keep-every-hours=inf"},
           {"--keep-every-hours=abc"},
           {"--show", "--keep-last=1"},
           {"--keep-latest=1"},
           {"extra"}}) {
    std::vector<std::string> args = {"policy", coord, "--job=j"};
    args.insert(args.end(), bad.begin(), bad.end());
    r = Cairn(args);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << ": " << r.err;
    EXPECT_FALSE(r.err.empty()) << bad[0];
  }
  r = Cairn({"policy", coord, "--job=j", "--keep-best=2"});
  EXPECT_TRUE(Contains(r.err, "job j") && Contains(r.err, "--metric")) << r.err;
  EXPECT_EQ(Cairn({"policy", coord, "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"policy", coord, "--job=.x", "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"policy", "--job=j", "--keep-last=1"}).exit_code, 2);
  EXPECT_EQ(coordinator_.set_policies().size(), 4u);
  EXPECT_EQ(coordinator_.get_policies().size(), 2u);
  EXPECT_EQ(Cairn({"policy", "--help"}).exit_code, 0);

  // The coordinator cannot be reached: exit 1 naming it and the job.
  r = Cairn({"policy", "--coordinator=127.0.0.1:1", "--job=j", "--keep-last=1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "job j")) << r.err;
}

TEST_F(FakeService, CliPinUnpin) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  Commit("j", 100);
  RunResult r = Cairn({"pin", coord, "--job=j", "--step=100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pinned j/100\n");
  r = Cairn({"unpin", coord, "--job=j", "--step=100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "unpinned j/100\n");
  auto pins = coordinator_.pins();
  ASSERT_EQ(pins.size(), 2u);
  EXPECT_EQ(pins[0].job(), "j");
  EXPECT_EQ(pins[0].step(), 100);
  EXPECT_TRUE(pins[0].pinned());
  EXPECT_EQ(pins[1].step(), 100);
  EXPECT_FALSE(pins[1].pinned());
  auto list = client_->List("j");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_FALSE(list->at(0).pinned);

  // No such checkpoint: exit 1 naming job and step.
  r = Cairn({"pin", coord, "--job=j", "--step=9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "j/9")) << r.err;
  r = Cairn({"unpin", coord, "--job=j", "--step=9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "unpinning j/9")) << r.err;
  const size_t sent = coordinator_.pins().size();

  for (const std::string command : {"pin", "unpin"}) {
    EXPECT_EQ(Cairn({command, coord, "--job=j"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=-1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=abc"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=a/b", "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, "--job=j", "--step=1"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=1", "extra"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, coord, "--job=j", "--step=1", "--dry-run"}).exit_code, 2);
    EXPECT_EQ(Cairn({command, "--help"}).exit_code, 0);
  }
  EXPECT_EQ(coordinator_.pins().size(), sent);
  r = Cairn({"pin", "--coordinator=127.0.0.1:1", "--job=j", "--step=1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "j/1")) << r.err;
}

TEST_F(FakeService, CliGcTextAndJson) {
  const std::string coord = "--coordinator=" + coordinator_address_;
  v1::GcResponse canned;
  AddDecision(&canned, 200, true, {"newest"}, "kept by newest");
  AddDecision(&canned, 50, false, {}, "no rule keeps it (policy: keep-last=1)");
  AddDecision(&canned, 100, true, {"keep-last", "pinned"}, "kept by keep-last, pinned");
  canned.set_deleted(1);
  coordinator_.set_gc_response(canned);

  RunResult r = Cairn({"gc", coord, "--job=j"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "STEP  ACTION  WHY\n"
            "  50  delete  no rule keeps it (policy: keep-last=1)\n"
            " 100  keep    kept by keep-last, pinned\n"
            " 200  keep    kept by newest\n"
            "job j: deleted 1 of 3 checkpoints, kept 2\n");
  r = Cairn({"gc", coord, "--job=j", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "STEP  ACTION        WHY\n"
            "  50  would delete  no rule keeps it (policy: keep-last=1)\n"
            " 100  keep          kept by keep-last, pinned\n"
            " 200  keep          kept by newest\n"
            "job j (dry run): would delete 1 of 3 checkpoints, keep 2\n");
  auto gcs = coordinator_.gcs();
  ASSERT_EQ(gcs.size(), 2u);
  EXPECT_EQ(gcs[0].job(), "j");
  EXPECT_FALSE(gcs[0].dry_run());
  EXPECT_TRUE(gcs[1].dry_run());

  r = Cairn({"gc", coord, "--job=j", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json.size(), 4u);
  EXPECT_EQ(json["job"], "j");
  EXPECT_EQ(json["dry_run"], false);
  EXPECT_EQ(json["deleted"], 1);
  ASSERT_EQ(json["decisions"].size(), 3u);
  EXPECT_EQ(json["decisions"][0], nlohmann::json({{"step", 50},
                                                  {"keep", false},
                                                  {"kept_by", nlohmann::json::array()},
                                                  {"reason", "no rule keeps it (policy: keep-last=1)"}}));
  EXPECT_EQ(json["decisions"][1], nlohmann::json({{"step", 100},
                                                  {"keep", true},
                                                  {"kept_by", {"keep-last", "pinned"}},
                                                  {"reason", "kept by keep-last, pinned"}}));
  EXPECT_EQ(json["decisions"][2]["step"], 200);
  // A dry run's "deleted" counts what would be deleted.
  r = Cairn({"gc", coord, "--job=j", "--dry-run", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["dry_run"], true);
  EXPECT_EQ(json["deleted"], 1);
  EXPECT_EQ(json["decisions"].size(), 3u);
  EXPECT_EQ(coordinator_.gcs().size(), 4u);

  // A job without checkpoints.
  coordinator_.set_gc_response({});
  r = Cairn({"gc", coord, "--job=empty"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "job empty: deleted 0 of 0 checkpoints, kept 0\n");
  r = Cairn({"gc", coord, "--job=empty", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["decisions"], nlohmann::json::array());

  EXPECT_EQ(Cairn({"gc", coord}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j", "extra"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", coord, "--job=j", "--step=1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"gc", "--help"}).exit_code, 0);
  EXPECT_EQ(coordinator_.gcs().size(), 6u);
  r = Cairn({"gc", "--coordinator=127.0.0.1:1", "--job=j", "--dry-run"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1") && Contains(r.err, "job j")) << r.err;

  RunResult help = Cairn({"--help"});
  EXPECT_TRUE(Contains(help.out, "policy") && Contains(help.out, "pin") &&
              Contains(help.out, "unpin") && Contains(help.out, "gc"))
      << help.out;
}

// ------------------------------------------------------- CLI restore --from

TEST(CliRestore, FromPrefixToSafetensors) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string out = dir.Join("all.safetensors");
  RunResult r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "restored 6 tensors")) << r.out;
  EXPECT_TRUE(Contains(r.err, "\"names\"")) << r.err;  // strings skipped, with a warning
  SafetensorsHeader header;
  auto tensors = testing::ReadSafetensorsTensors(out, &header);
  EXPECT_EQ(tensors.size(), 6u);
  EXPECT_EQ(tensors["emb"], ckpt.emb());  // reassembled from 4 data files
  EXPECT_EQ(tensors["w_3"], ckpt.w(3));
  EXPECT_TRUE(header.metadata.empty());
  EXPECT_EQ(Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out, "--strict"}).exit_code, 1);

  // A slice and a subset; the slice is marked in the metadata.
  const std::string part = dir.Join("part.safetensors");
  r = Cairn({"restore", "--from=" + ckpt.uri(), "--to=" + part, "--tensor=w_1",
             "--slice=emb=100 6 20,40:2,2", "--threads=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  tensors = testing::ReadSafetensorsTensors(part, &header);
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors["w_1"], ckpt.w(1));
  EXPECT_EQ(tensors["emb"], SubMatrix(ckpt.emb(), 6, 20, 40, 2, 2));
  EXPECT_EQ(header.metadata["cairn.slice.emb"], "100 6 20,40:2,2");
  for (const auto& t : header.tensors) {
    if (t.name == "emb") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{40, 2}));
    }
  }
  // The restored slice converts back into a bundle holding it as a slice.
  r = Cairn({"convert", part, dir.Join("conv/variables")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliRestore, FromPrefixToPrefix) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string out = dir.Join("copy/variables");
  RunResult r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out,
                       "--slice=emb=100 6 50,50:-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "restored 7 tensors")) << r.out;
  auto storage = OpenStorage(dir.path(), {});
  ASSERT_TRUE(storage.ok());
  auto reader = BundleReader::Open(storage->get(), "copy/variables");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->num_shards(), 1);
  auto names = (*reader)->ReadTensor("names");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(names->strings, (std::vector<std::string>{"alpha", "", "gamma"}));
  auto emb = (*reader)->Lookup("emb");
  ASSERT_TRUE(emb.ok());
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{100, 6}));
  ASSERT_EQ(emb->slices.size(), 1u);
  EXPECT_EQ(emb->slices[0].ToString(), "50,50:-");
  auto rows = (*reader)->ReadSlice("emb", Slice("50,50:-"));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->data.view(), SubMatrix(ckpt.emb(), 6, 50, 50, 0, 6));
  EXPECT_EQ((*reader)->ReadTensor("w_0")->data.view(), ckpt.w(0));
  EXPECT_EQ(Cairn({"verify", out}).exit_code, 0);

  // Whole, then restored again from the copy: identical tensors.
  r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + dir.Join("whole/variables")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto again = RestoreFromPrefix(dir.Join("whole/variables"), {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->size(), 7u);
  EXPECT_EQ(again->at("emb").tensor.data.view(), ckpt.emb());
}

TEST(CliRestore, ErrorsAndUsage) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string to = "--to=" + dir.Join("x.safetensors");
  const std::string from = "--from=" + ckpt.prefix();
  // Wrong full shape in --slice: exit 1 naming the tensor and both shapes.
  RunResult r = Cairn({"restore", from, to, "--slice=emb=100 7 0,10:-"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"emb\"") && Contains(r.err, "[100,6]") && Contains(r.err, "[100,7]"))
      << r.err;
  r = Cairn({"restore", from, to, "--tensor=nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"nope\"")) << r.err;
  r = Cairn({"restore", from, to, "--slice=ghost=4 0,2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"ghost\"")) << r.err;
  r = Cairn({"restore", "--from=" + dir.Join("none/variables"), to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "none/variables")) << r.err;
  // Usage errors.
  EXPECT_EQ(Cairn({"restore", from, to, "--coordinator=127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6 0,200:-"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6 0,1:-", "--slice=emb=100 6 1,1:-"})
                .exit_code,
            2);
  EXPECT_EQ(Cairn({"restore", "--coordinator=127.0.0.1:1", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", "--coordinator=127.0.0.1:1", "--job=.x", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", "--help"}).exit_code, 0);
  // Unreachable coordinator: the operation fails, naming it.
  r = Cairn({"restore", "--coordinator=127.0.0.1:1", "--job=j", to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
}

TEST(CliSaveList, UsageErrors) {
  testing::TempDir dir;
  const std::string src = dir.Join("in.safetensors");
  WriteSafetensors(src, {{"w", DataType::kFloat, {2}}}, {{"w", Floats(2, 0)}}, {});
  const std::vector<std::string> base = {"save", "--coordinator=127.0.0.1:1", "--job=j",
                                         "--step=1", "--from=" + src};
  auto with = [&](std::vector<std::string> extra, size_t drop = SIZE_MAX) {
    std::vector<std::string> args;
    for (size_t i = 0; i < base.size(); ++i) {
      if (i != drop) args.push_back(base[i]);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Cairn(args).exit_code;
  };
  for (size_t drop = 1; drop < base.size(); ++drop) EXPECT_EQ(with({}, drop), 2) << base[drop];
  EXPECT_EQ(with({"--shard=4/4"}), 2);
  EXPECT_EQ(with({"--shard=1"}), 2);
  EXPECT_EQ(with({"--shard=-1/4"}), 2);
  EXPECT_EQ(with({"--shard=0/0"}), 2);
  EXPECT_EQ(with({"--metric=loss"}), 2);
  EXPECT_EQ(with({"--metric==1"}), 2);
  EXPECT_EQ(with({"--metric=loss=abc"}), 2);
  EXPECT_EQ(with({"--metric=loss=1", "--metric=loss=2"}), 2);
  EXPECT_EQ(Cairn({"save", "--coordinator=a:1", "--job=a b", "--step=1", "--from=" + src}).exit_code,
            2);
  EXPECT_EQ(Cairn({"save", "--coordinator=a:1", "--job=j", "--step=-1", "--from=" + src}).exit_code,
            2);
  EXPECT_EQ(Cairn({"save", "--help"}).exit_code, 0);
  // Valid flags: fails (exit 1) at the unreachable coordinator, or at a bad file.
  RunResult r = Cairn(base);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
  r = Cairn({"save", "--coordinator=127.0.0.1:1", "--job=j", "--step=1",
             "--from=" + dir.Join("missing.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "missing.safetensors")) << r.err;
  testing::WriteFile(dir.Join("bad.safetensors"), "short");
  r = Cairn({"save", "--coordinator=127.0.0.1:1", "--job=j", "--step=1",
             "--from=" + dir.Join("bad.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "bad.safetensors")) << r.err;

  EXPECT_EQ(Cairn({"list", "--coordinator=127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"list", "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"list", "--coordinator=127.0.0.1:1", "--job=j", "extra"}).exit_code, 2);
  r = Cairn({"list", "--coordinator=127.0.0.1:1", "--job=j"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
  RunResult help = Cairn({"--help"});
  EXPECT_TRUE(Contains(help.out, "save") && Contains(help.out, "restore") &&
              Contains(help.out, "list"));
}

// ShardStream frames each data chunk itself; the writer parses it with the
// generated code, so the framing must be protobuf's own.
TEST(ShardStream, DataFramingIsTheProtobufWireForm) {
  for (size_t n : {size_t{1}, size_t{127}, size_t{128}, size_t{300}, size_t{16383}, size_t{16384},
                   size_t{4} << 20, (size_t{4} << 20) + 1}) {
    v1::SaveShardMessage m;
    m.set_data(std::string(n, 'x'));
    EXPECT_EQ(internal::DataFieldFraming(n) + std::string(n, 'x'), m.SerializeAsString()) << n;
  }
}

}  // namespace
}  // namespace cairn
