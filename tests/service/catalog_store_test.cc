// The catalog's stores (coordinator/internal/kv_store.h) against one
// conformance suite: RocksDB, and etcd on a real 3-member cluster started on
// 127.0.0.1. Then etcd's leadership: one leader at a time, a standby takes
// over when the leader goes, and a deposed leader's writes are refused
// (fencing), also with one etcd member down.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/internal/catalog.h"
#include "coordinator/internal/kv_store.h"
#include "gtest/gtest.h"
#include "tests/testing/etcd.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace internal {
namespace {

using testing::EtcdCluster;
using testing::TempDir;

// One etcd cluster for the whole binary (starting one takes a few
// seconds), stopped when the tests end.
class SharedEtcdEnvironment : public ::testing::Environment {
 public:
  EtcdCluster* Get() {
    if (!cluster_) {
      dir_ = std::make_unique<TempDir>();
      cluster_ = std::make_unique<EtcdCluster>(dir_->path(), 3);
    }
    return cluster_.get();
  }
  void TearDown() override {
    cluster_.reset();
    dir_.reset();
  }

 private:
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<EtcdCluster> cluster_;
};

SharedEtcdEnvironment* const kSharedEtcd = static_cast<SharedEtcdEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new SharedEtcdEnvironment));

EtcdCluster* SharedEtcd() { return kSharedEtcd->Get(); }

std::string UniquePrefix() {
  static std::atomic<int> n{0};
  return absl::StrCat("test-", ::getpid(), "-", n.fetch_add(1));
}

EtcdStoreOptions EtcdOptions(const std::string& prefix, const std::string& candidate) {
  EtcdStoreOptions o;
  o.endpoints = SharedEtcd()->endpoints();
  o.prefix = prefix;
  o.candidate = candidate;
  o.lease_ttl_seconds = 2;
  o.call_timeout_ms = 5000;
  return o;
}

class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "rocksdb") {
      auto s = OpenRocksDbStore(dir_.Join("db"));
      ASSERT_TRUE(s.ok()) << s.status();
      store_ = *std::move(s);
    } else {
      if (!SharedEtcd()->ok()) GTEST_SKIP() << SharedEtcd()->why();
      auto s = OpenEtcdStore(EtcdOptions(UniquePrefix(), "c1"));
      ASSERT_TRUE(s.ok()) << s.status();
      store_ = *std::move(s);
    }
  }
  TempDir dir_;
  std::unique_ptr<KvStore> store_;
};

TEST_P(StoreConformance, GetPutOverwriteDelete) {
  auto absent = store_->Get("a");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_FALSE(absent->has_value());
  const std::string binary("x\0y\xff", 4);
  ASSERT_TRUE(store_->Put("a", binary).ok());
  EXPECT_EQ(store_->Get("a")->value(), binary);
  ASSERT_TRUE(store_->Put("a", "second").ok());
  EXPECT_EQ(store_->Get("a")->value(), "second");
  ASSERT_TRUE(store_->Delete("a").ok());
  EXPECT_FALSE(store_->Get("a")->has_value());
  EXPECT_TRUE(store_->Delete("never-there").ok());
}

TEST_P(StoreConformance, ScanIsAscendingAndStaysInsideItsPrefix) {
  // More keys than one etcd page (1000), written out of order.
  constexpr int kKeys = 1203;
  for (int i = kKeys - 1; i >= 0; --i) {
    ASSERT_TRUE(store_->Put(absl::StrFormat("ckpt/job/%05d", i), absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(store_->Put("ckpt/job2/00001", "other job").ok());
  ASSERT_TRUE(store_->Put("ckpt/jo", "shorter").ok());
  auto rows = store_->Scan("ckpt/job/");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ((*rows)[static_cast<size_t>(i)].first, absl::StrFormat("ckpt/job/%05d", i));
    EXPECT_EQ((*rows)[static_cast<size_t>(i)].second, absl::StrCat(i));
  }
  EXPECT_EQ(store_->Scan("ckpt/")->size(), static_cast<size_t>(kKeys + 2));
  EXPECT_TRUE(store_->Scan("nothing/")->empty());
}

TEST_P(StoreConformance, CatalogRecordsRoundTrip) {
  Catalog catalog(std::move(store_));
  v1::CheckpointRecord r;
  r.set_job("bert");
  r.set_step(7);
  r.set_state(v1::COMMITTED);
  ASSERT_TRUE(catalog.PutCheckpoint(r).ok());
  r.set_step(12);
  ASSERT_TRUE(catalog.PutCheckpoint(r).ok());
  r.set_job("bert2");
  ASSERT_TRUE(catalog.PutCheckpoint(r).ok());
  auto listed = catalog.ListCheckpoints("bert");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].step(), 7);
  EXPECT_EQ((*listed)[1].step(), 12);
  EXPECT_EQ(catalog.ListCheckpoints("")->size(), 3u);
  EXPECT_TRUE(absl::IsNotFound(catalog.GetCheckpoint("bert", 8).status()));
  ASSERT_TRUE(catalog.PutMeta("catalog_id", "abc").ok());
  EXPECT_EQ(*catalog.GetMeta("catalog_id"), "abc");
}

