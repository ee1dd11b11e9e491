// Races in the commit protocol, replayed deterministically: in-process
// coordinator and writer, with named sync points (observability/sync_point.h)
// holding the commit at a chosen moment while the test sends the racing call.
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "coordinator/coordinator.h"
#include "gtest/gtest.h"
#include "observability/sync_point.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "shard_writer/shard_writer.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A gate a sync point waits at until the test opens it.
class Gate {
 public:
  // Installs the gate at `point`: the first thread to reach it signals
  // `reached` and blocks until Open().
  void InstallAt(const std::string& point) {
    sync_point::Set(point, [this] {
      std::unique_lock<std::mutex> lock(mu_);
      reached_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return open_; });
    });
  }
  bool WaitReached(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return reached_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool reached_ = false;
  bool open_ = false;
};

class CommitRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sync_point::ClearAll();
    CoordinatorOptions copts;
    copts.db_path = dir_.Join("db");
    copts.storage_uri = dir_.Join("storage");
    copts.clock = &clock_;
    copts.pending_timeout_ms = 60 * 1000;
    copts.writer_timeout_ms = 365LL * 24 * 3600 * 1000;  // the fake clock jumps
    copts.heartbeat_interval_ms = 1000;
    auto coordinator = CoordinatorServer::Start(copts);
    ASSERT_TRUE(coordinator.ok()) << coordinator.status();
    coordinator_ = std::move(coordinator).value();
    WriterOptions wopts;
    wopts.coordinator = coordinator_->address();
    wopts.max_shard_bytes = 1 << 20;
    auto writer = WriterServer::Start(wopts);
    ASSERT_TRUE(writer.ok()) << writer.status();
    writer_ = std::move(writer).value();
    ClientOptions options;
    options.coordinator = coordinator_->address();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }
  void TearDown() override {
    sync_point::ClearAll();
    if (writer_) writer_->Shutdown();
    if (coordinator_) coordinator_->Shutdown();
  }

  // Shard `shard` of `n` holding "w<shard>" = 4 bytes of `fill`.
  absl::StatusOr<SaveShardResult> SaveTiny(const std::string& job, int64_t step, int shard, int n,
                                           char fill) {
    const std::string bytes(4, fill);
    std::vector<SaveTensor> tensors = {
        {absl::StrCat("w", shard), DataType::kFloat, {1}, std::nullopt, bytes, {}}};
    return client_->SaveShard({job, step, shard, n, {}}, tensors);
  }

  std::string Storage() const { return dir_.Join("storage"); }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<CoordinatorServer> coordinator_;
  std::unique_ptr<WriterServer> writer_;
  std::unique_ptr<Client> client_;
};

// Defect 1: a retry of a durable shard sent while the merge runs was
// acknowledged (and even reported committed) but the checkpoint kept the old
// bytes and the retry's files stayed in the staging area for good.
TEST_F(CommitRaceTest, AShardRetriedDuringTheMergeIsRefusedNotSilentlyDropped) {
  constexpr int kShards = 6;
  for (int i = 0; i < kShards - 1; ++i) {
    auto r = SaveTiny("race", 1, i, kShards, 'a');
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->committed);
  }
  Gate gate;
  gate.InstallAt("before_merge");
  auto last = std::async(std::launch::async, [&] { return SaveTiny("race", 1, kShards - 1, kShards, 'a'); });
  ASSERT_TRUE(gate.WaitReached(std::chrono::seconds(30)));
  // The merge has begun: a retry of shard 2 with other bytes.
  auto retry = SaveTiny("race", 1, 2, kShards, 'B');
  gate.Open();
  auto committed = last.get();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(committed->committed);
  ASSERT_FALSE(retry.ok()) << "a retry after the merge began was acknowledged";
  EXPECT_EQ(retry.status().code(), absl::StatusCode::kFailedPrecondition) << retry.status();
  EXPECT_TRUE(absl::StrContains(retry.status().message(), "merge has begun")) << retry.status();

  // The checkpoint holds exactly what was acknowledged: shard 2's first bytes.
  auto restored = client_->Restore("race", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w2").tensor.data.view(), std::string(4, 'a'));
  auto info = client_->Get("race", 1);
  ASSERT_TRUE(info.ok());
  // No staged file of the refused retry (or of anything) is left behind.
  EXPECT_FALSE(Exists(Storage() + "/race/.cairn-staging/ckpt-1"));
}

