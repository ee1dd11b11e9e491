// End-to-end tests of the service: a real coordinator and real shard writers
// as processes on 127.0.0.1 (ports chosen by the OS), driven by the `cairn`
// CLI as real processes, checked byte for byte and with the independent
// checker ../shared/tools/tfbundle.py.
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Cluster;
using testing::Run;
using testing::RunResult;

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return Run(args);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

struct StTensor {
  std::string name;
  DataType dtype;
  std::vector<int64_t> shape;
  std::string data;
};

void WriteSafetensors(const std::string& path, const std::vector<StTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  std::vector<SafetensorsTensor> infos;
  std::map<std::string, std::string> data;
  for (const auto& t : tensors) {
    infos.push_back({t.name, t.dtype, t.shape});
    data[t.name] = t.data;
  }
  auto prefix = BuildSafetensorsPrefix(&infos, metadata);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  std::string bytes = *prefix;
  for (const auto& info : infos) bytes += data[info.name];
  testing::WriteFile(path, bytes);
}

// Worker i of `n` of a job: its own dense tensor plus rows of "emb" [rows, 8].
std::vector<StTensor> WorkerTensors(int i, int n, int64_t step, int64_t rows = 0) {
  if (rows == 0) rows = 16 * n;
  std::vector<StTensor> t;
  t.push_back({absl::StrCat("layer", i, "/kernel"), DataType::kFloat, {16, 4},
               testing::PatternBytes(16 * 4 * 4, static_cast<uint32_t>(step * 100 + i))});
  const int64_t per = rows / n;
  t.push_back({"emb", DataType::kFloat, {per, 8},
               testing::PatternBytes(static_cast<size_t>(per * 8 * 4), static_cast<uint32_t>(step * 1000 + i))});
  return t;
}

std::string EmbSlice(int i, int n, int64_t rows = 0) {
  if (rows == 0) rows = 16 * n;
  return absl::StrCat(rows, " 8 ", i * (rows / n), ",", rows / n, ":-");
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::SharedDir().empty()) shared_missing_ = true;
  }

  // Saves `n` worker shards of `step` concurrently; returns their results.
  std::vector<RunResult> SaveAll(const Cluster& cluster, const std::string& job, int64_t step,
                                 int n, int only = -1) {
    std::vector<std::future<RunResult>> futures;
    for (int i = 0; i < n; ++i) {
      if (only >= 0 && i != only) continue;
      const std::string file = dir_.Join(absl::StrCat(job, "-", step, "-w", i, ".safetensors"));
      WriteSafetensors(file, WorkerTensors(i, n, step), {{"cairn.slice.emb", EmbSlice(i, n)}});
      futures.push_back(std::async(std::launch::async, [=, &cluster] {
        return Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=" + job,
                      absl::StrCat("--step=", step), "--from=" + file,
                      absl::StrCat("--shard=", i, "/", n),
                      absl::StrCat("--metric=loss=", 1.0 / (step + 1))});
      }));
    }
    std::vector<RunResult> out;
    for (auto& f : futures) out.push_back(f.get());
    return out;
  }

  // The exact bytes of the whole "emb" and each kernel for (step, n).
  void ExpectRestoredExactly(const Cluster& cluster, const std::string& job, int64_t step, int n) {
    const std::string out = dir_.Join(absl::StrCat("restore-", job, "-", step, ".safetensors"));
    RunResult r = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=" + job,
                         absl::StrCat("--step=", step), "--to=" + out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto tensors = testing::ReadSafetensorsTensors(out);
    std::string emb;
    for (int i = 0; i < n; ++i) {
      auto t = WorkerTensors(i, n, step);
      EXPECT_EQ(tensors[t[0].name], t[0].data) << t[0].name;
      emb += t[1].data;
    }
    EXPECT_EQ(tensors["emb"], emb);
    EXPECT_EQ(tensors.size(), static_cast<size_t>(n + 1));
  }

  testing::TempDir dir_;
  bool shared_missing_ = false;
};

