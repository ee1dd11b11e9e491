// High availability on etcd with real processes: a 3-member etcd cluster on
// 127.0.0.1, two coordinators sharing its catalog and one storage root, two
// writers and the CLI given both coordinator addresses. The leader is
// SIGKILLed during a multi-shard save, before and after the decision; the
// standby takes over within the lease TTL plus a few seconds; the
// interrupted step ends committed or aborted, never half-visible; every
// committed step restores exactly; the old leader, restarted, stands by.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/etcd.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/tcp_proxy.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::BinPath;
using testing::EtcdCluster;
using testing::FreePort;
using testing::RunResult;
using testing::ServerProcess;

constexpr int kLeaseTtlSeconds = 2;

RunResult Cairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return testing::Run(args);
}

class HaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = std::make_unique<EtcdCluster>(dir_.Join("etcd"), 3, etcd_flags_);
    if (!etcd_->ok()) {
      if (absl::StartsWith(etcd_->why(), "missing dependency")) GTEST_SKIP() << etcd_->why();
      FAIL() << etcd_->why();
    }
    for (int i = 0; i < 2; ++i) addresses_.push_back(absl::StrCat("127.0.0.1:", FreePort()));
    both_ = absl::StrCat(addresses_[0], ",", addresses_[1]);
  }

  std::vector<std::string> CoordinatorArgv(int i) const {
    return {BinPath("cairn-coordinator"),
            "--listen=" + addresses_[static_cast<size_t>(i)],
            "--catalog=" + etcd_->CatalogUri("cairn"),
            "--storage=" + dir_.Join("storage"),
            absl::StrCat("--etcd-lease-ttl=", kLeaseTtlSeconds),
            "--writer-timeout=3",
            "--heartbeat-interval=0.5"};
  }

  // Starts coordinator i without waiting: WaitListening tells when it
  // serves (a standby: once it leads).
  std::unique_ptr<ServerProcess> StartCoordinator(int i) {
    return std::make_unique<ServerProcess>(CoordinatorArgv(i),
                                           dir_.Join(absl::StrCat("coordinator", i, ".log")), /*wait_ms=*/0);
  }

  std::unique_ptr<ServerProcess> StartWriter(int i) {
    return std::make_unique<ServerProcess>(
        std::vector<std::string>{BinPath("cairn-writer"), "--coordinator=" + both_},
        dir_.Join(absl::StrCat("writer", i, ".log")));
  }

  std::string File(int64_t step, int shard) {
    const std::string path = dir_.Join(absl::StrCat("s", step, "-", shard, ".safetensors"));
    std::vector<SafetensorsTensor> infos = {{absl::StrCat("w", shard), DataType::kFloat, {4096}}};
    testing::WriteFile(path, *BuildSafetensorsPrefix(&infos, {}) +
                                 testing::PatternBytes(16384, static_cast<uint32_t>(step * 10 + shard)));
    return path;
  }

  RunResult SaveShard(int64_t step, int shard, int shards) {
    return Cairn({"save", "--coordinator=" + both_, "--job=j", absl::StrCat("--step=", step),
                  absl::StrCat("--shard=", shard, "/", shards), "--from=" + File(step, shard)});
  }

  // Every shard of `step` restores exactly (the files as saved).
  void ExpectRestoresExactly(int64_t step, int shards) {
    const std::string to = dir_.Join(absl::StrCat("restored-", step, ".safetensors"));
    RunResult r = Cairn({"restore", "--coordinator=" + both_, "--job=j", absl::StrCat("--step=", step),
                         "--to=" + to});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = testing::ReadSafetensorsTensors(to);
    ASSERT_EQ(got.size(), static_cast<size_t>(shards));
    for (int s = 0; s < shards; ++s) {
      EXPECT_EQ(got.at(absl::StrCat("w", s)), testing::PatternBytes(16384, static_cast<uint32_t>(step * 10 + s)))
          << "step " << step << " shard " << s;
    }
  }

  // The committed steps of job j, per `cairn list --json`.
  std::string ListJson() { return Cairn({"list", "--coordinator=" + both_, "--job=j", "--json"}).out; }

  std::vector<std::string> etcd_flags_;
  testing::TempDir dir_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::vector<std::string> addresses_;
  std::string both_;
};