// Issue #14: every shard report's synced catalog write was made under the
// coordinator's one mutex, so reports queued behind each other (and behind
// every other job's). Reports of one step are now written side by side: one
// held in its write does not stall the others, and the step's last report
// waits for it before the merge begins.
TEST_F(CommitRaceTest, ShardReportsOfOneStepAreWrittenSideBySide) {
  constexpr int kShards = 4;
  std::mutex mu;
  std::condition_variable cv;
  bool held = false;
  bool open = false;
  sync_point::Set("shard_durable_writing", [&] {
    std::unique_lock<std::mutex> lock(mu);
    if (held) return;  // only the first report is held
    held = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  });
  auto release = [&] {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  };
  auto first = std::async(std::launch::async, [&] { return SaveTiny("side", 1, 0, kShards, 'a'); });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return held; }));
  }
  // Shard 0's write is held: shards 1 and 2 are saved meanwhile.
  for (int i = 1; i < kShards - 1; ++i) {
    auto other = std::async(std::launch::async, [&, i] { return SaveTiny("side", 1, i, kShards, 'b'); });
    if (other.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      release();
      FAIL() << "shard " << i << "'s report waited for shard 0's catalog write";
    }
    auto r = other.get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->committed);
  }
  // The last shard's report waits until shard 0's write has landed.
  auto last = std::async(std::launch::async, [&] { return SaveTiny("side", 1, kShards - 1, kShards, 'c'); });
  EXPECT_EQ(last.wait_for(std::chrono::milliseconds(1000)), std::future_status::timeout);
  release();
  auto r0 = first.get();
  ASSERT_TRUE(r0.ok()) << r0.status();
  auto r3 = last.get();
  ASSERT_TRUE(r3.ok()) << r3.status();
  EXPECT_TRUE(r3->committed);
  auto restored = client_->Restore("side", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w0").tensor.data.view(), "aaaa");
  EXPECT_EQ(restored->at("w1").tensor.data.view(), "bbbb");
  EXPECT_EQ(restored->at("w3").tensor.data.view(), "cccc");
}

// Defect 1, second half: the pending timeout firing while the merge runs
// used to abort the step under the merge, and the decision's lookup then
// threw (terminating the coordinator). A step whose merge is running is
// decided by the merge.
TEST_F(CommitRaceTest, ThePendingTimeoutDuringAMergeNeitherAbortsItNorCrashes) {
  ASSERT_TRUE(SaveTiny("slow", 1, 0, 2, 'a').ok());
  Gate gate;
  gate.InstallAt("after_merge");
  auto last = std::async(std::launch::async, [&] { return SaveTiny("slow", 1, 1, 2, 'b'); });
  ASSERT_TRUE(gate.WaitReached(std::chrono::seconds(30)));
  clock_.Advance(10LL * 60 * 1000 * 1000);  // far past the pending timeout
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // background passes
  gate.Open();
  auto r = last.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->committed);
  auto restored = client_->Restore("slow", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w1").tensor.data.view(), "bbbb");
}

