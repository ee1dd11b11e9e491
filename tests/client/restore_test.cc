// RestoreFromPrefix (client/client.h) on a merged four-part checkpoint:
// whole tensors, subsets, slices re-cut across parts, caller memory, and
// the errors.
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/client/client_fixture.h"

namespace cairn {
namespace client_test {
namespace {

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

TEST(RestoreFromPrefix, IntoShapesAndDtypesAreCheckedWithTheSizes) {
  FourPartCheckpoint ckpt;
  // emb is float [100, 6]; ask for rows 20-29 into [10, 6] floats.
  std::string rows(10 * 6 * 4, 'x');
  std::string w0(ckpt.w(0).size(), 'x');
  RestoreRequest request;
  request.tensors = {"emb", "w_0"};
  request.slices["emb"] = Slice("20,10:-");
  request.into["emb"] = absl::MakeSpan(rows);
  request.into["w_0"] = absl::MakeSpan(w0);
  request.into_shapes["emb"] = {6, 10};  // the same bytes, transposed
  auto r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "\"emb\"")) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "[10,6]")) << r.status();
  EXPECT_EQ(w0, std::string(w0.size(), 'x')) << "written before every shape was checked";

  request.into_shapes["emb"] = {10, 6};
  request.into_dtypes["emb"] = {DataType::kInt32, DataType::kUint32};  // 4 bytes, not float
  r = RestoreFromPrefix(ckpt.prefix(), request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "int32 or uint32")) << r.status();
  EXPECT_EQ(rows, std::string(rows.size(), 'x'));

  request.into_dtypes["emb"] = {DataType::kInt32, DataType::kFloat};  // any of them
  r = RestoreFromPrefix(ckpt.prefix(), request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(rows, SubMatrix(ckpt.emb(), 6, 20, 10, 0, 6));
}

TEST(RestoreFromPrefix, CorruptDataIsDataLossNamingTheTensor) {
  FourPartCheckpoint ckpt;
  ASSERT_TRUE(ckpt.FlipFirstByteOf("w_2"));
  auto r = RestoreFromPrefix(ckpt.prefix(), {}, 4);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(r.status().message(), "w_2")) << r.status();
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
