// The service on S3: a real coordinator and writers with --storage=s3://…
// on a real Ceph object gateway (started by scripts/test.sh), restored via
// s3:// and via plain HTTP (nginx), with wrong credentials, and through a
// proxy that injects faults into 20% of requests.
//
// Each worker's shard (17.5 MiB) is larger than two S3 parts (S3Options::
// part_size, 8 MiB), so every shard goes up as a multipart upload of 3 parts;
// the fault test counts those parts in the proxy's log. After every test, S3
// ListMultipartUploads must show no upload left open under the test's root.
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "proto/cmdline/flags.h"
#include "storage/storage.h"
#include "tests/testing/process.h"
#include "tests/testing/s3_util.h"
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

// Per worker: a dense [kDenseRows, 1024] float tensor (15 MiB) and 640 rows
// of the partitioned [2560, 1024] float "emb" (2.5 MiB): 17.5 MiB of data per
// shard, over two S3 parts of the default 8 MiB (storage/storage.h,
// S3Options::part_size), so each shard is a multipart upload of 3 parts.
constexpr int64_t kDenseRows = 3840;
constexpr size_t kDenseBytes = kDenseRows * 1024 * 4;
constexpr size_t kEmbBytes = 640 * 1024 * 4;
constexpr size_t kPartSize = 8 << 20;
static_assert(kDenseBytes + kEmbBytes > 2 * kPartSize, "each shard must be a multipart upload of 3+ parts");

// What the fault proxy (CAIRN_TEST_S3_FAULT_LOG, its --log file) did to the
// requests whose path contains `marker`: number of requests, of faults by
// kind, and of UploadPart requests ("partNumber=" in the query).
struct ProxyCounts {
  int requests = 0;
  int upload_parts = 0;
  std::map<std::string, int> faults;  // kind -> count, "none" excluded
  int total_faults() const {
    int n = 0;
    for (const auto& [kind, count] : faults) n += count;
    return n;
  }
};

ProxyCounts CountProxyLog(const std::string& log_path, const std::string& marker) {
  ProxyCounts c;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    // "HH:MM:SS.mmm #ID METHOD PATH len=N fault=KIND[(Ns)] status=S ..."
    if (line.find(marker) == std::string::npos) continue;
    const size_t at = line.find(" fault=");
    if (at == std::string::npos) continue;  // "aborted" lines; the request's own line follows
    ++c.requests;
    if (line.find("partNumber=") != std::string::npos) ++c.upload_parts;
    std::string kind = line.substr(at + 7, line.find_first_of(" (", at + 7) - at - 7);
    if (kind != "none") ++c.faults[kind];
  }
  return c;
}

