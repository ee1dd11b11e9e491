// Retention end to end: real coordinator and writer processes (and, for the
// hour-based rule, in-process servers on a fake clock), driven through the
// client library; results checked in the catalog (list), on disk and in the
// TensorFlow state file.
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "coordinator/coordinator.h"
#include "gtest/gtest.h"
#include "shard_writer/shard_writer.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::Cluster;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.coordinator = address;
  auto c = Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

// Saves a one-shard checkpoint holding "w" = step (float) with a loss.
void Save(Client& client, const std::string& job, int64_t step, double loss) {
  const float value = static_cast<float>(step);
  const std::string bytes(reinterpret_cast<const char*>(&value), 4);
  std::vector<SaveTensor> tensors = {{"w", DataType::kFloat, {1}, std::nullopt, bytes, {}}};
  auto r = client.SaveShard({job, step, 0, 1, {{"loss", loss}}}, tensors);
  ASSERT_TRUE(r.ok()) << "step " << step << ": " << r.status();
  EXPECT_TRUE(r->committed);
}

std::set<int64_t> Listed(Client& client, const std::string& job) {
  std::set<int64_t> out;
  auto list = client.List(job);
  EXPECT_TRUE(list.ok()) << list.status();
  if (list.ok()) {
    for (const auto& c : *list) out.insert(c.step);
  }
  return out;
}

std::set<int64_t> OnDisk(const std::string& storage, const std::string& job, int64_t max_step) {
  std::set<int64_t> out;
  for (int64_t s = 0; s <= max_step; ++s) {
    if (Exists(absl::StrCat(storage, "/", job, "/ckpt-", s, "/variables.index"))) out.insert(s);
  }
  return out;
}

// The steps the state file lists, in order, and the one it names newest.
std::vector<int64_t> StateFileSteps(const std::string& storage, const std::string& job,
                                    int64_t* newest) {
  std::vector<int64_t> out;
  *newest = -1;
  const std::string text = testing::ReadFile(absl::StrCat(storage, "/", job, "/checkpoint"));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t at = line.find("\"ckpt-");
    if (at == absl::string_view::npos) continue;
    const int64_t step = std::stoll(std::string(line.substr(at + 6)));
    if (absl::StartsWith(line, "model_checkpoint_path")) *newest = step;
    if (absl::StartsWith(line, "all_model_checkpoint_paths")) out.push_back(step);
  }
  return out;
}

float ReadW(Client& client, const std::string& job, int64_t step) {
  auto r = client.Restore(job, step, {});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return -1;
  float v;
  std::memcpy(&v, r->at("w").tensor.data.data(), 4);
  return v;
}

class RetentionTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(RetentionTest, ThirtyStepsUnderAUnionOfRulesLeaveExactlyTheExpectedSet) {
  Cluster cluster(dir_.path(), 2);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  RetentionPolicy policy;
  policy.keep_last = 3;
  policy.keep_every_steps = 10;
  policy.keep_best = 1;
  policy.metric = "loss";
  ASSERT_TRUE(client->SetPolicy("thirty", policy).ok());
  for (int64_t step = 1; step <= 30; ++step) {
    // The loss falls to its minimum at step 17, then rises again.
    Save(*client, "thirty", step, 0.5 + std::abs(static_cast<double>(step) - 17));
    if (step == 5) {
      ASSERT_TRUE(client->Pin("thirty", 5, true).ok());
    }
  }
  const std::set<int64_t> expected = {5, 10, 17, 20, 28, 29, 30};
  EXPECT_EQ(Listed(*client, "thirty"), expected);
  EXPECT_EQ(OnDisk(cluster.storage_dir(), "thirty", 30), expected);
  for (int64_t s = 1; s <= 30; ++s) {
    if (!expected.count(s)) {
      EXPECT_FALSE(Exists(absl::StrCat(cluster.storage_dir(), "/thirty/ckpt-", s))) << s;
    }
  }
  int64_t newest;
  EXPECT_EQ(StateFileSteps(cluster.storage_dir(), "thirty", &newest),
            std::vector<int64_t>(expected.begin(), expected.end()));
  EXPECT_EQ(newest, 30);
  // `list` says which rule keeps each.
  auto list = client->List("thirty");
  ASSERT_TRUE(list.ok());
  std::map<int64_t, std::vector<std::string>> kept;
  for (const auto& c : *list) kept[c.step] = c.kept_by;
  EXPECT_EQ(kept[5], std::vector<std::string>{"pinned"});
  EXPECT_EQ(kept[17], std::vector<std::string>{"keep-best"});
  EXPECT_EQ(kept[20], std::vector<std::string>{"keep-every-steps"});
  EXPECT_EQ(kept[30], (std::vector<std::string>{"keep-last", "keep-every-steps", "newest"}));
  // ... and so does `get`, of one step or of the newest.
  for (int64_t s : {5, 17, 30}) {
    auto one = client->Get("thirty", s);
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ(one->kept_by, kept[s]) << s;
  }
  auto newest_one = client->Get("thirty", std::nullopt);
  ASSERT_TRUE(newest_one.ok()) << newest_one.status();
  EXPECT_EQ(newest_one->kept_by, kept[30]);
  EXPECT_EQ(ReadW(*client, "thirty", 17), 17.0f);

