// The CLI's progress bar: formatting and drawing
// (client/cli/progress_bar.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/cli/progress_bar.h"
#include "gtest/gtest.h"

namespace cairn {
namespace cli {
namespace {

constexpr uint64_t kMiB = 1 << 20;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

size_t Count(const std::string& s, char c) { return static_cast<size_t>(std::count(s.begin(), s.end(), c)); }

TEST(FormatDuration, MinutesHoursAndUnknown) {
  EXPECT_EQ(FormatDuration(0), "0:00");
  EXPECT_EQ(FormatDuration(5), "0:05");
  EXPECT_EQ(FormatDuration(59.6), "1:00");
  EXPECT_EQ(FormatDuration(754), "12:34");
  EXPECT_EQ(FormatDuration(3723), "1:02:03");
  EXPECT_EQ(FormatDuration(99 * 3600 + 59 * 60 + 59), "99:59:59");
  EXPECT_EQ(FormatDuration(100 * 3600), ">99h");
  EXPECT_EQ(FormatDuration(1e300), ">99h");
  EXPECT_EQ(FormatDuration(-1), "--:--");
  EXPECT_EQ(FormatDuration(std::nan("")), "--:--");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "--:--");
}

TEST(FormatProgressLine, HalfWayWithSizesRateAndEta) {
  // 512 MiB of 1 GiB in 2 s: 256 MiB/s, 2 s to go; a wide terminal gets the
  // 30-column bar, half full.
  const std::string line = FormatProgressLine("verify", 512 * kMiB, 1024 * kMiB, 2.0, 200);
  EXPECT_EQ(line, "verify [" + std::string(15, '#') + std::string(15, '-') +
                      "]  50%   512.0 MiB /    1.0 GiB   256.0 MiB/s  ETA 0:02");
}

TEST(FormatProgressLine, SmallSizesAreBytes) {
  const std::string line = FormatProgressLine("convert", 512, 2048, 1.0, 200);
  EXPECT_TRUE(Contains(line, " 25%")) << line;
  EXPECT_TRUE(Contains(line, "512 B /    2.0 KiB")) << line;
  EXPECT_TRUE(Contains(line, " 512 B/s")) << line;
  EXPECT_TRUE(Contains(line, "ETA 0:03")) << line;
}

TEST(FormatProgressLine, PercentIsFloored) {
  EXPECT_TRUE(Contains(FormatProgressLine("x", 999, 1000, 1.0, 200), " 99%"));
  EXPECT_TRUE(Contains(FormatProgressLine("x", 1, 1000, 1.0, 200), "  0%"));
  EXPECT_TRUE(Contains(FormatProgressLine("x", 1000, 1000, 1.0, 200), "100%"));
}

TEST(FormatProgressLine, NoTimeYetMeansNoRateAndUnknownEta) {
  const std::string line = FormatProgressLine("save", 0, 10 * kMiB, 0.0, 200);
  EXPECT_TRUE(Contains(line, "  0%")) << line;
  EXPECT_TRUE(Contains(line, "0 B/s")) << line;
  EXPECT_TRUE(Contains(line, "ETA --:--")) << line;
  EXPECT_TRUE(Contains(line, "[" + std::string(30, '-') + "]")) << line;
  // Time passed but nothing done: still no estimate, not a division by zero.
  EXPECT_TRUE(Contains(FormatProgressLine("save", 0, 10 * kMiB, 3.0, 200), "ETA --:--"));
  // A negative or non-finite elapsed time is treated as none.
  EXPECT_TRUE(Contains(FormatProgressLine("save", 5, 10, -1.0, 200), "ETA --:--"));
  EXPECT_TRUE(Contains(FormatProgressLine("save", 5, 10, std::nan(""), 200), "ETA --:--"));
}

TEST(FormatProgressLine, ZeroTotalIsComplete) {
  const std::string line = FormatProgressLine("restore", 0, 0, 0.5, 200);
  EXPECT_TRUE(Contains(line, "[" + std::string(30, '#') + "]")) << line;
  EXPECT_TRUE(Contains(line, "100%")) << line;
  EXPECT_TRUE(Contains(line, "0 B /        0 B")) << line;
  EXPECT_TRUE(Contains(line, "ETA 0:00")) << line;
}

TEST(FormatProgressLine, DoneAboveTotalIsClamped) {
  const std::string line = FormatProgressLine("verify", 300, 100, 1.0, 200);
  EXPECT_TRUE(Contains(line, "100%")) << line;
  EXPECT_TRUE(Contains(line, "100 B /      100 B")) << line;
  EXPECT_TRUE(Contains(line, " 100 B/s")) << line;  // the rate of what counts
  EXPECT_TRUE(Contains(line, "[" + std::string(30, '#') + "]")) << line;
  EXPECT_FALSE(Contains(line, "300")) << line;
}

TEST(FormatProgressLine, FinishedShowsElapsedInsteadOfEta) {
  const std::string line = FormatProgressLine("save", 10 * kMiB, 10 * kMiB, 65.0, 200,
                                              /*finished=*/true);
  EXPECT_TRUE(Contains(line, "in 1:05")) << line;
  EXPECT_FALSE(Contains(line, "ETA")) << line;
  EXPECT_TRUE(Contains(line, "157.5 KiB/s")) << line;  // 10 MiB / 65 s
}

TEST(FormatProgressLine, FitsTheWidthAndKeepsTheBarStill) {
  // At 80 columns the bar shrinks to what is left; every line of one bar has
  // its '[' and ']' in the same columns.
  const std::string a = FormatProgressLine("restore", 0, 3 * kMiB, 0.0, 79);
  const std::string b = FormatProgressLine("restore", kMiB, 3 * kMiB, 0.1, 79);
  const std::string c = FormatProgressLine("restore", 3 * kMiB, 3 * kMiB, 0.3, 79, true);
  for (const std::string& line : {a, b, c}) {
    EXPECT_LE(line.size(), 79u) << line;
    EXPECT_EQ(line.find(']'), a.find(']')) << line;
    EXPECT_EQ(line.back() == ' ', false) << "trailing spaces: \"" << line << "\"";
  }
  EXPECT_GE(a.find(']') - a.find('['), 6u) << a;
  // Too narrow for a bar: the text alone, cut at the width.
  const std::string narrow = FormatProgressLine("a-rather-long-label", 5, 10, 1.0, 40);
  EXPECT_FALSE(Contains(narrow, "[")) << narrow;
  EXPECT_LE(narrow.size(), 40u) << narrow;
  EXPECT_TRUE(Contains(narrow, "a-rather-long-label  50%")) << narrow;
  // Below 20 columns a line still gets 20.
  EXPECT_EQ(FormatProgressLine("x", 5, 10, 1.0, 3).size(), 20u);
  // No label: no leading space.
  EXPECT_EQ(FormatProgressLine("", 5, 10, 1.0, 200).front(), '[');
}

TEST(ProgressMode, ParseAndDecide) {
  EXPECT_EQ(*ParseProgressMode("auto"), ProgressMode::kAuto);
  EXPECT_EQ(*ParseProgressMode("always"), ProgressMode::kAlways);
  EXPECT_EQ(*ParseProgressMode("true"), ProgressMode::kAlways);  // a bare --progress
  EXPECT_EQ(*ParseProgressMode("never"), ProgressMode::kNever);
  auto bad = ParseProgressMode("sometimes");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "sometimes"));
  EXPECT_FALSE(ParseProgressMode("").ok());
  EXPECT_TRUE(ShouldDrawProgress(ProgressMode::kAuto, true));
  EXPECT_FALSE(ShouldDrawProgress(ProgressMode::kAuto, false));
  EXPECT_TRUE(ShouldDrawProgress(ProgressMode::kAlways, false));
  EXPECT_FALSE(ShouldDrawProgress(ProgressMode::kNever, true));
}