// Defect 5: a shard recorded durable whose staged part is gone made the
// merge fail with NotFound forever, the step pending for good (retried every
// 200 ms, never timed out). It is aborted, with the reason, and the step can
// be saved again.
TEST_F(CommitRaceTest, AMissingStagedPartAbortsTheStepInsteadOfRetryingForever) {
  ASSERT_TRUE(SaveTiny("lost", 7, 0, 2, 'a').ok());
  // Lose shard 0's staged files.
  auto found = testing::Run({"/usr/bin/find", Storage() + "/lost/.cairn-staging", "-type", "f",
                             "-path", "*shard-00000*", "-delete", "-print"});
  ASSERT_NE(found.out, "") << "no staged part found to remove";
  auto last = SaveTiny("lost", 7, 1, 2, 'b');
  ASSERT_FALSE(last.ok());
  // Aborted: the writer's word for "this checkpoint will not commit; save it again".
  EXPECT_EQ(last.status().code(), absl::StatusCode::kAborted) << last.status();
  EXPECT_TRUE(absl::StrContains(last.status().message(), "it was aborted")) << last.status();
  EXPECT_FALSE(Exists(Storage() + "/lost/.cairn-staging/ckpt-7"));
  // Aborted, so the step starts afresh.
  ASSERT_TRUE(SaveTiny("lost", 7, 0, 1, 'c').ok());
  auto restored = client_->Restore("lost", 7, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("w0").tensor.data.view(), "cccc");
}

// A one-shard checkpoint's index is published as its writer wrote it (no
// re-encoding merge): bytes that changed on storage after the writer
// reported them must not be committed. The general merge would have caught
// this through the index's block checksums; the one-part path compares the
// index with the CRC32C its writer reported.
TEST_F(CommitRaceTest, AnIndexChangedAfterItsReportIsNotCommitted) {
  sync_point::Set("before_merge", [this] {
    auto found = testing::Run({"/usr/bin/find", Storage() + "/flip/.cairn-staging", "-name", "part.index"});
    const std::string path(absl::StripTrailingAsciiWhitespace(found.out));
    std::string bytes = testing::ReadFile(path);
    if (bytes.size() < 8) return;
    bytes[bytes.size() * 3 / 5] ^= 0x20;  // one flipped bit in a later block of entries
    testing::WriteFile(path, bytes);
  });
  // Enough entries for several 256 KiB blocks: opening the index reads
  // only its first.
  const std::string four(4, 'a');
  std::vector<SaveTensor> tensors;
  for (int i = 0; i < 12000; ++i) {
    tensors.push_back({absl::StrCat("model/encoder/layer.", i, "/attention/output/dense/kernel"),
                       DataType::kFloat, {1}, std::nullopt, four, {}});
  }
  auto saved = client_->SaveShard({"flip", 1, 0, 1, {}}, tensors);
  sync_point::Clear("before_merge");
  ASSERT_FALSE(saved.ok()) << "a corrupted index was committed";
  EXPECT_EQ(saved.status().code(), absl::StatusCode::kAborted) << saved.status();
  EXPECT_TRUE(absl::StrContains(saved.status().message(), "index")) << saved.status();
  EXPECT_FALSE(Exists(Storage() + "/flip/ckpt-1/variables.index"));
  ASSERT_TRUE(SaveTiny("flip", 1, 0, 1, 'b').ok()) << "the step starts afresh";
}

