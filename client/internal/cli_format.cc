#include "client/internal/cli_format.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace cairn {
namespace internal {

std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024.0;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string Rfc3339(int64_t unix_micros, bool seconds_only) {
  return absl::FormatTime(seconds_only ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%dT%H:%M:%E*SZ",
                          absl::FromUnixMicros(unix_micros), absl::UTCTimeZone());
}

std::string CheckpointTable(const std::string& job, const std::vector<CheckpointSummary>& ckpts) {
  if (ckpts.empty()) return absl::StrCat("job ", job, ": no committed checkpoints\n");
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"STEP", "COMMITTED", "BYTES", "SHARDS", "METRICS", "PINNED", "KEPT BY"});
  for (const CheckpointSummary& c : ckpts) {
    std::vector<std::string> metrics;
    for (const auto& m : c.metrics) metrics.push_back(absl::StrCat(m.first, "=", m.second));
    rows.push_back({absl::StrCat(c.step), Rfc3339(c.committed_at_micros, /*seconds_only=*/true),
                    HumanBytes(c.bytes), absl::StrCat(c.num_shards),
                    metrics.empty() ? "-" : absl::StrJoin(metrics, ","), c.pinned ? "yes" : "no",
                    c.kept_by.empty() ? "-" : absl::StrJoin(c.kept_by, ",")});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else if (i == 0 || i == 2 || i == 3) {  // numbers right-aligned
        absl::StrAppend(&line, std::string(width[i] - row[i].size(), ' '), row[i], "  ");
      } else {
        absl::StrAppend(&line, row[i], std::string(width[i] - row[i].size(), ' '), "  ");
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string CheckpointJson(const std::string& job, const std::vector<CheckpointSummary>& ckpts) {
  nlohmann::ordered_json out;
  out["job"] = job;
  out["checkpoints"] = nlohmann::ordered_json::array();
  for (const CheckpointSummary& c : ckpts) {
    nlohmann::ordered_json j;
    j["step"] = c.step;
    j["committed_at"] = Rfc3339(c.committed_at_micros);
    j["bytes"] = c.bytes;
    j["num_shards"] = c.num_shards;
    j["metrics"] = nlohmann::ordered_json::object();
    for (const auto& m : c.metrics) j["metrics"][m.first] = m.second;
    j["pinned"] = c.pinned;
    j["kept_by"] = c.kept_by;
    j["prefix"] = c.prefix_uri;
    out["checkpoints"].push_back(std::move(j));
  }
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace internal
}  // namespace cairn
