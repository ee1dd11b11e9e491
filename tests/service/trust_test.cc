// Issue #12's trust defects on the release binaries, as a user or an
// adversary meets them: real coordinator and writer processes, the `cairn`
// CLI, real files. Each test failed before its fix.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::Cluster;
using testing::RunResult;

RunResult Cairn(std::vector<std::string> args) { return testing::RunCairn(std::move(args)); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class TrustTest : public ::testing::Test {
 protected:
  std::string File(uint32_t seed) { return testing::WriteOneTensorFile(dir_.path(), seed); }
  RunResult Save(const std::string& coordinator, const std::string& job, int64_t step,
                 std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"save", "--coordinator=" + coordinator, "--job=" + job,
                                     absl::StrCat("--step=", step),
                                     "--from=" + File(static_cast<uint32_t>(step))};
    args.insert(args.end(), extra.begin(), extra.end());
    return Cairn(args);
  }
  testing::TempDir dir_;
};

// Defect 2: a second coordinator (own --db, same --storage) committed over
// the first one's checkpoints, and restores then returned its bytes.
TEST_F(TrustTest, ASecondCatalogCannotTakeOverAStorageRoot) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Save(cluster.coordinator(), "j", 1).exit_code, 0);
  RunResult second = testing::Run({BinPath("cairn-coordinator"), "--listen=127.0.0.1:0",
                          "--db=" + dir_.Join("other-db"), "--storage=" + cluster.storage_dir()});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_TRUE(absl::StrContains(second.err, "belongs to another catalog")) << second.err;
  // The owner itself restarts on it fine.
  cluster.RestartCoordinator();
  ASSERT_EQ(Save(cluster.coordinator(), "j", 2).exit_code, 0);
}

// Defect 2, second half: restore compared nothing with the catalog, so
// other bytes under the committed names were restored with exit 0.
TEST_F(TrustTest, RestoreRefusesFilesOfAnotherSizeThanCommitted) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Save(cluster.coordinator(), "j", 1).exit_code, 0);
  const std::string data = cluster.storage_dir() + "/j/ckpt-1/variables.data-00000-of-00001";
  ASSERT_TRUE(Exists(data));
  { std::ofstream(data, std::ios::app) << "other bytes"; }
  RunResult r = Cairn({"restore", "--coordinator=" + cluster.coordinator(), "--job=j",
                       "--to=" + dir_.Join("out.safetensors")});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "were committed")) << r.err;
}

// Defect 3: `save --step=50` below committed 100 and 200 with keep-last=2
// printed "committed", exited 0, and retention deleted it in the same call.
TEST_F(TrustTest, ASaveBelowTheNewestStepIsRefusedAndRollbackMakesRoom) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Cairn({"policy", "--coordinator=" + cluster.coordinator(), "--job=j", "--keep-last=2"}).exit_code, 0);
  ASSERT_EQ(Save(cluster.coordinator(), "j", 100).exit_code, 0);
  ASSERT_EQ(Save(cluster.coordinator(), "j", 200).exit_code, 0);
  RunResult lower = Save(cluster.coordinator(), "j", 50);
  EXPECT_EQ(lower.exit_code, 1) << lower.out;
  EXPECT_TRUE(absl::StrContains(lower.err, "below its newest committed step 200")) << lower.err;
  EXPECT_FALSE(absl::StrContains(lower.out, "committed")) << lower.out;

  RunResult dry = Cairn({"rollback", "--coordinator=" + cluster.coordinator(), "--job=j", "--to=100",
                         "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(dry.out, "would delete j/200\ndry run: j would roll back to step 100 (1 deleted, 0 pending aborted)\n");
  EXPECT_TRUE(Exists(cluster.storage_dir() + "/j/ckpt-200/variables.index"));
  RunResult done = Cairn({"rollback", "--coordinator=" + cluster.coordinator(), "--job=j", "--to=100"});
  EXPECT_EQ(done.exit_code, 0) << done.err;
  EXPECT_EQ(done.out, "deleted j/200\nj rolled back to step 100 (1 deleted, 0 pending aborted)\n");
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/j/ckpt-200"));
  const std::string state = testing::ReadFile(cluster.storage_dir() + "/j/checkpoint");
  EXPECT_TRUE(absl::StartsWith(state, "model_checkpoint_path: \"ckpt-100/variables\"")) << state;
  EXPECT_EQ(Save(cluster.coordinator(), "j", 150).exit_code, 0);
  // Usage errors.
  EXPECT_EQ(Cairn({"rollback", "--coordinator=" + cluster.coordinator(), "--job=j"}).exit_code, 2);
  RunResult missing = Cairn({"rollback", "--coordinator=" + cluster.coordinator(), "--job=j", "--to=7"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "no committed checkpoint there")) << missing.err;
}

// Defect 4: a crash during retention after the records were marked left
// the TensorFlow state file listing a step whose files recovery deleted.
TEST_F(TrustTest, RecoveryFromACrashDuringRetentionRewritesTheStateFile) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Cairn({"policy", "--coordinator=" + cluster.coordinator(), "--job=j", "--keep-last=1"}).exit_code, 0);
  ASSERT_EQ(Save(cluster.coordinator(), "j", 1).exit_code, 0);
  cluster.RestartCoordinator({"--crash-at=after_mark_deleting"});
  RunResult save2;
  std::thread saver([&] { save2 = Save(cluster.coordinator(), "j", 2); });
  EXPECT_EQ(cluster.coordinator_process().WaitExit(30000), 86) << "no crash at after_mark_deleting";
  cluster.RestartCoordinator();
  saver.join();
  EXPECT_EQ(save2.exit_code, 0) << save2.err;
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/j/ckpt-1"));
  const std::string state = testing::ReadFile(cluster.storage_dir() + "/j/checkpoint");
  EXPECT_FALSE(absl::StrContains(state, "ckpt-1/")) << state;
  EXPECT_TRUE(absl::StrContains(state, "model_checkpoint_path: \"ckpt-2/variables\"")) << state;
}