TEST_F(ServiceTest, FourConcurrentShardsOverThreeWritersCommitOneCheckpoint) {
  Cluster cluster(dir_.path(), 3);
  ASSERT_TRUE(cluster.ok());
  auto results = SaveAll(cluster, "job-a", 100, 4);
  int committed = 0;
  for (const auto& r : results) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (r.out.find("committed") != std::string::npos) ++committed;
  }
  EXPECT_EQ(committed, 1) << "exactly the last shard's save reports the commit";
  ExpectRestoredExactly(cluster, "job-a", 100, 4);

  const std::string prefix = cluster.storage_dir() + "/job-a/ckpt-100/variables";
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(Exists(absl::StrCat(prefix, ".data-0000", i, "-of-00004")));
  }
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/job-a/.cairn-staging/ckpt-100"));
  const std::string state = testing::ReadFile(cluster.storage_dir() + "/job-a/checkpoint");
  EXPECT_NE(state.find("model_checkpoint_path: \"ckpt-100/variables\""), std::string::npos) << state;

  // The shards were spread over more than one writer.
  const std::string log = testing::ReadFile(cluster.coordinator_log());
  std::set<std::string> writers;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    size_t at = line.find("shard assigned to writer ");
    if (at != absl::string_view::npos) writers.insert(std::string(line.substr(at)));
  }
  EXPECT_GE(writers.size(), 2u) << log;

  if (!shared_missing_) {
    RunResult check = testing::Run({"/usr/bin/python3", testing::SharedDir() + "/tools/tfbundle.py", "check", prefix});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  }
  EXPECT_EQ(Cairn({"verify", prefix}).exit_code, 0);

  // A newer step moves model_checkpoint_path; both remain listed.
  for (const auto& r : SaveAll(cluster, "job-a", 200, 4)) EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string state2 = testing::ReadFile(cluster.storage_dir() + "/job-a/checkpoint");
  EXPECT_NE(state2.find("model_checkpoint_path: \"ckpt-200/variables\""), std::string::npos);
  EXPECT_NE(state2.find("all_model_checkpoint_paths: \"ckpt-100/variables\""), std::string::npos);
  RunResult list = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=job-a", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto json = nlohmann::json::parse(list.out);
  ASSERT_EQ(json["checkpoints"].size(), 2u);
  EXPECT_EQ(json["checkpoints"][0]["step"], 100);
  EXPECT_EQ(json["checkpoints"][1]["num_shards"], 4);
  EXPECT_DOUBLE_EQ(json["checkpoints"][1]["metrics"]["loss"].get<double>(),
                   std::stod(absl::StrCat(1.0 / 201)));
}

TEST_F(ServiceTest, RowSlicesRestoreAsTwoSlicesAndAsTheWholeTensor) {
  Cluster cluster(dir_.path(), 2);
  ASSERT_TRUE(cluster.ok());
  for (const auto& r : SaveAll(cluster, "emb-job", 7, 4)) ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string whole;
  for (int i = 0; i < 4; ++i) whole += WorkerTensors(i, 4, 7)[1].data;
  const size_t row = 8 * 4;
  for (int half = 0; half < 2; ++half) {
    const std::string out = dir_.Join(absl::StrCat("half", half, ".safetensors"));
    RunResult r = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=emb-job",
                         "--to=" + out, "--tensor=emb",
                         absl::StrCat("--slice=emb=64 8 ", half * 32, ",32:-")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    SafetensorsHeader header;
    auto t = testing::ReadSafetensorsTensors(out, &header);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t["emb"], whole.substr(half * 32 * row, 32 * row));
    EXPECT_EQ(header.metadata["cairn.slice.emb"], absl::StrCat("64 8 ", half * 32, ",32:-"));
  }
  // A cut that crosses the writers' boundaries, and 8 workers' worth.
  const std::string out = dir_.Join("odd.safetensors");
  ASSERT_EQ(Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=emb-job",
                   "--to=" + out, "--tensor=emb", "--slice=emb=64 8 10,30:2,5"}).exit_code, 0);
  std::string expect;
  for (int r = 10; r < 40; ++r) expect += whole.substr(r * row + 2 * 4, 5 * 4);
  EXPECT_EQ(testing::ReadSafetensorsTensors(out)["emb"], expect);
  // Whole, as a TensorFlow checkpoint prefix.
  const std::string prefix = dir_.Join("whole/variables");
  ASSERT_EQ(Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=emb-job",
                   "--to=" + prefix}).exit_code, 0);
  const std::string back = dir_.Join("whole.safetensors");
  ASSERT_EQ(Cairn({"convert", prefix, back}).exit_code, 0);
  EXPECT_EQ(testing::ReadSafetensorsTensors(back)["emb"], whole);
  // Restore from the bare prefix, without a coordinator.
  const std::string bare = dir_.Join("bare.safetensors");
  RunResult r = Cairn({"restore", "--from=" + cluster.storage_dir() + "/emb-job/ckpt-7/variables",
                       "--to=" + bare});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadSafetensorsTensors(bare)["emb"], whole);
}