// Defect 3 (and the rollback): a save below the newest committed step was
// committed and deleted by retention in the same call.
TEST_F(CommitRaceTest, ASaveBelowTheNewestStepIsRefusedUntilARollbackMakesRoom) {
  RetentionPolicy policy;
  policy.keep_last = 2;
  ASSERT_TRUE(client_->SetPolicy("fwd", policy).ok());
  ASSERT_TRUE(SaveTiny("fwd", 100, 0, 1, 'a').ok());
  ASSERT_TRUE(SaveTiny("fwd", 200, 0, 1, 'b').ok());
  auto lower = SaveTiny("fwd", 50, 0, 1, 'c');
  ASSERT_FALSE(lower.ok()) << "step 50 was acknowledged below step 200";
  EXPECT_EQ(lower.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(lower.status().message(), "newest committed step 200")) << lower.status();
  EXPECT_TRUE(absl::StrContains(lower.status().message(), "cairn rollback")) << lower.status();

  // A dry run changes nothing.
  auto dry = client_->Rollback("fwd", 100, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(dry->deleted_steps, std::vector<int64_t>{200});
  EXPECT_TRUE(client_->Get("fwd", 200).ok());
  // Pinned or leased steps above the target block it, named.
  ASSERT_TRUE(client_->Pin("fwd", 200, true).ok());
  auto pinned = client_->Rollback("fwd", 100, false);
  ASSERT_FALSE(pinned.ok());
  EXPECT_TRUE(absl::StrContains(pinned.status().message(), "step 200 is pinned")) << pinned.status();
  ASSERT_TRUE(client_->Pin("fwd", 200, false).ok());
  auto lease = client_->AcquireLease("fwd", 200, 60000);
  ASSERT_TRUE(lease.ok());
  auto leased = client_->Rollback("fwd", 100, false);
  ASSERT_FALSE(leased.ok());
  EXPECT_TRUE(absl::StrContains(leased.status().message(), "step 200 is leased")) << leased.status();
  ASSERT_TRUE(client_->ReleaseLease(*lease).ok());
  // A pending step above the target is aborted by the rollback.
  ASSERT_TRUE(SaveTiny("fwd", 300, 0, 2, 'p').ok());
  // The target must be a committed step.
  EXPECT_EQ(client_->Rollback("fwd", 150, false).status().code(), absl::StatusCode::kNotFound);

  auto done = client_->Rollback("fwd", 100, false);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->deleted_steps, std::vector<int64_t>{200});
  EXPECT_EQ(done->aborted_steps, std::vector<int64_t>{300});
  EXPECT_FALSE(Exists(Storage() + "/fwd/ckpt-200"));
  EXPECT_FALSE(Exists(Storage() + "/fwd/.cairn-staging/ckpt-300"));
  const std::string state = testing::ReadFile(Storage() + "/fwd/checkpoint");
  EXPECT_TRUE(absl::StartsWith(state, "model_checkpoint_path: \"ckpt-100/variables\"")) << state;
  EXPECT_FALSE(absl::StrContains(state, "ckpt-200")) << state;
  // Saves move forward again from 100.
  ASSERT_TRUE(SaveTiny("fwd", 150, 0, 1, 'd').ok());
  auto latest = client_->Get("fwd", std::nullopt);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->step, 150);
}

// A step begun before a newer one committed may still commit; retention
// run by its own commit never deletes it in the same call.
TEST_F(CommitRaceTest, NothingIsReportedCommittedAndDeletedByTheSameCall) {
  RetentionPolicy policy;
  policy.keep_last = 1;
  ASSERT_TRUE(client_->SetPolicy("overlap", policy).ok());
  ASSERT_TRUE(SaveTiny("overlap", 10, 0, 2, 'a').ok());     // step 10 pending (1 of 2)
  ASSERT_TRUE(SaveTiny("overlap", 20, 0, 1, 'b').ok());     // step 20 committed
  auto older = SaveTiny("overlap", 10, 1, 2, 'c');          // step 10 commits now
  ASSERT_TRUE(older.ok()) << older.status();
  ASSERT_TRUE(older->committed);
  EXPECT_TRUE(client_->Get("overlap", 10).ok()) << "committed and deleted by the same call";
  EXPECT_TRUE(Exists(Storage() + "/overlap/ckpt-10/variables.index"));
}

// Defect 8: an empty save committed a 0-tensor checkpoint that became the
// newest (and could never be removed, nor restored).
TEST_F(CommitRaceTest, ACheckpointWithNoTensorsIsRefused) {
  std::vector<SaveTensor> none;
  auto one = client_->SaveShard({"empty", 1, 0, 1, {}}, none);
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.status().code(), absl::StatusCode::kInvalidArgument) << one.status();
  // Two shards, both empty: refused at the commit, with the reason.
  ASSERT_TRUE(client_->SaveShard({"empty", 2, 0, 2, {}}, none).ok());
  auto last = client_->SaveShard({"empty", 2, 1, 2, {}}, none);
  ASSERT_FALSE(last.ok());
  EXPECT_TRUE(absl::StrContains(last.status().message(), "no tensors")) << last.status();
  EXPECT_EQ(client_->Get("empty", std::nullopt).status().code(), absl::StatusCode::kNotFound);
}