TEST_F(HaTest, TheStandbyTakesOverWhenTheLeaderIsKilledMidSave) {
  auto leader = StartCoordinator(0);
  ASSERT_TRUE(leader->WaitListening(30000)) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto standby = StartCoordinator(1);
  // The standby waits; it does not serve.
  EXPECT_FALSE(standby->WaitListening(2000));
  auto w0 = StartWriter(0);
  auto w1 = StartWriter(1);
  ASSERT_FALSE(w0->address().empty());
  ASSERT_FALSE(w1->address().empty());

  // Step 1 commits through the first leader.
  ASSERT_EQ(SaveShard(1, 0, 2).exit_code, 0);
  RunResult last = SaveShard(1, 1, 2);
  ASSERT_EQ(last.exit_code, 0) << last.err;
  ASSERT_TRUE(absl::StrContains(last.out, "committed")) << last.out;

  // Step 2: one of two shards durable, then the leader dies (before the
  // decision).
  ASSERT_EQ(SaveShard(2, 0, 2).exit_code, 0);
  const auto killed_at = std::chrono::steady_clock::now();
  leader->Kill();
  ASSERT_TRUE(standby->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  auto new_leader = std::move(standby);
  ASSERT_FALSE(new_leader->address().empty()) << testing::ReadFile(dir_.Join("coordinator1.log"));
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(kLeaseTtlSeconds + 8));

  // The interrupted step is pending under the new leader: its last shard
  // completes it (the writers follow the new leader).
  RunResult finish = SaveShard(2, 1, 2);
  ASSERT_EQ(finish.exit_code, 0) << finish.err;
  EXPECT_TRUE(absl::StrContains(finish.out, "committed")) << finish.out;
  ExpectRestoresExactly(1, 2);
  ExpectRestoresExactly(2, 2);

  // The old leader, restarted, stands by while the new one leads.
  auto restarted = StartCoordinator(0);
  EXPECT_FALSE(restarted->WaitListening(3000));
  ASSERT_EQ(SaveShard(3, 0, 1).exit_code, 0);
  ExpectRestoresExactly(3, 1);
  new_leader->Kill();
  ASSERT_TRUE(restarted->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  auto third = std::move(restarted);
  ASSERT_FALSE(third->address().empty());
  for (int64_t step : {1, 2, 3}) ExpectRestoresExactly(step, step == 3 ? 1 : 2);
}

TEST_F(HaTest, ALeaderKilledAfterTheDecisionLeavesTheStepCommittedOrAborted) {
  // The leader crashes right after deciding to commit (its decision is in
  // etcd, the publishing is not done): the standby finishes the commit.
  std::vector<std::string> argv = CoordinatorArgv(0);
  argv.push_back("--crash-at=after_decide");
  auto leader = std::make_unique<ServerProcess>(argv, dir_.Join("coordinator0.log"));
  ASSERT_FALSE(leader->address().empty()) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto standby = StartCoordinator(1);
  auto w0 = StartWriter(0);
  auto w1 = StartWriter(1);
  ASSERT_FALSE(w0->address().empty());
  ASSERT_FALSE(w1->address().empty());

  ASSERT_EQ(SaveShard(5, 0, 2).exit_code, 0);
  RunResult last = SaveShard(5, 1, 2);  // its report reaches the decision; the leader exits
  EXPECT_EQ(leader->WaitExit(10000), testing::kCrashPointExitCode);
  ASSERT_TRUE(standby->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  auto new_leader = std::move(standby);
  ASSERT_FALSE(new_leader->address().empty()) << testing::ReadFile(dir_.Join("coordinator1.log"));
  // Recovery finished the decided commit: step 5 is committed and whole.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!absl::StrContains(ListJson(), "\"step\": 5") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(absl::StrContains(ListJson(), "\"step\": 5")) << ListJson() << last.err;
  ExpectRestoresExactly(5, 2);
}

TEST_F(HaTest, AFrozenLeaderIsDeposedAndCannotWriteWhenItWakes) {
  // A leader cut off from etcd longer than its lease (here: stopped with
  // SIGSTOP, as a long pause or partition looks from outside) loses the
  // leadership; when it runs again it must not write, and it exits.
  auto leader = StartCoordinator(0);
  ASSERT_TRUE(leader->WaitListening(30000));
  auto standby = StartCoordinator(1);
  auto w0 = StartWriter(0);
  ASSERT_FALSE(w0->address().empty());
  ASSERT_EQ(SaveShard(1, 0, 1).exit_code, 0);

  ::kill(leader->pid(), SIGSTOP);
  ASSERT_TRUE(standby->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  auto new_leader = std::move(standby);
  ASSERT_FALSE(new_leader->address().empty());
  // (A frozen process still holds its clients' TCP connections: they would
  // wait on it until their deadline. It wakes first here.)
  ::kill(leader->pid(), SIGCONT);
  // It finds its lease gone (or its first write fenced) and stops.
  EXPECT_EQ(leader->WaitExit(3000 * kLeaseTtlSeconds), 3);
  EXPECT_TRUE(absl::StrContains(testing::ReadFile(dir_.Join("coordinator0.log")), "lost the leadership"));
  // The clients and the writer follow the new leader; nothing the old one
  // held changed what is committed.
  ASSERT_EQ(SaveShard(2, 0, 1).exit_code, 0);
  ASSERT_EQ(SaveShard(3, 0, 1).exit_code, 0);
  for (int64_t step : {1, 2, 3}) ExpectRestoresExactly(step, 1);
}

// etcd keeps its quorum with one member of three down: the leader leads
// on, saves commit, nothing steps down, whichever member goes.
TEST_F(HaTest, KillingOneEtcdMemberChangesNothing) {
  auto leader = StartCoordinator(0);
  ASSERT_TRUE(leader->WaitListening(30000)) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto standby = StartCoordinator(1);
  auto w0 = StartWriter(0);
  ASSERT_FALSE(w0->address().empty());
  for (int m = 0; m < 3; ++m) {
    etcd_->Kill(m);
    const int64_t step = m + 1;
    ASSERT_EQ(SaveShard(step, 0, 2).exit_code, 0) << "member " << m << " down";
    RunResult last = SaveShard(step, 1, 2);
    ASSERT_EQ(last.exit_code, 0) << "member " << m << " down: " << last.err;
    EXPECT_TRUE(absl::StrContains(last.out, "committed")) << last.out;
    etcd_->Restart(m);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  EXPECT_TRUE(leader->running()) << testing::ReadFile(dir_.Join("coordinator0.log"));
  EXPECT_FALSE(standby->WaitListening(0))
      << "the standby took over";
  for (int64_t step = 1; step <= 3; ++step) ExpectRestoresExactly(step, 2);
}

// A network partition between the leader and etcd, while its clients and
// writers still reach it: it stops serving once it cannot renew its lease
// (fail-stop, exit status 3), the standby takes over, and the catalog writes
// it had in flight, held in the network and delivered after the partition
// heals, change nothing (they are fenced on its leadership).
TEST_F(HaTest, ALeaderPartitionedFromEtcdStepsDownAndItsDelayedWritesAreFenced) {
  std::vector<std::unique_ptr<testing::TcpProxy>> links;
  std::vector<std::string> via;
  for (const std::string& e : etcd_->endpoints()) {
    links.push_back(std::make_unique<testing::TcpProxy>(e));
    ASSERT_FALSE(links.back()->address().empty());
    via.push_back(links.back()->address());
  }
  std::vector<std::string> argv = CoordinatorArgv(0);
  for (std::string& a : argv) {
    if (absl::StartsWith(a, "--catalog=")) a = absl::StrCat("--catalog=etcd://", absl::StrJoin(via, ","), "/cairn");
  }
  auto leader = std::make_unique<ServerProcess>(argv, dir_.Join("coordinator0.log"));
  ASSERT_FALSE(leader->address().empty()) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto standby = StartCoordinator(1);
  auto w0 = StartWriter(0);
  ASSERT_FALSE(w0->address().empty());
  ASSERT_EQ(SaveShard(1, 0, 1).exit_code, 0);
  ASSERT_EQ(SaveShard(2, 0, 2).exit_code, 0);

  for (auto& link : links) link->set_mode(testing::TcpProxy::Mode::kHold);
  // The step's last shard, sent now: it reaches the leader, whose catalog
  // writes are held in the network.
  auto during = std::async(std::launch::async, [this] { return SaveShard(2, 1, 2); });
  EXPECT_EQ(leader->WaitExit(1000 * (kLeaseTtlSeconds + 8)), 3)
      << testing::ReadFile(dir_.Join("coordinator0.log"));
  ASSERT_TRUE(standby->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  auto new_leader = std::move(standby);
  ASSERT_FALSE(new_leader->address().empty()) << testing::ReadFile(dir_.Join("coordinator1.log"));
  // Heal: what the old leader sent is delivered now.
  for (auto& link : links) link->set_mode(testing::TcpProxy::Mode::kPass);
  RunResult last = during.get();
  std::this_thread::sleep_for(std::chrono::seconds(1));

  // The new leader leads on; what is committed is whole. Step 2 was either
  // committed (its last shard retried through the new leader) or not at all.
  EXPECT_FALSE(absl::StrContains(testing::ReadFile(dir_.Join("coordinator1.log")), "lost the leadership"));
  ExpectRestoresExactly(1, 1);
  if (last.exit_code == 0) {
    EXPECT_TRUE(absl::StrContains(last.out, "committed")) << last.out;
    ExpectRestoresExactly(2, 2);
  } else {
    EXPECT_FALSE(absl::StrContains(ListJson(), "\"step\": 2")) << ListJson() << last.err;
  }
  ASSERT_EQ(SaveShard(3, 0, 1).exit_code, 0);
  ExpectRestoresExactly(3, 1);
}

// A call made while no coordinator leads (the leader just died, the
// standby still waits for its lease to expire) is tried again until the new
// leader answers, when the client was given both addresses. It used to fail
// at once: "coordinator ... unreachable".
TEST_F(HaTest, ACallDuringTheFailoverReachesTheNewLeader) {
  auto leader = StartCoordinator(0);
  ASSERT_TRUE(leader->WaitListening(30000)) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto standby = StartCoordinator(1);
  auto w0 = StartWriter(0);
  ASSERT_FALSE(w0->address().empty());
  ASSERT_EQ(SaveShard(1, 0, 1).exit_code, 0);

  leader->Kill();
  // At once, before the standby leads (its wait is the lease TTL).
  RunResult list = Cairn({"list", "--coordinator=" + both_, "--job=j", "--json"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "\"step\": 1")) << list.out;
  RunResult get = Cairn({"restore", "--coordinator=" + both_, "--job=j", "--step=1",
                         "--to=" + dir_.Join("during-failover.safetensors")});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  ASSERT_TRUE(standby->WaitListening(1000 * (kLeaseTtlSeconds + 10)));
  // The new leader says so, and how long taking over took.
  const std::string log = testing::ReadFile(dir_.Join("coordinator1.log"));
  EXPECT_TRUE(absl::StrContains(log, "leading: won the election on etcd://")) << log;
  EXPECT_TRUE(absl::StrContains(log, "catalog recovered in ")) << log;
  // With one address, a coordinator that is not there fails the call at once.
  const auto t0 = std::chrono::steady_clock::now();
  RunResult one = Cairn({"list", "--coordinator=" + addresses_[0], "--job=j"});
  EXPECT_NE(one.exit_code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// A step's size is not bounded by etcd's largest request. Each shard report
// writes a small record of its own; when the step's one record held every
// shard, it outgrew etcd's limit (1.5 MiB by default: about 4,000 shards)
// and the step could never commit. Here the limit is 128 KiB, so 600 shards
// show it.
class HaLargeStepTest : public HaTest {
 protected:
  HaLargeStepTest() { etcd_flags_ = {"--max-request-bytes=131072"}; }
};

TEST_F(HaLargeStepTest, AStepOfManyShardsCommits) {
  constexpr int kShards = 600;
  constexpr int64_t kStep = 4;
  auto leader = StartCoordinator(0);
  ASSERT_TRUE(leader->WaitListening(30000)) << testing::ReadFile(dir_.Join("coordinator0.log"));
  auto w0 = StartWriter(0);
  ASSERT_FALSE(w0->address().empty());
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&] {
      ClientOptions o;
      o.coordinator = both_;
      auto client = Client::Connect(o);
      if (!client.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back(std::string(client.status().message()));
        return;
      }
      for (int i = next.fetch_add(1); i < kShards; i = next.fetch_add(1)) {
        SaveShardOptions so;
        so.job = "j";
        so.step = kStep;
        so.shard_index = i;
        so.num_shards = kShards;
        const std::string data = testing::PatternBytes(16384, static_cast<uint32_t>(kStep * 10 + i));
        SaveTensor tensor;
        tensor.name = absl::StrCat("w", i);
        tensor.dtype = DataType::kFloat;
        tensor.shape = {4096};
        tensor.data = data;
        auto r = (*client)->SaveShard(so, {tensor});
        if (!r.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back(absl::StrCat("shard ", i, ": ", r.status().message()));
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " shards failed; first: " << errors.front();
  EXPECT_TRUE(absl::StrContains(ListJson(), "\"step\": 4")) << ListJson();
  ExpectRestoresExactly(kStep, kShards);
}

}  // namespace
}  // namespace cairn