// --progress=always draws the bar on stderr without a terminal (here, a
// pipe) for save, restore and verify --deep through a real cluster; stdout
// reads exactly as without it, and without the flag nothing is drawn.
// $CAIRN_COORDINATOR is --coordinator's default (../shared/CONTRACT.md): it
// was ignored, and every command said --coordinator is required.
TEST_F(ServiceTest, CairnCoordinatorInTheEnvironmentIsTheDefault) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string file = dir_.Join("env.safetensors");
  WriteSafetensors(file, {{"w", DataType::kFloat, {4}, testing::PatternBytes(16, 3)}});
  auto with_env = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/env", "CAIRN_COORDINATOR=" + cluster.coordinator(), BinPath("cairn")});
    return testing::Run(args);
  };
  RunResult saved = with_env({"save", "--job=env", "--step=1", "--from=" + file});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  RunResult listed = with_env({"list", "--job=env", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("\"step\": 1"), std::string::npos) << listed.out;
  RunResult restored = with_env({"restore", "--job=env", "--to=" + dir_.Join("env-out.safetensors")});
  EXPECT_EQ(restored.exit_code, 0) << restored.err;
  RunResult verified = with_env({"verify", "--job=env"});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  // --coordinator wins over the environment; without either, the message
  // names both.
  RunResult flag = testing::Run({"/usr/bin/env", "CAIRN_COORDINATOR=127.0.0.1:1", BinPath("cairn"), "list",
                        "--coordinator=" + cluster.coordinator(), "--job=env"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  RunResult neither = testing::Run({"/usr/bin/env", "-u", "CAIRN_COORDINATOR", BinPath("cairn"), "list", "--job=env"});
  EXPECT_EQ(neither.exit_code, 2);
  EXPECT_NE(neither.err.find("CAIRN_COORDINATOR"), std::string::npos) << neither.err;
}

TEST_F(ServiceTest, SaveRestoreAndDeepVerifyDrawProgressWhenAsked) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string big = testing::PatternBytes(6 << 20, 11);
  const std::string file = dir_.Join("progress.safetensors");
  WriteSafetensors(file, {{"big", DataType::kUint8, {static_cast<int64_t>(big.size())}, big},
                          {"bias", DataType::kFloat, {4}, testing::PatternBytes(16, 12)}});
  auto save = [&](int step, bool progress) {
    std::vector<std::string> args = {"save", "--coordinator=" + cluster.coordinator(),
                                     "--job=prog", absl::StrCat("--step=", step),
                                     "--from=" + file};
    if (progress) args.push_back("--progress=always");
    return Cairn(args);
  };
  RunResult quiet = save(1, false);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "") << "no flag, no terminal: no progress output";
  RunResult drawn = save(2, true);
  ASSERT_EQ(drawn.exit_code, 0) << drawn.err;
  EXPECT_EQ(drawn.out, absl::StrReplaceAll(quiet.out, {{"step 1", "step 2"}, {"prog/1", "prog/2"}}));
  EXPECT_NE(drawn.err.find("\rsave ["), std::string::npos) << drawn.err;
  EXPECT_NE(drawn.err.find("ETA"), std::string::npos) << drawn.err;
  EXPECT_NE(drawn.err.find("/    6.0 MiB"), std::string::npos) << drawn.err;
  const std::string last = drawn.err.substr(drawn.err.rfind('\r') + 1);
  EXPECT_EQ(last.rfind("save [", 0), 0u) << last;
  EXPECT_NE(last.find("] 100%"), std::string::npos) << last;
  EXPECT_NE(last.find("B/s  in "), std::string::npos) << last;
  EXPECT_EQ(last.back(), '\n');

  const std::string out = dir_.Join("restored.safetensors");
  auto restore = [&](bool progress) {
    std::vector<std::string> args = {"restore", "--coordinator=" + cluster.coordinator(),
                                     "--job=prog", "--step=2", "--to=" + out};
    if (progress) args.push_back("--progress=always");
    return Cairn(args);
  };
  RunResult plain = restore(false);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.err, "");
  RunResult with_bar = restore(true);
  ASSERT_EQ(with_bar.exit_code, 0) << with_bar.err;
  EXPECT_EQ(with_bar.out, plain.out);
  EXPECT_NE(with_bar.err.find("\rrestore ["), std::string::npos) << with_bar.err;
  EXPECT_NE(with_bar.err.find("] 100%"), std::string::npos) << with_bar.err;
  EXPECT_TRUE(testing::ReadSafetensorsTensors(out)["big"] == big);

  RunResult verify = Cairn({"verify", "--coordinator=" + cluster.coordinator(), "--job=prog",
                            "--deep", "--progress=always"});
  ASSERT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.err.find("\rverify ["), std::string::npos) << verify.err;
  EXPECT_NE(verify.err.find("\rverify files ["), std::string::npos) << verify.err;
  RunResult verify_plain =
      Cairn({"verify", "--coordinator=" + cluster.coordinator(), "--job=prog", "--deep"});
  EXPECT_EQ(verify_plain.out, verify.out);
  EXPECT_EQ(verify_plain.err, "");
  // It names what it compared: writers record no SHA-256 of data files
  // unless asked (it once claimed a SHA-256 check of every file regardless).
  EXPECT_TRUE(std::regex_search(verify_plain.out,
                                std::regex(": 2 files, [0-9]+ bytes checked against the catalog's "
                                           "record \\(size of 2, CRC32C of 2, SHA-256 of 1\\)\n")))
      << verify_plain.out;
}