// A bar drawing into a string, on a clock the test moves.
struct TestBar {
  explicit TestBar(bool draw = true) {
    ProgressBar::Options o;
    o.label = "verify";
    o.draw = draw;
    o.out = &out;
    o.width = 100;
    o.now_micros = [this] { return now.load(); };
    bar = std::make_unique<ProgressBar>(std::move(o));
  }
  std::ostringstream out;
  std::atomic<int64_t> now{1000000};
  std::unique_ptr<ProgressBar> bar;
};

TEST(ProgressBar, NotDrawingPrintsNothingButNotes) {
  TestBar t(/*draw=*/false);
  t.bar->Update(0, 100);
  t.bar->Update(100, 100);
  t.bar->Note("cairn: warning: something");
  t.bar->Finish();
  t.bar->Clear();
  t.bar.reset();
  EXPECT_EQ(t.out.str(), "cairn: warning: something\n");
}

TEST(ProgressBar, FirstUpdateDrawsThenAtMostTenTimesASecond) {
  TestBar t;
  t.bar->Update(0, 100 * kMiB);
  EXPECT_EQ(Count(t.out.str(), '\r'), 1u);
  EXPECT_TRUE(Contains(t.out.str(), "ETA --:--")) << t.out.str();
  for (int i = 1; i <= 9; ++i) {  // 90 ms of updates: none drawn
    t.now += 10000;
    t.bar->Update(static_cast<uint64_t>(i) * kMiB, 100 * kMiB);
  }
  EXPECT_EQ(Count(t.out.str(), '\r'), 1u) << t.out.str();
  t.now += 10000;  // 100 ms after the first draw
  t.bar->Update(10 * kMiB, 100 * kMiB);
  EXPECT_EQ(Count(t.out.str(), '\r'), 2u);
  const std::string out = t.out.str();
  const std::string second = out.substr(out.rfind('\r') + 1);
  EXPECT_TRUE(Contains(second, " 10%")) << second;
  EXPECT_TRUE(Contains(second, "100.0 MiB/s")) << second;  // 10 MiB in 0.1 s
  EXPECT_TRUE(Contains(second, "ETA 0:01")) << second;     // 90 MiB to go: 0.9 s
  EXPECT_EQ(Count(out, '\n'), 0u) << "nothing ends the line before Finish";
}

