// Server log lines: one line per event on stderr, each naming the checkpoint
// it is about, so `grep 'job=bert step=1200'` finds a checkpoint's whole
// story across the coordinator's and the writers' logs:
//
//   2026-11-22T18:30:00.123456Z cairn-writer job=bert step=1200 shard=3/8 shard durable: ...
//
// Parts a line is not about print as "-" (a writer registering: job=- step=-
// shard=-), so every line has the same columns. Lines are written whole
// (one write per line): concurrent threads never interleave within a line.
#ifndef CAIRN_OBSERVABILITY_LOG_H_
#define CAIRN_OBSERVABILITY_LOG_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace cairn::logging {

// What a line is about; unset parts print as "-".
struct Where {
  std::string job;
  int64_t step = -1;
  int shard = -1;
  int num_shards = 0;
};

// The program name every line carries (default "cairn"). Call once at start.
void SetProgram(absl::string_view program);

// "TIME PROGRAM job=J step=S shard=I/N MESSAGE"; newlines in the message
// are escaped so one event stays one line.
std::string FormatLine(int64_t unix_micros, absl::string_view program, const Where& where,
                       absl::string_view message);

void Log(const Where& where, absl::string_view message);
inline void Log(absl::string_view message) { Log(Where(), message); }

}  // namespace cairn::logging

#endif  // CAIRN_OBSERVABILITY_LOG_H_
