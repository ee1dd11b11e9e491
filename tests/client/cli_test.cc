// End-to-end tests of `cairn inspect | verify | convert`, run as real
// processes, checked against real TensorFlow checkpoints and against the
// independent Python implementation ../shared/tools/tfbundle.py.
#include <openssl/sha.h>

#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "storage/storage.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Run;
using testing::RunResult;
using testing::SharedDir;
using testing::WriteSafetensors;

#define SKIP_WITHOUT_SHARED()                                                  \
  if (SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared/testdata/tf not found; " \
                                           "these tests need the shared test material"

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return Run(args);
}

RunResult TfBundle(std::vector<std::string> args) {
  args.insert(args.begin(), SharedDir() + "/tools/tfbundle.py");
  args.insert(args.begin(), "/usr/bin/python3");
  return Run(args);
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(Cairn({}).exit_code, 2);
  EXPECT_EQ(Cairn({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Cairn({"inspect"}).exit_code, 2);
  EXPECT_EQ(Cairn({"inspect", "a", "--bogus"}).exit_code, 2);
  EXPECT_EQ(Cairn({"convert", "a", "b"}).exit_code, 2);
  EXPECT_EQ(Cairn({"convert", "a.safetensors", "b", "--shards=0"}).exit_code, 2);
  RunResult help = Cairn({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("inspect"), std::string::npos);
  EXPECT_EQ(Cairn({"verify", "--help"}).exit_code, 0);
}

// Every executable says which Cairn it is (there was no --version).
TEST(Cli, EveryExecutableHasVersion) {
  for (const char* program : {"cairn", "cairn-coordinator", "cairn-writer"}) {
    RunResult r = cairn::testing::Run({cairn::testing::BinPath(program), "--version"});
    EXPECT_EQ(r.exit_code, 0) << program << ": " << r.err;
    EXPECT_TRUE(std::regex_match(r.out, std::regex(std::string(program) + " [0-9]+\\.[0-9]+\\.[0-9]+\n")))
        << program << " printed \"" << r.out << "\"";
  }
}

TEST(Cli, MissingCheckpointFailsWithExitOne) {
  testing::TempDir dir;
  RunResult r = Cairn({"inspect", dir.Join("nothing/here")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nothing/here"), std::string::npos) << r.err;
}

TEST(Cli, InspectAndVerifyEveryRealCheckpoint) {
  SKIP_WITHOUT_SHARED();
  for (const auto& v : testing::TfVectors()) {
    SCOPED_TRACE(v.name);
    RunResult inspect = Cairn({"inspect", v.prefix, "--json"});
    ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
    auto json = nlohmann::json::parse(inspect.out);
    ASSERT_TRUE(json["tensors"].is_array());
    // Cross-check with the independent reader: same names, dtypes, shapes.
    RunResult sha = TfBundle({"sha", v.prefix});
    ASSERT_EQ(sha.exit_code, 0) << sha.err;
    auto expected = nlohmann::json::parse(sha.out);
    EXPECT_EQ(json["tensors"].size(), expected.size());
    for (const auto& t : json["tensors"]) {
      const std::string name = t["name"];
      ASSERT_TRUE(expected.contains(name)) << name;
      EXPECT_EQ(t["dtype"], expected[name]["dtype"]) << name;
      EXPECT_EQ(t["shape"], expected[name]["shape"]) << name;
    }
    RunResult verify = Cairn({"verify", v.prefix});
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
    EXPECT_NE(verify.out.find("OK"), std::string::npos);
  }
}

TEST(Cli, InspectJsonShowsTheContractFields) {
  SKIP_WITHOUT_SHARED();
  RunResult r = Cairn({"inspect", SharedDir() + "/testdata/tf/tfx_estimator_tf1_ckpt/model.ckpt-1000",
                       "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["num_shards"], 1);
  bool found = false;
  for (const auto& t : json["tensors"]) {
    if (t["name"] == "global_step") {
      found = true;
      EXPECT_EQ(t["dtype"], "int64");
      EXPECT_EQ(t["shape"], nlohmann::json::array());
      EXPECT_EQ(t["size"], 8);
      EXPECT_TRUE(t.contains("offset") && t.contains("crc32c") && t.contains("shard"));
      EXPECT_TRUE(t["slices"].empty());
    }
  }
  EXPECT_TRUE(found);
}

// Every real checkpoint converts to safetensors with exactly the values the
// independent reader sees (compared by SHA-256 of each tensor's bytes).
TEST(Cli, ConvertEveryRealCheckpointToSafetensorsExactly) {
  SKIP_WITHOUT_SHARED();
  testing::TempDir dir;
  int converted = 0;
  for (const auto& v : testing::TfVectors()) {
    SCOPED_TRACE(v.name);
    const std::string out = dir.Join(absl::StrCat("v", converted, ".safetensors"));
    RunResult r = Cairn({"convert", v.prefix, out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto expected = nlohmann::json::parse(TfBundle({"sha", v.prefix}).out);
    auto tensors = testing::ReadSafetensorsTensors(out);
    size_t numeric = 0;
    for (auto it = expected.begin(); it != expected.end(); ++it) {
      if (it.value()["dtype"] == "string") {
        EXPECT_NE(r.err.find(it.key()), std::string::npos) << "no warning for " << it.key();
        continue;
      }
      ++numeric;
      ASSERT_TRUE(tensors.count(it.key())) << it.key();
      EXPECT_EQ(Sha256Hex(tensors[it.key()]), it.value()["sha256"]) << it.key();
    }
    EXPECT_EQ(tensors.size(), numeric);
    ++converted;
    // --strict refuses to drop the string tensors.
    if (numeric != expected.size()) {
      EXPECT_EQ(Cairn({"convert", v.prefix, out, "--strict"}).exit_code, 1);
    }
  }
  // half_plus_two: a=0.5, b=2, c=3 (SOURCES.md).
  const std::string hp = dir.Join("hp.safetensors");
  ASSERT_EQ(Cairn({"convert", SharedDir() + "/testdata/tf/serving_saved_model_half_plus_two_gpu/variables", hp}).exit_code, 0);
  auto t = testing::ReadSafetensorsTensors(hp);
  float a, b, c;
  std::memcpy(&a, t["a"].data(), 4);
  std::memcpy(&b, t["b"].data(), 4);
  std::memcpy(&c, t["c"].data(), 4);
  EXPECT_EQ(a, 0.5f);
  EXPECT_EQ(b, 2.0f);
  EXPECT_EQ(c, 3.0f);
}

TEST(Cli, SafetensorsToThreeShardBundleAndBackIsIdentical) {
  SKIP_WITHOUT_SHARED();
  testing::TempDir dir;
  std::vector<SafetensorsTensor> infos = {
      {"w_bf16", DataType::kBfloat16, {3, 5}}, {"w_f16", DataType::kHalf, {7}},
      {"mask", DataType::kBool, {4}},          {"ids", DataType::kUint64, {2, 2}},
      {"nothing", DataType::kFloat, {0, 3}},   {"scalar", DataType::kDouble, {}},
      {"emb", DataType::kFloat, {250, 4}},     {"i8", DataType::kInt8, {5}},
  };
  std::map<std::string, std::string> data;
  uint32_t seed = 1;
  for (const auto& info : infos) {
    int64_t n = 1;
    for (int64_t d : info.shape) n *= d;
    std::string bytes(static_cast<size_t>(n) * DataTypeSize(info.dtype), '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 31 + seed) & 0xff);
    if (info.dtype == DataType::kBool) {
      for (char& ch : bytes) ch &= 1;
    }
    data[info.name] = bytes;
    ++seed;
  }
  const std::string src = dir.Join("in.safetensors");
  WriteSafetensors(src, infos, data, {});

  const std::string prefix = dir.Join("bundle/variables");
  RunResult conv = Cairn({"convert", src, prefix, "--shards=3"});
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  for (int s = 0; s < 3; ++s) {
    EXPECT_TRUE(std::ifstream(absl::StrCat(prefix, ".data-0000", s, "-of-00003")).good());
  }
  RunResult check = TfBundle({"check", prefix});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;

  RunResult inspect = Cairn({"inspect", prefix, "--json"});
  ASSERT_EQ(inspect.exit_code, 0);
  auto json = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(json["num_shards"], 3);
  EXPECT_EQ(json["tensors"].size(), infos.size());
  EXPECT_EQ(Cairn({"verify", prefix}).exit_code, 0);
  // The independent reader sees the same bytes.
  auto sha = nlohmann::json::parse(TfBundle({"sha", prefix}).out);
  for (const auto& [name, bytes] : data) EXPECT_EQ(sha[name]["sha256"], Sha256Hex(bytes)) << name;

  const std::string back = dir.Join("back.safetensors");
  RunResult conv2 = Cairn({"convert", prefix, back});
  ASSERT_EQ(conv2.exit_code, 0) << conv2.err;
  EXPECT_EQ(testing::ReadFile(back), testing::ReadFile(src));
}

// A file holding one slice of a partitioned variable keeps it as a slice
// through a bundle and back; nothing is silently widened or dropped.
TEST(Cli, PartialSlicesSurviveARoundTrip) {
  SKIP_WITHOUT_SHARED();
  testing::TempDir dir;
  std::vector<SafetensorsTensor> infos = {{"emb", DataType::kFloat, {250, 4}},
                                          {"bias", DataType::kFloat, {4}}};
  std::string emb(250 * 4 * 4, '\0');
  for (size_t i = 0; i < emb.size(); ++i) emb[i] = static_cast<char>(i % 251);
  std::map<std::string, std::string> data = {{"emb", emb}, {"bias", std::string(16, '\x3f')}};
  const std::string src = dir.Join("part.safetensors");
  WriteSafetensors(src, infos, data, {{"cairn.slice.emb", "1000 4 250,250:-"}});
  const std::string prefix = dir.Join("b/variables");
  RunResult conv = Cairn({"convert", src, prefix, "--shards=2"});
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  auto json = nlohmann::json::parse(Cairn({"inspect", prefix, "--json"}).out);
  for (const auto& t : json["tensors"]) {
    if (t["name"] == "emb") {
      EXPECT_EQ(t["shape"], nlohmann::json({1000, 4}));
      EXPECT_EQ(t["slices"], nlohmann::json({"250,250:-"}));
    }
  }
  EXPECT_EQ(Cairn({"verify", prefix}).exit_code, 0);
  const std::string back = dir.Join("back.safetensors");
  ASSERT_EQ(Cairn({"convert", prefix, back}).exit_code, 0);
  EXPECT_EQ(testing::ReadFile(back), testing::ReadFile(src));

  // Metadata that does not fit the tensor is refused.
  const std::string bad = dir.Join("bad.safetensors");
  WriteSafetensors(bad, infos, data, {{"cairn.slice.emb", "1000 4 0,100:-"}});
  RunResult r = Cairn({"convert", bad, dir.Join("c/variables")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("emb"), std::string::npos) << r.err;
}

TEST(Cli, VerifyNamesTheTensorOfEveryFlippedByte) {
  SKIP_WITHOUT_SHARED();
  testing::TempDir dir;
  const std::string base = SharedDir() + "/testdata/tf/serving_saved_model_half_plus_two_mkl/";
  testing::CopyFile(base + "variables.index", dir.Join("variables.index"));
  const std::string data_path = dir.Join("variables.data-00000-of-00001");
  const std::string good = testing::ReadFile(base + "variables.data-00000-of-00001");
  auto json = nlohmann::json::parse(Cairn({"inspect", dir.Join("variables"), "--json"}).out);
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::string bad = good;
    bad[pos] ^= 0x10;
    testing::WriteFile(data_path, bad);
    RunResult r = Cairn({"verify", dir.Join("variables")});
    EXPECT_EQ(r.exit_code, 1) << "flip at " << pos;
    std::string culprit;
    for (const auto& t : json["tensors"]) {
      const int64_t off = t["offset"], size = t["size"];
      if (static_cast<int64_t>(pos) >= off && static_cast<int64_t>(pos) < off + size) culprit = t["name"];
    }
    EXPECT_NE(r.err.find("\"" + culprit + "\""), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("variables.data-00000-of-00001"), std::string::npos) << r.err;
  }
}

TEST(Cli, TruncatedOrGarbledIndexFailsClearly) {
  SKIP_WITHOUT_SHARED();
  testing::TempDir dir;
  const std::string base = SharedDir() + "/testdata/tf/tfx_estimator_tf1_ckpt/model.ckpt-1000";
  testing::CopyFile(base + ".data-00000-of-00001", dir.Join("m.data-00000-of-00001"));
  const std::string index = testing::ReadFile(base + ".index");
  for (size_t len : {size_t{0}, size_t{20}, index.size() / 2, index.size() - 1}) {
    testing::WriteFile(dir.Join("m.index"), index.substr(0, len));
    for (const char* cmd : {"verify", "inspect"}) {
      RunResult r = Cairn({cmd, dir.Join("m")});
      EXPECT_EQ(r.exit_code, 1) << cmd << " len " << len;
      EXPECT_NE(r.err.find("m.index"), std::string::npos) << r.err;
    }
  }
  std::string garbled = index;
  for (size_t i = 100; i < 400; ++i) garbled[i] = static_cast<char>(i * 7);
  testing::WriteFile(dir.Join("m.index"), garbled);
  RunResult r = Cairn({"verify", dir.Join("m")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cairn