// Defect 5: a shard recorded durable whose staged part is gone made the
// merge fail with NotFound on every retry (every 200 ms), neither aborting
// the step nor timing it out: pending forever.
TEST_F(TrustTest, AStepWhoseStagedPartIsLostIsAbortedWithTheReason) {
  Cluster cluster(dir_.path(), 1, {"--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Save(cluster.coordinator(), "j", 1, {"--shard=0/2"}).exit_code, 0);
  RunResult lost = testing::Run({"/usr/bin/find", cluster.storage_dir() + "/j/.cairn-staging", "-type",
                                 "f", "-delete", "-print"});
  ASSERT_NE(lost.out, "");
  RunResult last = Save(cluster.coordinator(), "j", 1, {"--shard=1/2"});
  EXPECT_EQ(last.exit_code, 1);
  const std::string log = testing::ReadFile(cluster.coordinator_log());
  const size_t at = log.find("http://");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string url = log.substr(at, log.find('/', at + 7) - at) + "/api/jobs/j";
  std::string json;
  for (int i = 0; i < 50; ++i) {  // aborted at once; allow a background pass
    json = testing::Run({"/usr/bin/curl", "-s", url}).out;
    if (absl::StrContains(json, "\"state\":\"aborted\"")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(absl::StrContains(json, "\"state\":\"aborted\"")) << json;
  EXPECT_TRUE(absl::StrContains(json, "cannot be committed")) << json;
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/j/.cairn-staging/ckpt-1"));
}

// Defect 6: with both writers killed and a new one started, a retry went to
// a dead writer ("connection refused") until the heartbeat timeout expired.
TEST_F(TrustTest, ARetryAfterWritersDieGoesToALiveWriterAtOnce) {
  Cluster cluster(dir_.path(), 2);
  ASSERT_TRUE(cluster.ok());
  ASSERT_EQ(Save(cluster.coordinator(), "j", 1).exit_code, 0);
  cluster.writer_process(0).Kill();
  cluster.writer_process(1).Kill();
  cluster.RestartWriter(0);
  ASSERT_FALSE(cluster.writer_process(0).address().empty());
  for (int64_t step = 2; step <= 5; ++step) {
    RunResult r = Save(cluster.coordinator(), "j", step);
    EXPECT_EQ(r.exit_code, 0) << "step " << step << ": " << r.err;
  }
}

// Defect 6, second half: a relative --storage went to writers as
// file://st; they exited ("needs an absolute path") while the coordinator
// kept assigning shards to them.
TEST_F(TrustTest, ARelativeStorageRootWorksForEveryProcess) {
  const std::string relative =
      std::filesystem::relative(dir_.Join("rel-root"), std::filesystem::current_path()).string();
  ASSERT_FALSE(absl::StartsWith(relative, "/"));
  testing::ServerProcess coordinator({BinPath("cairn-coordinator"), "--listen=127.0.0.1:0",
                                      "--db=" + dir_.Join("db"), "--storage=" + relative},
                                     dir_.Join("coordinator.log"));
  ASSERT_FALSE(coordinator.address().empty());
  testing::ServerProcess writer({BinPath("cairn-writer"), "--coordinator=" + coordinator.address()},
                                dir_.Join("writer.log"));
  ASSERT_FALSE(writer.address().empty()) << testing::ReadFile(dir_.Join("writer.log"));
  RunResult r = Save(coordinator.address(), "j", 1);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Exists(dir_.Join("rel-root/j/ckpt-1/variables.index")));
}

// Defect 7: gRPC's SO_REUSEPORT let a second server bind a port in use and
// split the clients' calls between two catalogs.
TEST_F(TrustTest, ABusyPortIsAnError) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  RunResult coordinator = testing::Run({BinPath("cairn-coordinator"), "--listen=" + cluster.coordinator(),
                               "--db=" + dir_.Join("db2"), "--storage=" + dir_.Join("st2")});
  EXPECT_EQ(coordinator.exit_code, 1) << coordinator.out;
  EXPECT_TRUE(absl::StrContains(coordinator.err, "cannot listen")) << coordinator.err;
  EXPECT_FALSE(absl::StrContains(coordinator.out, "listening on")) << coordinator.out;
  RunResult writer = testing::Run({BinPath("cairn-writer"), "--listen=" + cluster.writer_process(0).address(),
                          "--coordinator=" + cluster.coordinator()});
  EXPECT_EQ(writer.exit_code, 1) << writer.out;
  EXPECT_TRUE(absl::StrContains(writer.err, "cannot listen")) << writer.err;
}

// Defect 8: an empty save committed a 0-tensor checkpoint as the newest.
TEST_F(TrustTest, AnEmptySaveIsRefused) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string empty = dir_.Join("empty.safetensors");
  std::vector<SafetensorsTensor> none;
  testing::WriteFile(empty, *BuildSafetensorsPrefix(&none, {}));
  RunResult r = Cairn({"save", "--coordinator=" + cluster.coordinator(), "--job=j", "--step=1",
                       "--from=" + empty});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "at least one tensor")) << r.err;
  // Nothing of the job was kept: not even its name.
  RunResult list = Cairn({"list", "--coordinator=" + cluster.coordinator(), "--job=j", "--all"});
  EXPECT_EQ(list.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(list.err, "no job named j")) << list.err;
}