TEST(ProgressBar, FinishDrawsTheFinalLineOnceWithTheDataTime) {
  TestBar t;
  t.bar->Update(0, 4 * kMiB);
  t.now += 2000000;
  t.bar->Update(4 * kMiB, 4 * kMiB);  // throttled or not, completion is noted
  t.now += 60000000;                   // e.g. a save waiting for its commit
  t.bar->Finish();
  t.bar->Finish();
  t.bar->Update(1, 4 * kMiB);  // after Finish: ignored
  t.bar.reset();
  const std::string out = t.out.str();
  ASSERT_EQ(Count(out, '\n'), 1u) << out;
  EXPECT_EQ(out.back(), '\n');
  const std::string last = out.substr(out.rfind('\r') + 1);
  EXPECT_TRUE(Contains(last, "100%")) << last;
  EXPECT_TRUE(Contains(last, "4.0 MiB /    4.0 MiB")) << last;
  EXPECT_TRUE(Contains(last, "2.0 MiB/s")) << last;
  EXPECT_TRUE(Contains(last, "in 0:02")) << last;
}

TEST(ProgressBar, FinishWithoutAnyUpdateDrawsNothing) {
  TestBar t;
  t.bar->Finish();
  t.bar.reset();
  EXPECT_EQ(t.out.str(), "");
}

TEST(ProgressBar, DoneNeverGoesBackAndShorterLinesCoverLongerOnes) {
  TestBar t;
  t.bar->Update(0, 1000 * kMiB);
  t.now += 1000000;
  t.bar->Update(600 * kMiB, 1000 * kMiB);
  t.now += 1000000;
  t.bar->Update(500 * kMiB, 1000 * kMiB);  // a late report from another thread
  const std::string out = t.out.str();
  const std::string last = out.substr(out.rfind('\r') + 1);
  EXPECT_TRUE(Contains(last, " 60%")) << last;
  // Every redraw is at least as long as the longest line before it.
  size_t longest = 0;
  size_t pos = 0;
  while ((pos = out.find('\r', pos)) != std::string::npos) {
    const size_t next = out.find('\r', pos + 1);
    const size_t len = (next == std::string::npos ? out.size() : next) - pos - 1;
    EXPECT_GE(len, longest);
    longest = std::max(longest, len);
    pos = next;
  }
}

TEST(ProgressBar, ClearAndNoteEraseTheLine) {
  TestBar t;
  t.bar->Update(0, 100);
  const size_t drawn = t.out.str().size() - 1;  // without the '\r'
  t.bar->Note("cairn: warning: w");
  EXPECT_EQ(t.out.str().substr(drawn + 1), "\r" + std::string(drawn, ' ') + "\rcairn: warning: w\n");
  // The next update draws again at once (the line was erased).
  t.now += 1000;
  t.bar->Update(50, 100);
  EXPECT_TRUE(Contains(t.out.str().substr(t.out.str().rfind('\r')), " 50%"));
  const std::string before = t.out.str();
  t.bar->Clear();
  const std::string cleared = t.out.str().substr(before.size());
  EXPECT_EQ(cleared.front(), '\r');
  EXPECT_EQ(cleared.back(), '\r');
  EXPECT_EQ(cleared.find_first_not_of(' ', 1), cleared.size() - 1) << "only spaces between";
  t.bar->Clear();  // nothing on screen: nothing to do
  EXPECT_EQ(t.out.str().size(), before.size() + cleared.size());
}

TEST(ProgressBar, DestroyingADrawnBarClearsIt) {
  TestBar t;
  t.bar->Update(10, 100);
  t.bar.reset();
  const std::string out = t.out.str();
  EXPECT_EQ(out.back(), '\r');
  EXPECT_EQ(Count(out, '\n'), 0u);
}

TEST(ProgressBar, ManyThreadsUpdateSafely) {
  ProgressBar::Options o;
  o.label = "restore";
  o.draw = true;
  std::ostringstream out;
  o.out = &out;
  o.min_interval_micros = 0;  // draw on every update: the most contention
  ProgressBar bar(std::move(o));
  ProgressFn fn = bar.Callback();
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&fn, i] {
      for (uint64_t k = 0; k < 500; ++k) fn(static_cast<uint64_t>(i) * 500 + k, 4000);
    });
  }
  for (auto& th : threads) th.join();
  bar.Finish();
  const std::string s = out.str();
  EXPECT_EQ(Count(s, '\n'), 1u);
  EXPECT_TRUE(Contains(s.substr(s.rfind('\r')), "100%"));
  // Lines were never interleaved: every one starts with the label.
  size_t pos = 0;
  while ((pos = s.find('\r', pos)) != std::string::npos) {
    ++pos;
    if (pos < s.size() && s[pos] != ' ' && s[pos] != '\n') {
      EXPECT_EQ(s.compare(pos, 9, "restore ["), 0) << s.substr(pos, 40);
    }
  }
}

}  // namespace
}  // namespace cli
}  // namespace cairn
