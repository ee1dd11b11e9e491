#include "observability/time_format.h"

#include "absl/time/time.h"

namespace cairn {

std::string FormatUtc(int64_t unix_micros, TimePrecision precision) {
  const char* format = "%Y-%m-%dT%H:%M:%SZ";
  if (precision == TimePrecision::kMicros) format = "%Y-%m-%dT%H:%M:%E6SZ";
  if (precision == TimePrecision::kShortest) format = "%Y-%m-%dT%H:%M:%E*SZ";
  return absl::FormatTime(format, absl::FromUnixMicros(unix_micros), absl::UTCTimeZone());
}

}  // namespace cairn