class S3ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("AWS_ENDPOINT_URL").empty() || Env("CAIRN_TEST_S3_BUCKET").empty()) {
      GTEST_SKIP() << "missing dependency: S3 server (AWS_ENDPOINT_URL / CAIRN_TEST_S3_BUCKET unset; "
                      "scripts/test.sh starts a Ceph object gateway)";
    }
    std::mt19937_64 rng(std::random_device{}());
    root_ = absl::StrCat("s3://", Env("CAIRN_TEST_S3_BUCKET"), "/svc-", rng() % 1000000000);
  }

  void TearDown() override {
    if (root_.empty()) return;  // skipped
    // No multipart upload left open under the test's root, completed or
    // aborted: ListMultipartUploads, which sees uploads (a listing of
    // objects cannot: an open upload is no object).
    auto open = testing::OpenMultipartUploads(Env("CAIRN_TEST_S3_BUCKET"), RootKeyPrefix() + "/");
    ASSERT_TRUE(open.ok()) << open.status();
    EXPECT_TRUE(open->empty()) << open->size() << " multipart uploads left open, e.g. " << (*open)[0];
    // Free the gateway's (memory) store for the next tests.
    auto storage = Root();
    auto files = storage->List("");
    if (files.ok()) storage->DeleteMany(*files).IgnoreError();
  }

  // "svc-N": the key prefix of root_ in the bucket.
  std::string RootKeyPrefix() const {
    return root_.substr(std::string("s3://").size() + Env("CAIRN_TEST_S3_BUCKET").size() + 1);
  }

  // 4 workers: each a 15 MiB dense tensor and 2.5 MiB rows of "emb" (so the
  // shards go up as multipart uploads of 3 parts), saved concurrently.
  // `dense_rows` below kDenseRows makes shards of one part (a single PUT).
  // `command_prefix` goes before the `cairn save` command (e.g. a timeout).
  std::vector<RunResult> SaveFour(const Cluster& cluster, const std::string& job, int64_t step,
                                  int64_t dense_rows = kDenseRows, std::vector<std::string> command_prefix = {}) {
    std::vector<std::future<RunResult>> futures;
    for (int i = 0; i < 4; ++i) {
      std::vector<SafetensorsTensor> infos = {{absl::StrCat("dense", i), DataType::kFloat, {dense_rows, 1024}},
                                              {"emb", DataType::kFloat, {640, 1024}}};
      auto prefix = BuildSafetensorsPrefix(&infos, {{"cairn.slice.emb", absl::StrCat("2560 1024 ", i * 640, ",640:-")}});
      EXPECT_TRUE(prefix.ok());
      std::string bytes = *prefix;
      for (const auto& info : infos) bytes += Expected(info.name, i, step, dense_rows);
      const std::string file = dir_.Join(absl::StrCat(job, step, "w", i, ".safetensors"));
      testing::WriteFile(file, bytes);
      futures.push_back(std::async(std::launch::async, [=, &cluster] {
        std::vector<std::string> argv = command_prefix;
        argv.insert(argv.end(), {BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(), "--job=" + job,
                                 absl::StrCat("--step=", step), "--from=" + file,
                                 absl::StrCat("--shard=", i, "/4")});
        return testing::Run(argv);
      }));
    }
    std::vector<RunResult> out;
    for (auto& f : futures) out.push_back(f.get());
    return out;
  }

  static std::string Expected(const std::string& name, int worker, int64_t step,
                              int64_t dense_rows = kDenseRows) {
    if (name == "emb") return testing::PatternBytes(kEmbBytes, static_cast<uint32_t>(step * 10 + worker));
    return testing::PatternBytes(static_cast<size_t>(dense_rows) * 1024 * 4,
                                 static_cast<uint32_t>(step * 100 + worker));
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
    auto s = OpenStorage(root_, cmdline::StorageOptionsFromEnvironment());
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
    GTEST_SKIP() << "missing dependency: HTTP server (CAIRN_HTTP_URL / CAIRN_HTTP_ROOT unset)";
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
  const std::string bad_secret = "not-the-secret-0123456789abcdefghijklmnop";
  // A coordinator with the wrong secret cannot even claim the root: it
  // stops at start-up, naming the bucket and the refusal.
  ::setenv("AWS_SECRET_ACCESS_KEY", bad_secret.c_str(), 1);
  RunResult coordinator = testing::Run({testing::BinPath("cairn-coordinator"), "--listen=127.0.0.1:0",
                                        "--db=" + dir_.Join("bad-db"), "--storage=" + root_});
  ::setenv("AWS_SECRET_ACCESS_KEY", good_secret.c_str(), 1);
  EXPECT_EQ(coordinator.exit_code, 1) << coordinator.out;
  EXPECT_NE(coordinator.err.find("403"), std::string::npos) << coordinator.err;
  {
    // Writers with the wrong secret (the coordinator's is right).
    Cluster cluster(dir_.path(), 1, {"--storage=" + root_},
                    {"/usr/bin/env", "AWS_SECRET_ACCESS_KEY=" + bad_secret});
    ASSERT_TRUE(cluster.ok());
    // Shards of one part (3 MiB + 2.5 MiB, a single PUT each); the next
    // test has shards of several parts.
    auto results = SaveFour(cluster, "denied", 1, /*dense_rows=*/768);
    for (const auto& r : results) {
      EXPECT_EQ(r.exit_code, 1);
      EXPECT_NE(r.err.find(Env("CAIRN_TEST_S3_BUCKET")), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
    }
  }
  ::setenv("AWS_SECRET_ACCESS_KEY", good_secret.c_str(), 1);
  // Nothing of the job (the root holds only the marker naming its catalog).
  auto listed = Root()->List("denied");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty()) << (*listed)[0];
  // No multipart upload was left open either: checked in TearDown.
}