  // Unpinning lets the next gc take step 5; a dry run first only reports.
  ASSERT_TRUE(client->Pin("thirty", 5, false).ok());
  auto dry = client->Gc("thirty", /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(dry->deleted, 0);
  bool would_delete_5 = false;
  for (const auto& d : dry->decisions) {
    if (d.step == 5) would_delete_5 = !d.keep && d.reason.find("no rule keeps it") != std::string::npos;
  }
  EXPECT_TRUE(would_delete_5);
  EXPECT_TRUE(Exists(cluster.storage_dir() + "/thirty/ckpt-5/variables.index"));
  auto gc = client->Gc("thirty", false);
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->deleted, 1);
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/thirty/ckpt-5"));
}

TEST_F(RetentionTest, LoweringKeepLastClearsTheBacklogAtTheNextCommitOrGc) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  RetentionPolicy policy;
  policy.keep_last = 10;
  ASSERT_TRUE(client->SetPolicy("backlog", policy).ok());
  for (int64_t s = 1; s <= 12; ++s) Save(*client, "backlog", s, 1);
  EXPECT_EQ(Listed(*client, "backlog").size(), 10u);
  policy.keep_last = 2;
  ASSERT_TRUE(client->SetPolicy("backlog", policy).ok());
  auto gc = client->Gc("backlog", false);
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->deleted, 8);
  EXPECT_EQ(Listed(*client, "backlog"), (std::set<int64_t>{11, 12}));
  EXPECT_EQ(OnDisk(cluster.storage_dir(), "backlog", 12), (std::set<int64_t>{11, 12}));

  // And at the next commit, without a gc.
  RetentionPolicy none;
  ASSERT_TRUE(client->SetPolicy("backlog2", none).ok());
  for (int64_t s = 1; s <= 6; ++s) Save(*client, "backlog2", s, 1);
  policy.keep_last = 2;
  ASSERT_TRUE(client->SetPolicy("backlog2", policy).ok());
  Save(*client, "backlog2", 7, 1);
  EXPECT_EQ(Listed(*client, "backlog2"), (std::set<int64_t>{6, 7}));
  EXPECT_EQ(OnDisk(cluster.storage_dir(), "backlog2", 7), (std::set<int64_t>{6, 7}));
}

TEST_F(RetentionTest, FilesCairnDidNotWriteSurviveEveryPass) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  RetentionPolicy policy;
  policy.keep_last = 1;
  ASSERT_TRUE(client->SetPolicy("stray", policy).ok());
  Save(*client, "stray", 1, 1);
  const std::string job_dir = cluster.storage_dir() + "/stray";
  testing::WriteFile(job_dir + "/notes.txt", "mine");
  testing::WriteFile(job_dir + "/ckpt-1/variables.data-00000-of-00009", "looks like ours, is not");
  testing::WriteFile(job_dir + "/ckpt-1/README", "also mine");
  for (int64_t s = 2; s <= 4; ++s) Save(*client, "stray", s, 1);
  ASSERT_TRUE(client->Gc("stray", false).ok());
  EXPECT_EQ(testing::ReadFile(job_dir + "/notes.txt"), "mine");
  EXPECT_EQ(testing::ReadFile(job_dir + "/ckpt-1/variables.data-00000-of-00009"),
            "looks like ours, is not");
  EXPECT_EQ(testing::ReadFile(job_dir + "/ckpt-1/README"), "also mine");
  EXPECT_FALSE(Exists(job_dir + "/ckpt-1/variables.index"));
  EXPECT_FALSE(Exists(job_dir + "/ckpt-1/variables.data-00000-of-00001"));
  EXPECT_FALSE(Exists(job_dir + "/ckpt-2"));
  EXPECT_EQ(Listed(*client, "stray"), (std::set<int64_t>{4}));
}

