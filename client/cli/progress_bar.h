// The CLI's side of progress reporting: a one-line progress bar redrawn in
// place (with '\r') on stderr, fed by a ProgressFn (client/progress.h).
//
//   ProgressBar bar({"verify", /*draw=*/ShouldDrawProgress(mode, isatty(2))});
//   auto report = VerifyCheckpoint(prefix, bar.Callback());
//   if (report.ok()) bar.Finish(); else bar.Clear();
//
// which draws, and redraws at most ten times a second,
//
//   verify [##########----------]  50%     1.2 GiB /    2.4 GiB   412.0 MiB/s  ETA 0:03
//
// and at the end leaves
//
//   verify [####################] 100%     2.4 GiB /    2.4 GiB   410.9 MiB/s  in 0:06
#ifndef CAIRN_CLIENT_CLI_PROGRESS_BAR_H_
#define CAIRN_CLIENT_CLI_PROGRESS_BAR_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/progress.h"

namespace cairn {
namespace cli {

// `--progress=auto|always|never`: auto draws only when stderr is a terminal.
enum class ProgressMode { kAuto, kAlways, kNever };

// "auto", "always" or "never" (a bare `--progress` arrives as "true" and
// means always); InvalidArgument naming the value otherwise.
absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text);

// Whether to draw in `mode` when stderr is (or is not) a terminal.
bool ShouldDrawProgress(ProgressMode mode, bool stderr_is_tty);

// The columns of the terminal on `fd`, or `fallback` if it is none (or
// reports 0).
int TerminalColumns(int fd, int fallback = 80);

// A duration as "0:05", "12:34", "1:02:03"; ">99h" from 100 hours on;
// "--:--" for a negative or non-finite value (unknown).
std::string FormatDuration(double seconds);

// One line of the bar, without '\r', newline or trailing spaces, at most
// max(width, 20) columns (for ASCII labels):
//   LABEL [####------]  40%     1.2 GiB /    3.0 GiB   412.0 MiB/s  ETA 0:04
// Sizes are HumanBytes ("512 B", "3.2 MiB") in fixed-width fields, so the
// bar stays put from one line to the next. `done` above `total` counts as
// `total`; a `total` of 0 is complete (100%). The rate is done / elapsed
// ("0 B/s" before any time has passed); the ETA is remaining / rate,
// "--:--" while the rate is 0. With `finished`, the ETA is replaced by the
// elapsed time ("in 0:06"). The bar is dropped (and then the text cut at
// `width`) when the line would not fit; it is at most 30 columns wide.
std::string FormatProgressLine(absl::string_view label, uint64_t done, uint64_t total,
                               double elapsed_seconds, int width, bool finished = false);

class ProgressBar {
 public:
  struct Options {
    std::string label;                     // e.g. "verify"; may be empty
    bool draw = false;                     // false: a bar that shows nothing
    std::ostream* out = nullptr;           // default: std::cerr
    int width = 80;                        // columns the line may use
    int64_t min_interval_micros = 100000;  // redraw at most every 0.1 s
    // Monotonic microseconds; default: std::chrono::steady_clock.
    std::function<int64_t()> now_micros = nullptr;
  };

  // No output: the clock starts at the first Update.
  explicit ProgressBar(Options options);
  // Clears a bar still on screen (neither finished nor cleared).
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // A ProgressFn feeding Update. REQUIRES: the bar outlives every call.
  ProgressFn Callback();

  // Records (done, total) and redraws if the bar has not been drawn yet or
  // min_interval has passed since the last draw. Thread-safe.
  void Update(uint64_t done, uint64_t total);
  // Draws the final line (everything done, the average rate and the time
  // from the first Update until an Update reported done == total, or until
  // now if none did) and ends it with a newline, so what follows starts on a fresh
  // line. Nothing if no Update came (nothing was measured) or not drawing.
  void Finish();
  // Erases the bar's line (e.g. before an error message). The next Update
  // draws it again.
  void Clear();
  // Prints `line` and a newline on the output, erasing the bar first if it
  // is on screen; the next Update redraws it below. When not drawing this
  // prints exactly `line` + "\n", so warnings read the same with or
  // without a bar.
  void Note(const std::string& line);

 private:
  int64_t Now() const;
  void DrawLocked(bool finished) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  std::ostream& out_;
  std::mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;   // an Update came
  bool on_screen_ ABSL_GUARDED_BY(mu_) = false; // a line is drawn and not ended
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;  // an Update reported done == total
  int64_t start_micros_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completed_micros_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_draw_micros_ ABSL_GUARDED_BY(mu_) = 0;
  size_t drawn_columns_ ABSL_GUARDED_BY(mu_) = 0;  // length of the line on screen
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_CLIENT_CLI_PROGRESS_BAR_H_