// Defect 9: --writer-timeout equal to the heartbeat interval made healthy
// writers look dead for a moment every beat.
TEST_F(TrustTest, LivenessNeedsAMarginOfThreeHeartbeats) {
  RunResult r = testing::Run({BinPath("cairn-coordinator"), "--listen=127.0.0.1:0", "--db=" + dir_.Join("db"),
                     "--storage=" + dir_.Join("st"), "--writer-timeout=2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "at least 3 heartbeat intervals")) << r.err;
  // With a shorter interval the same timeout is fine: writers stay live
  // through many beats, every save goes through.
  Cluster cluster(dir_.path(), 2, {"--writer-timeout=0.3", "--heartbeat-interval=0.1"});
  ASSERT_TRUE(cluster.ok());
  for (int64_t step = 1; step <= 10; ++step) {
    ASSERT_EQ(Save(cluster.coordinator(), "beat", step).exit_code, 0) << step;
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
}

// Defect 10: `a..b` was accepted by the coordinator and refused by the
// writer, so the step hung until its timeout.
TEST_F(TrustTest, OneJobNameRuleEverywhere) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  RunResult r = Save(cluster.coordinator(), "a..b", 1);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "must not contain \"..\"")) << r.err;
  auto stub = v1::Coordinator::NewStub(rpc::NewChannel(cluster.coordinator()));
  v1::BeginShardRequest req;
  req.set_job("a..b");
  req.set_step(1);
  req.set_num_shards(1);
  v1::BeginShardResponse resp;
  auto ctx = rpc::Context(std::chrono::seconds(10));
  grpc::Status s = stub->BeginShard(ctx.get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
}

// Defect 10: --keep-every-hours=1e-300 overflowed a cast (undefined).
TEST_F(TrustTest, AnAbsurdHourWindowIsRefused) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  RunResult r = Cairn({"policy", "--coordinator=" + cluster.coordinator(), "--job=j",
                       "--keep-every-hours=1e-300"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "keep-every-hours")) << r.err;
}