TEST_P(StoreConformance, ABatchIsAllOrNothingAndDeletesPrefixes) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_->Put(absl::StrCat("shard/j/1/", i), "x").ok());
  ASSERT_TRUE(store_->Put("shard/j/10/0", "another step").ok());
  ASSERT_TRUE(store_->Put("ckpt/j/1", "old").ok());
  absl::Status s = store_->Write({KvWrite::Put("ckpt/j/1", "new"), KvWrite::DeletePrefix("shard/j/1/"),
                                  KvWrite::Put("other", "y")});
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->Get("ckpt/j/1")->value(), "new");
  EXPECT_EQ(store_->Get("other")->value(), "y");
  EXPECT_TRUE(store_->Scan("shard/j/1/")->empty());
  EXPECT_EQ(store_->Get("shard/j/10/0")->value(), "another step");  // not under the prefix
  ASSERT_TRUE(store_->Write({KvWrite::Delete("other"), KvWrite::Delete("never-there")}).ok());
  EXPECT_FALSE(store_->Get("other")->has_value());

  // Too large a batch is refused whole: nothing of it is written.
  std::vector<KvWrite> big;
  for (size_t i = 0; i <= KvStore::kMaxBatch; ++i) big.push_back(KvWrite::Put(absl::StrCat("big/", i), "v"));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Write(big)));
  EXPECT_TRUE(store_->Scan("big/")->empty());
  big.pop_back();
  ASSERT_TRUE(store_->Write(big).ok());
  EXPECT_EQ(store_->Scan("big/")->size(), KvStore::kMaxBatch);
}

// Shards live under their own keys: a shard report writes one small record
// whatever the step's size, and a record keeps no shards of its own.
TEST_P(StoreConformance, ShardsLiveUnderTheirOwnKeys) {
  KvStore* raw = store_.get();
  Catalog catalog(std::move(store_));
  v1::CheckpointRecord r;
  r.set_job("big");
  r.set_step(3);
  r.set_state(v1::PENDING);
  r.set_num_shards(5000);
  v1::ShardRecord shard;
  shard.set_index(4321);
  shard.set_token("t4321");
  shard.set_durable(true);
  ASSERT_TRUE(catalog.PutCheckpointAndShard(r, shard).ok());
  shard.set_index(7);
  shard.set_token("t7");
  ASSERT_TRUE(catalog.PutShard("big", 3, shard).ok());
  // The record's bytes do not grow with its shards.
  EXPECT_LT(raw->Get("ckpt/big/00000000000000000003")->value().size(), 64u);

  auto header = catalog.GetCheckpoint("big", 3);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->shards_size(), 0);
  ASSERT_TRUE(catalog.LoadShards(&*header).ok());
  ASSERT_EQ(header->shards_size(), 5000);
  EXPECT_EQ(header->shards(4321).token(), "t4321");
  EXPECT_EQ(header->shards(7).token(), "t7");
  EXPECT_EQ(header->shards(8).index(), 8);
  EXPECT_TRUE(header->shards(8).token().empty());
  EXPECT_EQ(catalog.GetShard("big", 3, 7)->token(), "t7");
  EXPECT_TRUE(catalog.GetShard("big", 3, 9)->token().empty());
  // Writing the whole record back does not write its shards into it.
  ASSERT_TRUE(catalog.PutCheckpoint(*header).ok());
  EXPECT_LT(raw->Get("ckpt/big/00000000000000000003")->value().size(), 64u);

  // An aborted record drops its shards (a later incarnation of the step
  // must not find them); a deleted one too.
  r.set_state(v1::ABORTED);
  ASSERT_TRUE(catalog.PutCheckpointDroppingShards(r).ok());
  EXPECT_TRUE(catalog.GetShard("big", 3, 7)->token().empty());
  ASSERT_TRUE(catalog.PutShard("big", 3, shard).ok());
  ASSERT_TRUE(catalog.DeleteCheckpoint("big", 3).ok());
  EXPECT_TRUE(raw->Scan("shard/big/")->empty());
  EXPECT_TRUE(absl::IsNotFound(catalog.GetCheckpoint("big", 3).status()));
}

