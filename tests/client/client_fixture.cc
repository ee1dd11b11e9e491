#include "tests/client/client_fixture.h"

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"

namespace cairn {
namespace client_test {

std::string Floats(int64_t n, float start) {
  std::string out(static_cast<size_t>(n) * 4, '\0');
  for (int64_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(&out[static_cast<size_t>(i) * 4], &v, 4);
  }
  return out;
}

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

testing::RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), testing::BinPath("cairn"));
  return testing::Run(args);
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

FourPartCheckpoint::FourPartCheckpoint() {
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

bool FourPartCheckpoint::FlipFirstByteOf(const std::string& name) {
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

ProgressFn ProgressLog::Fn() {
  return [this](uint64_t done, uint64_t total) {
    if (inside_.fetch_add(1) != 0) overlapped_ = true;
    calls_.emplace_back(done, total);
    std::this_thread::yield();
    inside_.fetch_sub(1);
  };
}

void ProgressLog::ExpectComplete(uint64_t total) const {
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

}  // namespace client_test
}  // namespace cairn