// The coordinator dies at each point of the commit protocol; after a
// restart the checkpoint is committed whole (the commit was decided once all
// shards were durable) and earlier checkpoints are untouched.
TEST_F(ServiceTest, CoordinatorCrashAtEveryCommitPhaseEndsCommittedNeverHalfVisible) {
  for (const char* point : {"after_all_durable", "after_merge", "after_decide", "after_publish",
                            "after_state_file"}) {
    SCOPED_TRACE(point);
    testing::TempDir dir;
    Cluster cluster(dir.path(), 2);
    ASSERT_TRUE(cluster.ok());
    for (const auto& r : SaveAll(cluster, "crashy", 1, 2)) ASSERT_EQ(r.exit_code, 0) << r.err;
    cluster.RestartCoordinator({std::string("--crash-at=") + point});
    ASSERT_FALSE(cluster.coordinator().empty());
    auto saves = std::async(std::launch::async, [&] { return SaveAll(cluster, "crashy", 2, 2); });
    ASSERT_EQ(cluster.coordinator_process().WaitExit(30000), testing::kCrashPointExitCode)
        << "crash point " << point << " not reached (-1000: still running after 30 s)";
    EXPECT_FALSE(Exists(cluster.storage_dir() + "/crashy/ckpt-2/variables.index") &&
                 std::string(point) == "after_merge")
        << "nothing is published before the commit is decided";
    cluster.RestartCoordinator();
    ASSERT_FALSE(cluster.coordinator().empty());
    // The writers kept retrying their durability reports: the saves succeed.
    for (const auto& r : saves.get()) EXPECT_EQ(r.exit_code, 0) << r.err;
    RunResult list = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=crashy", "--json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    auto json = nlohmann::json::parse(list.out);
    ASSERT_EQ(json["checkpoints"].size(), 2u) << list.out;
    ExpectRestoredExactly(cluster, "crashy", 1, 2);
    ExpectRestoredExactly(cluster, "crashy", 2, 2);
    const std::string state = testing::ReadFile(cluster.storage_dir() + "/crashy/checkpoint");
    EXPECT_NE(state.find("\"ckpt-2/variables\""), std::string::npos) << state;
    EXPECT_FALSE(Exists(cluster.storage_dir() + "/crashy/.cairn-staging/ckpt-2"));
  }
}

TEST_F(ServiceTest, AShardThatNeverArrivesIsAbortedAndItsFilesRemoved) {
  Cluster cluster(dir_.path(), 2, {"--pending-timeout=2"});
  ASSERT_TRUE(cluster.ok());
  auto results = SaveAll(cluster, "lonely", 5, 3, /*only=*/1);
  ASSERT_EQ(results[0].exit_code, 0) << results[0].err;
  const std::string staging = cluster.storage_dir() + "/lonely/.cairn-staging/ckpt-5";
  EXPECT_TRUE(Exists(staging));
  RunResult pending = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=lonely", "--json"});
  EXPECT_EQ(nlohmann::json::parse(pending.out)["checkpoints"].size(), 0u);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (Exists(staging) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(Exists(staging));
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/lonely/ckpt-5"));
  EXPECT_NE(testing::ReadFile(cluster.coordinator_log()).find("job=lonely step=5 shard=- aborted: "), std::string::npos);
  RunResult restore = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=lonely",
                             "--to=" + dir_.Join("x.safetensors")});
  EXPECT_EQ(restore.exit_code, 1);
  // The late shard of the aborted step is refused rather than resurrecting it
  // half-way; a complete new save of the step works.
  for (const auto& r : SaveAll(cluster, "lonely", 5, 3)) EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectRestoredExactly(cluster, "lonely", 5, 3);
}

