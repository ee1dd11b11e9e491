// The library's progress counter (client/internal/progress.h): what every
// ProgressFn sees, from any number of threads.
#include "client/internal/progress.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

struct Calls {
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  ProgressFn Fn() {
    return [this](uint64_t done, uint64_t total) {
      std::lock_guard<std::mutex> lock(mu);
      calls.emplace_back(done, total);
    };
  }
};

TEST(ProgressCounter, BeginAddFinish) {
  Calls c;
  ProgressCounter p(c.Fn(), 100);
  p.Begin();
  p.Add(30);
  p.Add(0);
  p.Add(500);  // more than is left: clamped
  p.Add(5);    // at the total already: reported once only
  p.Finish();
  EXPECT_EQ(c.calls, (std::vector<std::pair<uint64_t, uint64_t>>{
                         {0, 100}, {30, 100}, {30, 100}, {100, 100}}));
}

TEST(ProgressCounter, FinishReportsTheTotalWhenCountsFellShort) {
  Calls c;
  ProgressCounter p(c.Fn(), 10);
  p.Begin();
  p.Add(4);
  p.Finish();
  p.Finish();
  EXPECT_EQ(c.calls, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 10}, {4, 10}, {10, 10}}));
}

TEST(ProgressCounter, ZeroTotalAndNoCallback) {
  Calls c;
  ProgressCounter p(c.Fn(), 0);
  p.Begin();
  p.Add(7);
  p.Finish();
  EXPECT_EQ(c.calls, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 0}}));
  ProgressCounter none(nullptr, 10);  // an empty callback: nothing happens
  none.Begin();
  none.Add(3);
  none.Finish();
}

TEST(ProgressCounter, ConcurrentAddsAreSerializedAndMonotone) {
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::vector<uint64_t> seen;  // written only inside the callback
  ProgressCounter p(
      [&](uint64_t done, uint64_t total) {
        if (inside.fetch_add(1) != 0) overlapped = true;
        seen.push_back(done);
        std::this_thread::yield();
        inside.fetch_sub(1);
      },
      8 * 1000 * 3);
  p.Begin();
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&p] {
      for (int k = 0; k < 1000; ++k) p.Add(3);
    });
  }
  for (auto& t : threads) t.join();
  p.Finish();
  EXPECT_FALSE(overlapped.load());
  ASSERT_EQ(seen.size(), 8001u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.back(), 24000u);
}

}  // namespace
}  // namespace internal
}  // namespace cairn