// The inventory of a checkpoint of many shards is larger than etcd takes in
// one request (1.5 MiB by default): such a commit used to fail with
// "received message larger than max" on etcd. It is stored in chunks.
TEST_P(StoreConformance, ALargeInventoryIsStoredInChunksAndReadsBackWhole) {
  KvStore* raw = store_.get();
  Catalog catalog(std::move(store_));
  v1::CheckpointRecord r;
  r.set_job("wide");
  r.set_step(5);
  r.set_state(v1::COMMITTED);
  r.set_num_shards(20000);
  for (int i = 0; i < 20000; ++i) {
    v1::FileInfo* f = r.add_files();
    f->set_path(absl::StrFormat("wide/ckpt-5/variables.data-%05d-of-20000", i));
    f->set_size(1000 + i);
    f->set_crc32c(static_cast<uint32_t>(i));
    f->set_sha256(std::string(32, static_cast<char>(i)));
  }
  absl::Status put = catalog.PutCheckpoint(r);
  ASSERT_TRUE(put.ok()) << put;
  EXPECT_LT(raw->Get("ckpt/wide/00000000000000000005")->value().size(), 200u);
  auto got = catalog.GetCheckpoint("wide", 5);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->files_size(), 20000);
  EXPECT_EQ(got->inventory_chunks(), 0);
  for (int i : {0, 999, 1000, 19999}) {
    EXPECT_EQ(got->files(i).path(), r.files(i).path());
    EXPECT_EQ(got->files(i).sha256(), r.files(i).sha256());
  }
  auto listed = catalog.ListCheckpoints("wide");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].files_size(), 20000);
  // Rewritten (pinned, say) it stays whole; deleted, nothing of it is left.
  got->set_pinned(true);
  ASSERT_TRUE(catalog.PutCheckpoint(*got).ok());
  EXPECT_EQ(catalog.GetCheckpoint("wide", 5)->files_size(), 20000);
  ASSERT_TRUE(catalog.DeleteCheckpoint("wide", 5).ok());
  EXPECT_TRUE(raw->Scan("files/")->empty());
}

// A record written by an older version, with its shards inside, reads as
// it was and moves its shards out before anything rewrites it.
TEST_P(StoreConformance, InlineShardsOfOlderVersionsMigrate) {
  KvStore* raw = store_.get();
  Catalog catalog(std::move(store_));
  v1::CheckpointRecord old;
  old.set_job("legacy");
  old.set_step(9);
  old.set_state(v1::PENDING);
  old.set_num_shards(250);  // more than one batch of shard writes
  for (int i = 0; i < 250; ++i) {
    v1::ShardRecord* s = old.add_shards();
    s->set_index(i);
    s->set_token(absl::StrCat("t", i));
    s->set_durable(i % 2 == 0);
  }
  ASSERT_TRUE(raw->Put("ckpt/legacy/00000000000000000009", old.SerializeAsString()).ok());
  EXPECT_EQ(catalog.GetShard("legacy", 9, 3)->token(), "t3");
  auto read = catalog.GetCheckpoint("legacy", 9);
  ASSERT_TRUE(read.ok());
  ASSERT_TRUE(catalog.LoadShards(&*read).ok());
  ASSERT_EQ(read->shards_size(), 250);
  EXPECT_EQ(read->shards(249).token(), "t249");

  ASSERT_TRUE(catalog.MigrateInlineShards(*read).ok());
  EXPECT_EQ(catalog.GetCheckpoint("legacy", 9)->shards_size(), 0);
  EXPECT_EQ(raw->Scan("shard/legacy/00000000000000000009/")->size(), 250u);
  auto migrated = catalog.GetCheckpoint("legacy", 9);
  ASSERT_TRUE(catalog.LoadShards(&*migrated).ok());
  for (int i = 0; i < 250; ++i) {
    EXPECT_EQ(migrated->shards(i).token(), absl::StrCat("t", i));
    EXPECT_EQ(migrated->shards(i).durable(), i % 2 == 0);
  }
}

// The test cluster itself: a member restarted from a thread that then ends
// (the model checker's fault thread) must keep running. Members were started
// with PR_SET_PDEATHSIG, which fires when the forking *thread* exits: such
// members died, etcd lost its quorum, and no coordinator could lead again.
TEST(EtcdClusterTest, AMemberRestartedFromAnotherThreadOutlivesIt) {
  TempDir dir;
  EtcdCluster cluster(dir.path(), 1);
  if (!cluster.ok()) GTEST_SKIP() << cluster.why();
  std::thread([&] { cluster.Restart(0); }).join();
  bool healthy = false;
  for (int i = 0; i < 50 && !healthy; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    healthy = testing::Run({"/usr/bin/etcdctl", "--endpoints=" + cluster.endpoints()[0],
                            "--command-timeout=2s", "endpoint", "health"})
                  .exit_code == 0;
  }
  EXPECT_TRUE(healthy) << "the restarted member died with the thread that started it";
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreConformance, ::testing::Values("rocksdb", "etcd"),
                         [](const auto& info) { return info.param; });

class EtcdLeadership : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SharedEtcd()->ok()) GTEST_SKIP() << SharedEtcd()->why();
  }
};

