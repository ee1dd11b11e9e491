#include "coordinator/internal/retention.h"

#include <set>

#include "coordinator/clock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

constexpr int64_t kHour = 3600LL * 1000000;

std::set<int64_t> Kept(const std::vector<Decision>& decisions) {
  std::set<int64_t> out;
  for (const auto& d : decisions) {
    if (d.keep) out.insert(d.step);
  }
  return out;
}

v1::RetentionPolicy Policy(int64_t last, int64_t every_steps, double hours, int64_t best,
                           const std::string& metric = "", bool maximize = false) {
  v1::RetentionPolicy p;
  p.set_keep_last(last);
  p.set_keep_every_steps(every_steps);
  p.set_keep_every_hours(hours);
  p.set_keep_best(best);
  p.set_metric(metric);
  p.set_maximize(maximize);
  return p;
}

TEST(Retention, NoPolicyKeepsEverything) {
  std::vector<RetentionCandidate> c;
  for (int i = 1; i <= 5; ++i) c.push_back({i, i * kHour, {}, false, false});
  auto d = EvaluateRetention(v1::RetentionPolicy(), c, 0);
  EXPECT_EQ(Kept(d).size(), 5u);
  EXPECT_EQ(d[0].kept_by, std::vector<std::string>{"no-policy"});
}

TEST(Retention, UnionOfRulesPlusNewestPinnedAndLeased) {
  std::vector<RetentionCandidate> c;
  for (int step = 1; step <= 30; ++step) {
    RetentionCandidate x{step, step * kHour, {{"loss", step == 17 ? 0.01 : 1.0 + step}}, false, false};
    x.pinned = step == 5;
    x.leased = step == 8;
    c.push_back(x);
  }
  auto d = EvaluateRetention(Policy(3, 10, 0, 1, "loss"), c, 0);
  EXPECT_EQ(Kept(d), (std::set<int64_t>{5, 8, 10, 17, 20, 28, 29, 30}));
  EXPECT_EQ(d[29].kept_by, (std::vector<std::string>{"keep-last", "keep-every-steps", "newest"}));
  EXPECT_EQ(d[16].kept_by, std::vector<std::string>{"keep-best"});
  EXPECT_FALSE(d[0].keep);
  EXPECT_NE(d[0].reason.find("no rule keeps it"), std::string::npos);
}

TEST(Retention, KeepBestMaxAndMissingMetrics) {
  std::vector<RetentionCandidate> c = {{1, 1, {{"acc", 0.9}}, false, false},
                                       {2, 2, {}, false, false},
                                       {3, 3, {{"acc", 0.95}}, false, false},
                                       {4, 4, {{"acc", 0.5}}, false, false},
                                       {5, 5, {}, false, false}};
  EXPECT_EQ(Kept(EvaluateRetention(Policy(0, 0, 0, 2, "acc", true), c, 0)),
            (std::set<int64_t>{1, 3, 5}));
  EXPECT_EQ(Kept(EvaluateRetention(Policy(0, 0, 0, 1, "acc", false), c, 0)),
            (std::set<int64_t>{4, 5}));
}

TEST(Retention, NewestIsKeptEvenByAPolicyThatWouldDropIt) {
  std::vector<RetentionCandidate> c = {{10, 1, {}, false, false}, {11, 2, {}, false, false}};
  EXPECT_EQ(Kept(EvaluateRetention(Policy(0, 10, 0, 0), c, 0)), (std::set<int64_t>{10, 11}));
}

// A checkpoint every 20 minutes for three simulated days with keep-every-6h:
// exactly the first of each 6-hour window since the first commit survives.
TEST(Retention, EveryNHoursOverSimulatedDaysWithAFakeClock) {
  FakeClock clock;
  const int64_t start = clock.NowMicros();
  std::vector<RetentionCandidate> c;
  std::set<int64_t> expected;
  for (int step = 0; step < 3 * 24 * 3; ++step) {
    c.push_back({step, clock.NowMicros(), {}, false, false});
    if ((clock.NowMicros() - start) % (6 * kHour) < 20 * 60 * 1000000LL) expected.insert(step);
    clock.Advance(20 * 60 * 1000000LL);
  }
  expected.insert(c.back().step);  // newest
  auto d = EvaluateRetention(Policy(0, 0, 6, 0), c, start);
  EXPECT_EQ(Kept(d), expected);
  EXPECT_EQ(expected.size(), 13u);  // 12 windows in 72 h + the newest
  // The windows are anchored at the job's first commit, even after that
  // checkpoint is gone: drop the first two and the anchor stays.
  std::vector<RetentionCandidate> later(c.begin() + 2, c.end());
  auto d2 = EvaluateRetention(Policy(0, 0, 6, 0), later, start);
  std::set<int64_t> kept2 = Kept(d2);
  EXPECT_TRUE(kept2.count(2));    // the first survivor of window 0
  EXPECT_TRUE(kept2.count(18));   // hour 6 still opens window 1…
  EXPECT_FALSE(kept2.count(20));  // …not hour 6:40, as re-anchoring at step 2 would say
}

TEST(Retention, UnevenCommitTimesKeepTheFirstInEachWindow) {
  // Windows of 1 h from t=0: commits at 0:10, 0:50, 1:05, 3:30, 3:40.
  const int64_t m = 60 * 1000000LL;
  std::vector<RetentionCandidate> c = {{1, 10 * m, {}, false, false},
                                       {2, 50 * m, {}, false, false},
                                       {3, 65 * m, {}, false, false},
                                       {4, 210 * m, {}, false, false},
                                       {5, 220 * m, {}, false, false}};
  EXPECT_EQ(Kept(EvaluateRetention(Policy(0, 0, 1, 0), c, /*first_commit=*/1)),
            (std::set<int64_t>{1, 3, 4, 5}));
}

TEST(Retention, PoliciesAreValidated) {
  EXPECT_TRUE(ValidatePolicy(Policy(3, 10, 1.5, 1, "loss")).ok());
  EXPECT_FALSE(ValidatePolicy(Policy(-1, 0, 0, 0)).ok());
  EXPECT_FALSE(ValidatePolicy(Policy(0, 0, -2, 0)).ok());
  EXPECT_FALSE(ValidatePolicy(Policy(0, 0, 0, 2)).ok());        // no metric
  EXPECT_FALSE(ValidatePolicy(Policy(0, 0, 0, 0, "loss")).ok());  // metric alone
}

}  // namespace
}  // namespace internal
}  // namespace cairn