// Defect 10: a writer wrote a whole shard before anything checked it; now
// the attempt token is checked first and a shard has a size cap.
TEST_F(CommitRaceTest, AWriterCapsAShardsSize) {
  const std::string big(2 << 20, 'x');  // over the writer's 1 MiB cap
  std::vector<SaveTensor> tensors = {{"big", DataType::kUint8, {static_cast<int64_t>(big.size())},
                                      std::nullopt, big, {}}};
  auto r = client_->SaveShard({"capped", 1, 0, 1, {}}, tensors);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "max-shard-bytes")) << r.status();
}

// Defect 10: the writer's Merge wrote wherever it was told.
TEST_F(CommitRaceTest, AWriterMergesOnlyInsideOneStagingArea) {
  auto stub = v1::ShardWriter::NewStub(rpc::NewChannel(writer_->address()));
  struct Case {
    std::vector<std::string> parts;
    std::string output;
  };
  const std::string staging = "j/.cairn-staging/ckpt-1";
  for (const Case& c : std::vector<Case>{
           {{staging + "/shard-00000-a/part"}, "j/ckpt-1/variables"},
           {{staging + "/shard-00000-a/part"}, "/etc/cairn/merged/variables"},
           {{staging + "/shard-00000-a/part"}, "j/.cairn-staging/ckpt-1/../../../x/merged/variables"},
           {{"k/.cairn-staging/ckpt-1/shard-00000-a/part"}, staging + "/merged/variables"},
           {{staging + "/shard-00000-a/../../../../etc"}, staging + "/merged/variables"},
           {{}, staging + "/merged/variables"}}) {
    v1::MergeRequest req;
    for (const auto& p : c.parts) req.add_part_prefixes(p);
    req.set_output_prefix(c.output);
    v1::MergeResponse resp;
    auto ctx = rpc::Context(std::chrono::seconds(10));
    grpc::Status s = stub->Merge(ctx.get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.output << ": " << s.error_message();
  }
}

// A save that made retention delete the previous checkpoint waited until its
// files were unlinked, ~0.3 s per GiB on ext4 mounted with online discard
// (this machine). It now returns once they are out of the checkpoint's
// directory and the record is gone; the unlinks follow on another thread.
TEST_F(CommitRaceTest, ASaveDoesNotWaitForRetentionToUnlinkTheOldFiles) {
  RetentionPolicy policy;
  policy.keep_last = 1;
  ASSERT_TRUE(client_->SetPolicy("trash", policy).ok());
  ASSERT_TRUE(SaveTiny("trash", 1, 0, 1, 'a').ok());
  Gate gate;
  gate.InstallAt("before_unlink");
  struct OpenAtExit {
    Gate* gate;
    ~OpenAtExit() { gate->Open(); }  // never leave a thread blocked at the gate
  } open_at_exit{&gate};
  auto second = std::async(std::launch::async, [&] { return SaveTiny("trash", 2, 0, 1, 'b'); });
  ASSERT_EQ(second.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the save waited for the old checkpoint's files to be unlinked";
  auto saved = second.get();
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->committed);
  ASSERT_TRUE(gate.WaitReached(std::chrono::seconds(10))) << "nothing was unlinked";
  // Already gone for every reader: the record, and the checkpoint's directory.
  auto listed = client_->List("trash");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, 2);
  EXPECT_FALSE(Exists(Storage() + "/trash/ckpt-1"));
  EXPECT_TRUE(Exists(Storage() + "/trash/ckpt-2/variables.index"));
  gate.Open();
  // And the trash empties.
  auto trash_files = [&] {
    int n = 0;
    if (!Exists(Storage() + "/.cairn-trash")) return 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(Storage() + "/.cairn-trash")) {
      n += e.is_regular_file() ? 1 : 0;
    }
    return n;
  };
  for (int i = 0; i < 100 && trash_files() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(trash_files(), 0);
}

}  // namespace
}  // namespace cairn
