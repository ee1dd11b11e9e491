#include "observability/log.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "observability/time_format.h"

namespace cairn::logging {
namespace {

std::mutex g_mu;
std::string* g_program = new std::string("cairn");  // never destroyed: logged from any thread

}  // namespace

void SetProgram(absl::string_view program) {
  std::lock_guard<std::mutex> lock(g_mu);
  *g_program = std::string(program);
}

std::string FormatLine(int64_t unix_micros, absl::string_view program, const Where& where,
                       absl::string_view message) {
  std::string line = absl::StrCat(FormatUtc(unix_micros, TimePrecision::kMicros), " ", program);
  absl::StrAppend(&line, " job=", where.job.empty() ? "-" : where.job);
  absl::StrAppend(&line, " step=", where.step < 0 ? "-" : absl::StrCat(where.step));
  absl::StrAppend(&line, " shard=",
                  where.shard < 0 ? "-" : absl::StrCat(where.shard, "/", where.num_shards));
  line += ' ';
  for (char c : message) {
    if (c == '\n') {
      line += "\\n";
    } else if (c == '\r') {
      line += "\\r";
    } else {
      line += c;
    }
  }
  line += '\n';
  return line;
}

void Log(const Where& where, absl::string_view message) {
  const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::lock_guard<std::mutex> lock(g_mu);
  const std::string line = FormatLine(now, *g_program, where, message);
  const char* p = line.data();
  size_t n = line.size();
  while (n > 0) {
    const ssize_t w = ::write(2, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere to report a failing stderr
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace cairn::logging