TEST_F(RetentionTest, ACoordinatorKilledMidDeletionFinishesItAfterRestart) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  {
    auto client = Connect(cluster.coordinator());
    RetentionPolicy policy;
    policy.keep_last = 1;
    ASSERT_TRUE(client->SetPolicy("midway", policy).ok());
    Save(*client, "midway", 1, 1);
  }
  cluster.RestartCoordinator({"--crash-at=mid_delete"});
  ASSERT_FALSE(cluster.coordinator().empty());
  std::thread saver([&] {
    // Step 2's commit triggers the deletion of step 1, which crashes midway;
    // the writer retries its report until the restarted coordinator answers.
    auto client = Connect(cluster.coordinator());
    Save(*client, "midway", 2, 1);
  });
  ASSERT_EQ(cluster.coordinator_process().WaitExit(30000), testing::kCrashPointExitCode)
      << "crash point mid_delete not reached (-1000: still running after 30 s)";
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/midway/ckpt-1/variables.index") &&
               Exists(cluster.storage_dir() + "/midway/ckpt-1/variables.data-00000-of-00001"))
      << "the deletion had started";
  cluster.RestartCoordinator();
  ASSERT_FALSE(cluster.coordinator().empty());
  saver.join();
  auto client = Connect(cluster.coordinator());
  EXPECT_EQ(Listed(*client, "midway"), (std::set<int64_t>{2}));
  EXPECT_FALSE(Exists(cluster.storage_dir() + "/midway/ckpt-1"));
  EXPECT_EQ(ReadW(*client, "midway", 2), 2.0f);
  // No record points at missing files: every listed checkpoint verifies.
  for (int64_t s : Listed(*client, "midway")) {
    auto r = testing::Run({testing::BinPath("cairn"), "verify",
                           absl::StrCat(cluster.storage_dir(), "/midway/ckpt-", s, "/variables")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
}

// Files of deleted checkpoints go to ROOT/.cairn-trash and are unlinked off
// the saving caller's path (see CommitRaceTest); what a crash left there is
// emptied when the next coordinator starts. The retention test above checks
// a killed deletion still finishes; this one, that nothing stays behind.
TEST_F(RetentionTest, WhatACrashLeftInTheTrashIsEmptiedAtTheNextStart) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string trash = cluster.storage_dir() + "/.cairn-trash";
  std::filesystem::create_directories(trash + "/00000000000000a1");
  std::filesystem::create_directories(trash + "/00000000000000b2");
  testing::WriteFile(trash + "/00000000000000a1/variables.data-00000-of-00001", "old bytes");
  testing::WriteFile(trash + "/00000000000000a1/variables.index", "old index");
  testing::WriteFile(trash + "/00000000000000b2/_variables.index", "older index");
  cluster.RestartCoordinator();
  ASSERT_FALSE(cluster.coordinator().empty());
  int left = 0;
  if (Exists(trash)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(trash)) left += !e.is_directory();
  }
  EXPECT_EQ(left, 0) << "files left in " << trash;
  EXPECT_FALSE(Exists(trash + "/00000000000000a1"));
}

