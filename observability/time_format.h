// Timestamps as Cairn prints them: RFC 3339 in UTC, in one place for logs,
// the CLI and anything else a person reads.
#ifndef CAIRN_OBSERVABILITY_TIME_FORMAT_H_
#define CAIRN_OBSERVABILITY_TIME_FORMAT_H_

#include <cstdint>
#include <string>

namespace cairn {

enum class TimePrecision {
  kSeconds,   // "2024-05-01T12:00:00Z"
  kMicros,    // "2024-05-01T12:00:00.250000Z" (fixed width: log lines)
  kShortest,  // "2024-05-01T12:00:00.25Z", fraction only when non-zero
};

std::string FormatUtc(int64_t unix_micros, TimePrecision precision);

}  // namespace cairn

#endif  // CAIRN_OBSERVABILITY_TIME_FORMAT_H_
