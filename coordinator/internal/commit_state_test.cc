// The commit state machine's edges, the writer registry's liveness rules and
// the per-job locks' bound, as units.
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "coordinator/clock.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/job_locks.h"
#include "coordinator/internal/writer_registry.h"
#include "proto/cairn.pb.h"
#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

TEST(CommitState, ExactlyTheDocumentedEdges) {
  const v1::CheckpointState all[] = {v1::PENDING, v1::MERGING, v1::COMMITTING, v1::COMMITTED,
                                     v1::ABORTING, v1::ABORTED, v1::DELETING};
  const std::set<std::pair<v1::CheckpointState, v1::CheckpointState>> edges = {
      {v1::PENDING, v1::MERGING},     {v1::PENDING, v1::ABORTING},   {v1::MERGING, v1::COMMITTING},
      {v1::MERGING, v1::ABORTING},    {v1::COMMITTING, v1::COMMITTED}, {v1::COMMITTED, v1::DELETING},
      {v1::ABORTING, v1::ABORTED}};
  for (auto from : all) {
    for (auto to : all) {
      EXPECT_EQ(CanTransition(from, to), edges.count({from, to}) > 0)
          << StateName(from) << " -> " << StateName(to);
    }
  }
  v1::CheckpointRecord r;
  r.set_state(v1::COMMITTING);
  EXPECT_EQ(Transition(&r, v1::ABORTING).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.state(), v1::COMMITTING);  // unchanged
  EXPECT_TRUE(Transition(&r, v1::COMMITTED).ok());
  EXPECT_TRUE(Undecided(v1::PENDING) && Undecided(v1::MERGING) && !Undecided(v1::COMMITTING));
}

TEST(WriterRegistry, LiveOnlyAfterAHeartbeatAndUnreachableUntilTheNext) {
  FakeClock clock;
  WriterRegistry registry(&clock, 3000);
  const std::string a = registry.Register("127.0.0.1:1", "w-a");
  EXPECT_EQ(registry.Register("127.0.0.1:1", "w-other"), a) << "same address, same id";
  EXPECT_FALSE(registry.Assign().ok()) << "registered but never beat: not live";
  ASSERT_TRUE(registry.Heartbeat(a));
  const std::string b = registry.Register("127.0.0.1:2", "w-b");
  ASSERT_TRUE(registry.Heartbeat(b));
  // A client could not reach a: only b gets shards until a beats again.
  registry.MarkUnreachable("127.0.0.1:1");
  for (int i = 0; i < 4; ++i) {
    auto c = registry.Assign();
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->id, b);
  }
  clock.Advance(1000);
  ASSERT_TRUE(registry.Heartbeat(a));
  auto c = registry.Assign();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->id, a) << "least loaded once live again";
  // Silence past the timeout: dead.
  clock.Advance(3001 * 1000);
  EXPECT_FALSE(registry.Assign().ok());
  EXPECT_FALSE(registry.Heartbeat("w-unknown"));
}

// A writer's features are what its last heartbeat announced: a writer only
// recovered from the catalog (a restarted coordinator) has none until then,
// so no client sends it what it may not understand.
TEST(WriterRegistry, AChoiceCarriesTheFeaturesOfTheWritersLastHeartbeat) {
  FakeClock clock;
  WriterRegistry registry(&clock, 3000);
  registry.Recover("w-a", "127.0.0.1:1");
  auto c = registry.Assign();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->features, 0u);
  WriterRegistry::Load load;
  load.features = v1::WRITER_FEATURE_TENSOR_BATCHES;
  ASSERT_TRUE(registry.Heartbeat("w-a", load));
  c = registry.Assign();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->features, static_cast<uint32_t>(v1::WRITER_FEATURE_TENSOR_BATCHES));
  ASSERT_TRUE(registry.Heartbeat("w-a", WriterRegistry::Load()));  // downgraded in place
  EXPECT_EQ(registry.Assign()->features, 0u);
  // Restarted at the same address (maybe an older binary): nothing is
  // assumed of it until it beats, although its last beat keeps it live.
  const std::string b = registry.Register("127.0.0.1:2", "w-b");
  ASSERT_TRUE(registry.Heartbeat(b, load));
  registry.MarkUnreachable("127.0.0.1:1");
  EXPECT_EQ(registry.Assign()->features, static_cast<uint32_t>(v1::WRITER_FEATURE_TENSOR_BATCHES));
  EXPECT_EQ(registry.Register("127.0.0.1:2", "w-b2"), b);
  auto again = registry.Assign();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, b);
  EXPECT_EQ(again->features, 0u);
}

// What a heartbeat reports (streams, bytes written) is kept for the status
// page; a beat without a report clears it.
TEST(WriterRegistry, KeepsTheLoadHeartbeatsReport) {
  FakeClock clock;
  WriterRegistry registry(&clock, 3000);
  const std::string a = registry.Register("127.0.0.1:1", "w-a");
  ASSERT_TRUE(registry.Heartbeat(a, WriterRegistry::Load{2, 4096}));
  auto snapshot = registry.Snapshot();
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].load.active_streams, 2);
  EXPECT_EQ(snapshot[0].load.bytes_written, 4096u);
  EXPECT_EQ(snapshot[0].last_heartbeat_micros, clock.NowMicros());
  ASSERT_TRUE(registry.Heartbeat(a));
  EXPECT_EQ(registry.Snapshot()[0].load.bytes_written, 0u);
}

TEST(JobLocks, UnknownNamesLeaveNothingBehind) {
  JobLocks locks;
  for (int i = 0; i < 10000; ++i) {
    auto guard = locks.Lock("job-" + std::to_string(i));
  }
  EXPECT_EQ(locks.size(), 0u);
  // Still mutual exclusion while held.
  int inside = 0, max_inside = 0;
  std::mutex m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto guard = locks.Lock("same");
        {
          std::lock_guard<std::mutex> l(m);
          max_inside = std::max(max_inside, ++inside);
        }
        std::lock_guard<std::mutex> l(m);
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(max_inside, 1);
  EXPECT_EQ(locks.size(), 0u);
}

}  // namespace
}  // namespace internal
}  // namespace cairn