TEST_F(ServiceTest, TwoJobsAtOnceDoNotInterfereAndShardCountsMustAgree) {
  Cluster cluster(dir_.path(), 2);
  ASSERT_TRUE(cluster.ok());
  auto a = std::async(std::launch::async, [&] { return SaveAll(cluster, "alpha", 3, 4); });
  auto b = std::async(std::launch::async, [&] { return SaveAll(cluster, "beta", 3, 2); });
  for (const auto& r : a.get()) EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const auto& r : b.get()) EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectRestoredExactly(cluster, "alpha", 3, 4);
  ExpectRestoredExactly(cluster, "beta", 3, 2);

  // Shard 0 of 2 begins step 9; shard 1 claiming 3 shards is refused.
  SaveAll(cluster, "gamma", 9, 2, /*only=*/0);
  const std::string file = dir_.Join("g.safetensors");
  WriteSafetensors(file, WorkerTensors(1, 3, 9), {{"cairn.slice.emb", EmbSlice(1, 3)}});
  RunResult r = Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=gamma", "--step=9",
                       "--from=" + file, "--shard=1/3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("2 shards"), std::string::npos) << r.err;
  // Re-saving a committed step is refused too.
  RunResult again = SaveAll(cluster, "alpha", 3, 4, /*only=*/0)[0];
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already committed"), std::string::npos) << again.err;
}

TEST_F(ServiceTest, ARetriedShardReplacesTheEarlierAttempt) {
  Cluster cluster(dir_.path(), 2);
  ASSERT_TRUE(cluster.ok());
  // The first attempt of shard 0 holds other bytes (same names and shapes,
  // the data of step 99); the retry holds step 1's. The checkpoint must hold
  // the retry's bytes only: identical bytes on both attempts could not show
  // which attempt was kept.
  const std::string first = dir_.Join("retry-first-attempt.safetensors");
  const auto first_tensors = WorkerTensors(0, 2, /*step=*/99);
  WriteSafetensors(first, first_tensors, {{"cairn.slice.emb", EmbSlice(0, 2)}});
  RunResult attempt = Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=retry", "--step=1",
                             "--from=" + first, "--shard=0/2"});
  ASSERT_EQ(attempt.exit_code, 0) << attempt.err;
  ASSERT_NE(first_tensors[0].data, WorkerTensors(0, 2, 1)[0].data);
  for (const auto& r : SaveAll(cluster, "retry", 1, 2, /*only=*/0)) EXPECT_EQ(r.exit_code, 0) << r.err;  // the retry
  for (const auto& r : SaveAll(cluster, "retry", 1, 2, /*only=*/1)) EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectRestoredExactly(cluster, "retry", 1, 2);
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/retry/.cairn-staging/ckpt-1"));
}

TEST_F(ServiceTest, TwoShardsSavingTheSameTensorAbortTheStepClearly) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  std::vector<RunResult> results;
  for (int i = 0; i < 2; ++i) {
    const std::string file = dir_.Join(absl::StrCat("dup", i, ".safetensors"));
    WriteSafetensors(file, {{"same", DataType::kFloat, {2}, testing::PatternBytes(8, i)}});
    results.push_back(Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=dup",
                             "--step=1", "--from=" + file, absl::StrCat("--shard=", i, "/2")}));
  }
  EXPECT_EQ(results[0].exit_code, 0) << results[0].err;
  EXPECT_EQ(results[1].exit_code, 1);
  EXPECT_NE(results[1].err.find("\"same\""), std::string::npos) << results[1].err;
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/dup/ckpt-1"));
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/dup/.cairn-staging/ckpt-1"));
}

TEST_F(ServiceTest, ShardsGoOnlyToWritersThatStillHeartbeat) {
  Cluster cluster(dir_.path(), 2, {"--writer-timeout=1", "--heartbeat-interval=0.25"});
  ASSERT_TRUE(cluster.ok());
  cluster.writer_process(0).Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  for (const auto& r : SaveAll(cluster, "survivor", 1, 4)) EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectRestoredExactly(cluster, "survivor", 1, 4);
  // With every writer gone, a save fails clearly instead of hanging.
  cluster.writer_process(1).Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  RunResult r = SaveAll(cluster, "survivor", 2, 1)[0];
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no live shard writers"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cairn
