#include "client/cli/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/format.h"

namespace cairn {
namespace cli {
namespace {

// Narrower than this, a line is cut rather than laid out.
constexpr int kMinWidth = 20;
// The bar itself (between the brackets) is at most this wide, at least
// kMinBarColumns or left out.
constexpr int kMaxBarColumns = 30;
constexpr int kMinBarColumns = 5;

}  // namespace

absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text) {
  if (text == "auto") return ProgressMode::kAuto;
  if (text == "always" || text == "true") return ProgressMode::kAlways;
  if (text == "never") return ProgressMode::kNever;
  return absl::InvalidArgumentError(
      absl::StrCat("--progress=", text, ": expected auto, always or never"));
}

bool ShouldDrawProgress(ProgressMode mode, bool stderr_is_tty) {
  switch (mode) {
    case ProgressMode::kAlways:
      return true;
    case ProgressMode::kNever:
      return false;
    case ProgressMode::kAuto:
      break;
  }
  return stderr_is_tty;
}

int TerminalColumns(int fd, int fallback) {
  struct winsize ws {};
  if (::isatty(fd) && ::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return fallback;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  if (seconds >= 100.0 * 3600) return ">99h";
  const int64_t t = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = t / 3600, m = t % 3600 / 60, s = t % 60;
  if (h > 0) return absl::StrFormat("%d:%02d:%02d", h, m, s);
  return absl::StrFormat("%d:%02d", m, s);
}

std::string FormatProgressLine(absl::string_view label, uint64_t done, uint64_t total,
                               double elapsed_seconds, int width, bool finished) {
  width = std::max(width, kMinWidth);
  done = std::min(done, total);
  const double fraction =
      total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const bool timed = std::isfinite(elapsed_seconds) && elapsed_seconds > 0;
  const double rate = timed ? static_cast<double>(done) / elapsed_seconds : 0.0;
  std::string when;
  if (finished) {
    when = absl::StrCat("in ", FormatDuration(timed ? elapsed_seconds : 0.0));
  } else if (done == total) {
    when = "ETA 0:00";
  } else {
    when = absl::StrCat("ETA ", rate > 0 ? FormatDuration(static_cast<double>(total - done) / rate)
                                         : FormatDuration(-1));
  }
  // Floor, so that 100% means everything is done.
  const int percent = static_cast<int>(std::floor(fraction * 100.0));
  // Fixed-width fields ("1023.9 MiB" is the widest size), so that the bar
  // neither moves nor changes width from one draw to the next.
  const std::string text = absl::StrFormat(
      "%3d%%  %10s / %10s  %12s  %-12s", percent, HumanBytes(done), HumanBytes(total),
      absl::StrCat(HumanBytes(static_cast<uint64_t>(std::llround(rate))), "/s"), when);
  const std::string head = label.empty() ? "" : absl::StrCat(label, " ");

  // "HEAD[BAR] TEXT": the bar takes what is left, within its limits.
  const int bar_columns = std::min<int>(
      kMaxBarColumns, width - static_cast<int>(head.size() + text.size()) - 3);
  std::string line;
  if (bar_columns >= kMinBarColumns) {
    const int filled = static_cast<int>(std::floor(fraction * bar_columns));
    line = absl::StrCat(head, "[", std::string(static_cast<size_t>(filled), '#'),
                        std::string(static_cast<size_t>(bar_columns - filled), '-'), "] ", text);
  } else {
    line = absl::StrCat(head, text);
  }
  if (line.size() > static_cast<size_t>(width)) line.resize(static_cast<size_t>(width));
  line.erase(line.find_last_not_of(' ') + 1);
  return line;
}

ProgressBar::ProgressBar(Options options)
    : options_(std::move(options)), out_(options_.out != nullptr ? *options_.out : std::cerr) {}

ProgressBar::~ProgressBar() {
  std::lock_guard<std::mutex> lock(mu_);
  ClearLocked();
}

ProgressFn ProgressBar::Callback() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

int64_t ProgressBar::Now() const {
  if (options_.now_micros) return options_.now_micros();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ProgressBar::Update(uint64_t done, uint64_t total) {
  if (!options_.draw) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  const int64_t now = Now();
  if (!started_) {
    started_ = true;
    start_micros_ = now;
    done_ = 0;
  }
  total_ = total;
  done_ = std::min(std::max(done_, done), total_);
  if (done_ == total_ && !completed_) {
    completed_ = true;
    completed_micros_ = now;
  }
  if (!on_screen_ || now - last_draw_micros_ >= options_.min_interval_micros) DrawLocked(false);
}

void ProgressBar::Finish() {
  if (!options_.draw) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_ || finished_) return;
  done_ = total_;
  DrawLocked(/*finished=*/true);
  finished_ = true;
}

void ProgressBar::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  ClearLocked();
}

void ProgressBar::Note(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  ClearLocked();
  out_ << line << "\n";
  out_.flush();
}

void ProgressBar::DrawLocked(bool finished) {
  const int64_t now = Now();
  // The final line's rate and time are those of the data: what came after
  // the last byte (a save's commit, say) is not counted.
  const int64_t end = finished && completed_ ? completed_micros_ : now;
  const double elapsed = static_cast<double>(end - start_micros_) / 1e6;
  const std::string line =
      FormatProgressLine(options_.label, done_, total_, elapsed, options_.width, finished);
  out_ << '\r' << line;
  // Cover the rest of a longer line drawn before.
  if (line.size() < drawn_columns_) out_ << std::string(drawn_columns_ - line.size(), ' ');
  if (finished) {
    out_ << '\n';
    on_screen_ = false;
    drawn_columns_ = 0;
  } else {
    on_screen_ = true;
    drawn_columns_ = std::max(drawn_columns_, line.size());
  }
  last_draw_micros_ = now;
  out_.flush();
}

void ProgressBar::ClearLocked() {
  if (!on_screen_) return;
  out_ << '\r' << std::string(drawn_columns_, ' ') << '\r';
  out_.flush();
  on_screen_ = false;
  drawn_columns_ = 0;
}

}  // namespace cli
}  // namespace cairn
