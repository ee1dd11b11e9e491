// The service on S3: a real coordinator and writers with --storage=s3://…
// on a real Ceph object gateway (started by scripts/test.sh), restored via
// s3:// and via plain HTTP (nginx), with wrong credentials, and through a
// proxy that injects faults into 20% of requests.
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/safetensors.h"
#include "storage/storage.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Cluster;
using testing::RunResult;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return testing::Run(args);
}

class S3ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("AWS_ENDPOINT_URL").empty() || Env("CAIRN_TEST_S3_BUCKET").empty()) {
      GTEST_SKIP() << "no S3 server: AWS_ENDPOINT_URL / CAIRN_TEST_S3_BUCKET unset "
                      "(scripts/test.sh starts a Ceph object gateway)";
    }
    std::mt19937_64 rng(std::random_device{}());
    root_ = absl::StrCat("s3://", Env("CAIRN_TEST_S3_BUCKET"), "/svc-", rng() % 1000000000);
  }

  // 4 workers: each a 3 MiB dense tensor and 2.5 MiB rows of "emb" (so the
  // shards go up as multipart uploads), saved concurrently.
  std::vector<RunResult> SaveFour(const Cluster& cluster, const std::string& job, int64_t step) {
    std::vector<std::future<RunResult>> futures;
    for (int i = 0; i < 4; ++i) {
      std::vector<SafetensorsTensor> infos = {{absl::StrCat("dense", i), DataType::kFloat, {768, 1024}},
                                              {"emb", DataType::kFloat, {640, 1024}}};
      auto prefix = BuildSafetensorsPrefix(&infos, {{"cairn.slice.emb", absl::StrCat("2560 1024 ", i * 640, ",640:-")}});
      EXPECT_TRUE(prefix.ok());
      std::string bytes = *prefix;
      for (const auto& info : infos) bytes += Expected(info.name, i, step);
      const std::string file = dir_.Join(absl::StrCat(job, step, "w", i, ".safetensors"));
      testing::WriteFile(file, bytes);
      futures.push_back(std::async(std::launch::async, [=, &cluster] {
        return Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=" + job,
                      absl::StrCat("--step=", step), "--from=" + file, absl::StrCat("--shard=", i, "/4")});
      }));
    }
    std::vector<RunResult> out;
    for (auto& f : futures) out.push_back(f.get());
    return out;
  }

  static std::string Expected(const std::string& name, int worker, int64_t step) {
    if (name == "emb") return testing::PatternBytes(640 * 1024 * 4, static_cast<uint32_t>(step * 10 + worker));
    return testing::PatternBytes(768 * 1024 * 4, static_cast<uint32_t>(step * 100 + worker));
  }

  void ExpectExact(const std::string& safetensors, int64_t step) {
    auto t = testing::ReadSafetensorsTensors(safetensors);
    std::string emb;
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(t[absl::StrCat("dense", i)] == Expected(absl::StrCat("dense", i), i, step)) << i;
      emb += Expected("emb", i, step);
    }
    EXPECT_TRUE(t["emb"] == emb);
  }

  std::unique_ptr<Storage> Root() {
    auto s = OpenStorage(root_, StorageOptionsFromEnvironment());
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(s).value();
  }

  testing::TempDir dir_;
  std::string root_;
};