// Defect 10: the status page and its JSON answered without a token when
// authorization was on.
TEST_F(TrustTest, TheStatusPageNeedsATokenWhenAuthIsOn) {
  const std::string key = dir_.Join("key");
  testing::WriteFile(key, "0123456789abcdef0123456789abcdef\n");
  Cluster cluster(dir_.path(), 1, {"--auth-key-file=" + key, "--metrics-listen=127.0.0.1:0"}, {},
                  {"--auth-key-file=" + key});
  ASSERT_TRUE(cluster.ok());
  const std::string log = testing::ReadFile(cluster.coordinator_log());
  const size_t at = log.find("http://");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string base = log.substr(at, log.find('/', at + 7) - at);
  auto status_of = [](const std::vector<std::string>& curl_args) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"};
    argv.insert(argv.end(), curl_args.begin(), curl_args.end());
    return testing::Run(argv).out;
  };
  for (const char* path : {"/", "/api/jobs", "/api/jobs/j"}) {
    EXPECT_EQ(status_of({base + path}), "401") << path;
  }
  RunResult admin = Cairn({"token", "--auth-key-file=" + key, "--job=*", "--scope=read"});
  ASSERT_EQ(admin.exit_code, 0) << admin.err;
  const std::string token = admin.out.substr(0, admin.out.find('\n'));
  RunResult other = Cairn({"token", "--auth-key-file=" + key, "--job=other", "--scope=read"});
  const std::string other_token = other.out.substr(0, other.out.find('\n'));
  EXPECT_EQ(status_of({"-H", "Authorization: Bearer " + token, base + "/api/jobs"}), "200");
  EXPECT_EQ(status_of({base + "/?token=" + token}), "200");
  EXPECT_EQ(status_of({"-H", "Authorization: Bearer " + other_token, base + "/api/jobs"}), "403");
  EXPECT_EQ(status_of({"-H", "Authorization: Bearer " + other_token, base + "/api/jobs/j"}), "403");
  EXPECT_EQ(status_of({"-H", "Authorization: Bearer " + token, base + "/api/jobs/nosuchjob"}), "404");
  // Metrics stay open to scrapers.
  EXPECT_EQ(status_of({base + "/metrics"}), "200");
}

// Defect 10: creating a directory never fsynced its parent, so a crash
// could lose the directory and every durable file inside.
TEST_F(TrustTest, NewDirectoriesAreSyncedIntoTheirParents) {
  if (!Exists("/usr/bin/strace")) GTEST_SKIP() << "missing dependency: strace";
  const std::string trace = dir_.Join("trace.txt");
  const std::string out = dir_.Join("a/b/ckpt");
  // (LeakSanitizer cannot run under ptrace: off for the traced process.)
  RunResult r = testing::Run({"/usr/bin/env", "ASAN_OPTIONS=detect_leaks=0", "/usr/bin/strace", "-f", "-qq", "-e", "trace=mkdir,mkdirat,openat,fsync", "-o", trace,
                     BinPath("cairn"), "convert", File(1), out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Every directory made is followed by an fsync of its parent opened as a
  // directory.
  std::vector<std::string> lines = absl::StrSplit(testing::ReadFile(trace), '\n');
  int made = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t q = lines[i].find("mkdir(\"");
    if (q == std::string::npos || !absl::StrContains(lines[i], "= 0")) continue;
    ++made;
    const std::string made_dir = lines[i].substr(q + 7, lines[i].find('"', q + 7) - q - 7);
    const std::string parent = made_dir.substr(0, made_dir.rfind('/'));
    bool synced = false;
    for (size_t j = i + 1; j < lines.size() && !synced; ++j) {
      if (absl::StrContains(lines[j], "\"" + parent + "\"") && absl::StrContains(lines[j], "O_DIRECTORY")) {
        for (size_t k = j + 1; k < lines.size() && k < j + 4; ++k) {
          if (absl::StrContains(lines[k], "fsync(")) synced = true;
        }
      }
    }
    EXPECT_TRUE(synced) << "mkdir of " << made_dir << " was not followed by an fsync of " << parent;
  }
  EXPECT_GE(made, 2) << testing::ReadFile(trace);
}

}  // namespace
}  // namespace cairn