TEST_F(EtcdLeadership, OneLeaderAtATimeAndTheStandbyTakesOver) {
  const std::string prefix = UniquePrefix();
  auto first = OpenEtcdStore(EtcdOptions(prefix, "coordinator-a"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Put("k", "from a").ok());

  std::promise<std::string> seen_leader;
  std::atomic<bool> reported{false};
  EtcdStoreOptions b = EtcdOptions(prefix, "coordinator-b");
  b.on_standby = [&](const std::string& leader) {
    if (!reported.exchange(true)) seen_leader.set_value(leader);
  };
  auto second = std::async(std::launch::async, [b] { return OpenEtcdStore(b); });
  // b waits as a standby and names the leader.
  auto leader = seen_leader.get_future();
  ASSERT_EQ(leader.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(leader.get(), "coordinator-a");
  EXPECT_EQ(second.wait_for(std::chrono::milliseconds(1500)), std::future_status::timeout);

  // a goes (its lease is revoked on close): b leads, and sees a's data.
  const auto t0 = std::chrono::steady_clock::now();
  first->reset();
  ASSERT_EQ(second.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto b_store = second.get();
  ASSERT_TRUE(b_store.ok()) << b_store.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ((*b_store)->Get("k")->value(), "from a");
  EXPECT_TRUE((*b_store)->Put("k", "from b").ok());
}

TEST_F(EtcdLeadership, ADeposedLeaderCannotWrite) {
  const std::string prefix = UniquePrefix();
  std::promise<absl::Status> lost;
  std::atomic<bool> lost_once{false};
  EtcdStoreOptions a = EtcdOptions(prefix, "coordinator-a");
  a.on_lost_leadership = [&](const absl::Status& why) {
    if (!lost_once.exchange(true)) lost.set_value(why);
  };
  auto first = OpenEtcdStore(a);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Put("k", "a1").ok());

  // Another process takes the leadership behind a's back (as after a's lease
  // expired during a partition): the leader key is replaced.
  testing::RunResult del = testing::Run({"/usr/bin/etcdctl", "--endpoints=" + SharedEtcd()->endpoints()[0],
                                         "del", prefix + "/leader"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  auto second = OpenEtcdStore(EtcdOptions(prefix, "coordinator-b"));
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*second)->Put("k", "b1").ok());

  // a's writes are refused, and change nothing.
  absl::Status s = (*first)->Put("k", "a2");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_TRUE(absl::IsFailedPrecondition((*first)->Delete("k")));
  EXPECT_EQ((*second)->Get("k")->value(), "b1");
  auto why = lost.get_future();
  ASSERT_EQ(why.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(why.get().ok());
}

TEST_F(EtcdLeadership, ALeaderThatCannotRenewItsLeaseStepsDown) {
  // A private single-member cluster, paused under the leader: its lease
  // cannot be renewed, so it must give up within the TTL.
  TempDir dir;
  EtcdCluster solo(dir.path(), 1);
  ASSERT_TRUE(solo.ok()) << solo.why();
  std::promise<absl::Status> lost;
  std::atomic<bool> lost_once{false};
  EtcdStoreOptions a;
  a.endpoints = solo.endpoints();
  a.prefix = "solo";
  a.candidate = "coordinator-a";
  a.lease_ttl_seconds = 2;
  a.call_timeout_ms = 1000;
  a.on_lost_leadership = [&](const absl::Status& why) {
    if (!lost_once.exchange(true)) lost.set_value(why);
  };
  auto store = OpenEtcdStore(a);
  ASSERT_TRUE(store.ok()) << store.status();
  solo.Pause(0);
  auto why = lost.get_future();
  const bool stepped_down = why.wait_for(std::chrono::seconds(6)) == std::future_status::ready;
  solo.Resume(0);
  ASSERT_TRUE(stepped_down);
  EXPECT_TRUE(absl::IsFailedPrecondition((*store)->Put("k", "late")));
}

TEST_F(EtcdLeadership, OneMemberDownChangesNothing) {
  TempDir dir;
  EtcdCluster three(dir.path(), 3);
  ASSERT_TRUE(three.ok()) << three.why();
  EtcdStoreOptions a;
  a.endpoints = three.endpoints();
  a.prefix = "three";
  a.candidate = "coordinator-a";
  a.lease_ttl_seconds = 3;
  auto store = OpenEtcdStore(a);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put("k", "1").ok());
  for (int i = 0; i < 3; ++i) {
    three.Kill(i);
    ASSERT_TRUE((*store)->Put("k", absl::StrCat("with member ", i, " down")).ok()) << i;
    EXPECT_EQ((*store)->Get("k")->value(), absl::StrCat("with member ", i, " down"));
    three.Restart(i);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace
}  // namespace internal
}  // namespace cairn