TEST_F(S3ServiceTest, FourShardSaveCommitsAndRestoresViaS3AndHttp) {
  Cluster cluster(dir_.path(), 2, {"--storage=" + root_});
  ASSERT_TRUE(cluster.ok());
  for (const auto& r : SaveFour(cluster, "s3job", 10)) ASSERT_EQ(r.exit_code, 0) << r.err;

  auto storage = Root();
  auto files = storage->List("s3job");
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*files, (std::vector<std::string>{
                        "s3job/checkpoint", "s3job/ckpt-10/variables.data-00000-of-00004",
                        "s3job/ckpt-10/variables.data-00001-of-00004",
                        "s3job/ckpt-10/variables.data-00002-of-00004",
                        "s3job/ckpt-10/variables.data-00003-of-00004", "s3job/ckpt-10/variables.index"}))
      << "staging objects must be gone";

  const std::string via_coordinator = dir_.Join("coord.safetensors");
  RunResult r = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=s3job", "--to=" + via_coordinator});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectExact(via_coordinator, 10);

  const std::string prefix = root_ + "/s3job/ckpt-10/variables";
  const std::string via_s3 = dir_.Join("s3.safetensors");
  r = Cairn({"restore", "--from=" + prefix, "--to=" + via_s3});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectExact(via_s3, 10);
  EXPECT_EQ(Cairn({"verify", prefix}).exit_code, 0);
  RunResult inspect = Cairn({"inspect", prefix, "--json"});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("\"num_shards\": 4"), std::string::npos);

  // Plain HTTP: nginx serving a committed checkpoint directory.
  if (Env("CAIRN_HTTP_URL").empty() || Env("CAIRN_HTTP_ROOT").empty()) {
    GTEST_SKIP() << "no HTTP server: CAIRN_HTTP_URL / CAIRN_HTTP_ROOT unset";
  }
  const std::string served = absl::StrCat("served-", std::random_device{}());
  for (const std::string& f : *files) {
    if (f.find("/ckpt-10/") == std::string::npos) continue;
    auto in = std::move(storage->NewReadableFile(f)).value();
    std::string bytes(in->Size(), '\0');
    ASSERT_TRUE(in->ReadAt(0, bytes.size(), bytes.data()).ok());
    std::string local = absl::StrCat(Env("CAIRN_HTTP_ROOT"), "/", served);
    ::mkdir(local.c_str(), 0755);
    testing::WriteFile(absl::StrCat(local, "/", f.substr(f.rfind('/') + 1)), bytes);
  }
  const std::string http_prefix = absl::StrCat(Env("CAIRN_HTTP_URL"), "/", served, "/variables");
  const std::string via_http = dir_.Join("http.safetensors");
  r = Cairn({"restore", "--from=" + http_prefix, "--to=" + via_http});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectExact(via_http, 10);
  EXPECT_EQ(Cairn({"verify", http_prefix}).exit_code, 0);
}

TEST_F(S3ServiceTest, WrongCredentialsFailClearlyAndLeaveNothingBehind) {
  const std::string good_secret = Env("AWS_SECRET_ACCESS_KEY");
  ::setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789abcdefghijklmnop", 1);
  {
    Cluster cluster(dir_.path(), 1, {"--storage=" + root_});
    ::setenv("AWS_SECRET_ACCESS_KEY", good_secret.c_str(), 1);
    ASSERT_TRUE(cluster.ok());
    auto results = SaveFour(cluster, "denied", 1);
    for (const auto& r : results) {
      EXPECT_EQ(r.exit_code, 1);
      EXPECT_NE(r.err.find(Env("CAIRN_TEST_S3_BUCKET")), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
    }
  }
  ::setenv("AWS_SECRET_ACCESS_KEY", good_secret.c_str(), 1);
  auto listed = Root()->List("");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty()) << (*listed)[0];
  // No multipart upload was left open either.
  const std::string bucket = Env("CAIRN_TEST_S3_BUCKET");
  RunResult uploads = testing::Run({"/usr/bin/python3", std::string(CAIRN_SOURCE_DIR) + "/tests/servers/s3req.py",
                                    "GET", absl::StrCat("/", bucket, "?uploads&prefix=", root_.substr(6 + bucket.size()))});
  EXPECT_EQ(uploads.exit_code, 0) << uploads.err;
  EXPECT_EQ(uploads.out.find("<Upload>"), std::string::npos) << uploads.out;
}

TEST_F(S3ServiceTest, SavesAndRestoresSucceedWithFaultsOnOneRequestInFive) {
  const std::string faulty = Env("CAIRN_TEST_S3_FAULT_ENDPOINT");
  if (faulty.empty()) GTEST_SKIP() << "no fault proxy: CAIRN_TEST_S3_FAULT_ENDPOINT unset";
  const std::string direct = Env("AWS_ENDPOINT_URL");
  ::setenv("AWS_ENDPOINT_URL", faulty.c_str(), 1);
  Cluster cluster(dir_.path(), 2, {"--storage=" + root_});
  ASSERT_TRUE(cluster.ok());
  for (int64_t step : {1, 2}) {
    for (const auto& r : SaveFour(cluster, "faulty", step)) EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  for (int64_t step : {1, 2}) {
    const std::string out = dir_.Join(absl::StrCat("f", step, ".safetensors"));
    RunResult r = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=faulty",
                         absl::StrCat("--step=", step), "--to=" + out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ExpectExact(out, step);
    EXPECT_EQ(Cairn({"verify", absl::StrCat(root_, "/faulty/ckpt-", step, "/variables")}).exit_code, 0);
  }
  ::setenv("AWS_ENDPOINT_URL", direct.c_str(), 1);
}

}  // namespace
}  // namespace cairn