// A coordinator killed while it writes the TensorFlow state file leaves the
// file's temporary copy behind; the next coordinator to recover removes it
// (found by the model checker: an orphaned "checkpoint.tmp-N").
TEST_F(RetentionTest, AStateFileHalfWrittenByAKilledCoordinatorIsSweptAtRecovery) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  cluster.RestartCoordinator({"--crash-at=state_file_staged"});
  ASSERT_FALSE(cluster.coordinator().empty());
  std::thread saver([&] {
    auto client = Connect(cluster.coordinator());
    Save(*client, "halfway", 1, 1);
  });
  ASSERT_EQ(cluster.coordinator_process().WaitExit(30000), testing::kCrashPointExitCode)
      << "crash point state_file_staged not reached (-1000: still running after 30 s)";
  auto temps = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(cluster.storage_dir() + "/halfway")) {
      const std::string name = e.path().filename().string();
      if (absl::StartsWith(name, "checkpoint.tmp-")) out.push_back(name);
    }
    return out;
  };
  ASSERT_EQ(temps().size(), 1u) << "the crash left the state file's temporary copy";
  cluster.RestartCoordinator();
  ASSERT_FALSE(cluster.coordinator().empty());
  saver.join();
  auto client = Connect(cluster.coordinator());
  EXPECT_EQ(Listed(*client, "halfway"), (std::set<int64_t>{1}));
  int64_t newest = 0;
  EXPECT_EQ(StateFileSteps(cluster.storage_dir(), "halfway", &newest), (std::vector<int64_t>{1}));
  EXPECT_TRUE(temps().empty()) << "left behind: " << absl::StrJoin(temps(), ", ");
}

TEST_F(RetentionTest, ALeasedCheckpointIsKeptUntilItsRestoreEnds) {
  Cluster cluster(dir_.path(), 1);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  RetentionPolicy policy;
  policy.keep_last = 1;
  ASSERT_TRUE(client->SetPolicy("leased", policy).ok());
  Save(*client, "leased", 1, 1);
  auto lease = client->AcquireLease("leased", 1, 60000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  Save(*client, "leased", 2, 1);
  ASSERT_TRUE(client->Gc("leased", false).ok());
  EXPECT_EQ(Listed(*client, "leased"), (std::set<int64_t>{1, 2}));
  auto list = client->List("leased");
  EXPECT_EQ(list->front().kept_by, std::vector<std::string>{"leased"});
  EXPECT_EQ(ReadW(*client, "leased", 1), 1.0f);  // Restore takes and drops its own lease
  ASSERT_TRUE(client->ReleaseLease(*lease).ok());
  auto gc = client->Gc("leased", false);
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->deleted, 1);
  EXPECT_EQ(Listed(*client, "leased"), (std::set<int64_t>{2}));
  EXPECT_EQ(client->AcquireLease("leased", 1, 1000).status().code(), absl::StatusCode::kNotFound);
  const std::string log = testing::ReadFile(cluster.coordinator_log());
  EXPECT_NE(log.find("job=leased step=1 shard=- lease "), std::string::npos) << "Restore took a lease";
}

// Hour-based retention with in-process servers on a fake clock: one
// checkpoint every 40 simulated minutes for two simulated days.
TEST_F(RetentionTest, EveryNHoursWithAFakeClockOverSimulatedDays) {
  FakeClock clock;
  CoordinatorOptions copts;
  copts.db_path = dir_.Join("db");
  copts.storage_uri = dir_.Join("storage");
  copts.clock = &clock;
  copts.writer_timeout_ms = 365LL * 24 * 3600 * 1000;  // the fake clock jumps
  copts.pending_timeout_ms = 365LL * 24 * 3600 * 1000;
  auto coordinator = CoordinatorServer::Start(copts);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  WriterOptions wopts;
  wopts.coordinator = (*coordinator)->address();
  auto writer = WriterServer::Start(wopts);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto client = Connect((*coordinator)->address());
  RetentionPolicy policy;
  policy.keep_every_hours = 5;
  policy.keep_last = 2;
  ASSERT_TRUE(client->SetPolicy("hourly", policy).ok());
  const int64_t minute = 60LL * 1000000;
  std::set<int64_t> expected;
  for (int64_t step = 0; step < 72; ++step) {  // 72 × 40 min = 48 h
    Save(*client, "hourly", step, 1);
    if ((step * 40) % 300 < 40) expected.insert(step);  // first in each 5 h window
    clock.Advance(40 * minute);
  }
  expected.insert({70, 71});
  EXPECT_EQ(Listed(*client, "hourly"), expected);
  EXPECT_EQ(OnDisk(copts.storage_uri, "hourly", 72), expected);
  (*writer)->Shutdown();
  (*coordinator)->Shutdown();
}

}  // namespace
}  // namespace cairn