// A multipart shard refused at its first part (HTTP 403): the writer failed
// the shard, but `cairn save` never returned (its stream waited forever for
// gRPC to release a slice of a failed write). Each save is bounded to 120 s
// by timeout(1) (exit 124).
TEST_F(S3ServiceTest, WrongCredentialsFailAMultipartShardPromptly) {
  // Writers with the wrong secret (a coordinator with it stops at start-up).
  Cluster cluster(dir_.path(), 1, {"--storage=" + root_},
                  {"/usr/bin/env", "AWS_SECRET_ACCESS_KEY=not-the-secret-0123456789abcdefghijklmnop"});
  ASSERT_TRUE(cluster.ok());
  for (const auto& r : SaveFour(cluster, "denied", 1, kDenseRows, {"/usr/bin/timeout", "120"})) {
    EXPECT_EQ(r.exit_code, 1) << "124: still running after 120 s\n" << r.err;
    EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
  }
}

// The open-uploads check of TearDown can fail: an upload opened by hand
// under a root is seen (then aborted, and seen no more).
TEST_F(S3ServiceTest, AnUploadLeftOpenIsSeenByTheOpenUploadsCheck) {
  const std::string bucket = Env("CAIRN_TEST_S3_BUCKET");
  const std::string key = RootKeyPrefix() + "/job/ckpt-1/variables.data-00000-of-00001";
  auto id = testing::CreateMultipartUpload(bucket, key);
  ASSERT_TRUE(id.ok()) << id.status();
  auto open = testing::OpenMultipartUploads(bucket, RootKeyPrefix() + "/");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(*open, std::vector<std::string>{key});
  ASSERT_TRUE(testing::AbortMultipartUpload(bucket, key, *id).ok());
  open = testing::OpenMultipartUploads(bucket, RootKeyPrefix() + "/");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_TRUE(open->empty());
}

TEST_F(S3ServiceTest, SavesAndRestoresSucceedWithFaultsOnOneRequestInFive) {
  const std::string faulty = Env("CAIRN_TEST_S3_FAULT_ENDPOINT");
  const std::string proxy_log = Env("CAIRN_TEST_S3_FAULT_LOG");
  if (faulty.empty() || proxy_log.empty()) {
    GTEST_SKIP() << "missing dependency: S3 fault proxy (CAIRN_TEST_S3_FAULT_ENDPOINT / "
                    "CAIRN_TEST_S3_FAULT_LOG unset; scripts/test.sh starts it)";
  }
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
  // Faults were really injected into this test's requests (the proxy is
  // shared: only lines naming this test's root count), and its shards went
  // up in parts: 2 steps x 4 shards x 3 parts, more with retries.
  const ProxyCounts counts = CountProxyLog(proxy_log, RootKeyPrefix() + "/");
  std::string kinds;
  for (const auto& [kind, n] : counts.faults) absl::StrAppend(&kinds, " ", kind, "=", n);
  std::cout << "fault proxy, this test's requests: " << counts.requests << " requests, "
            << counts.upload_parts << " UploadPart, " << counts.total_faults() << " faults:" << kinds << "\n";
  EXPECT_GE(counts.total_faults(), 1) << "the proxy injected no fault into this test's " << counts.requests
                                      << " requests (log: " << proxy_log << ")";
  EXPECT_GE(counts.upload_parts, 2 * 4 * 3) << "shards were not uploaded as multipart uploads";
}

}  // namespace
}  // namespace cairn
