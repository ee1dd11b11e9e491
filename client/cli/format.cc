#include "client/cli/format.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "observability/time_format.h"

namespace cairn {
namespace cli {

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

namespace {

// Rows as aligned columns, two spaces apart; the columns in `right` are
// right-aligned (numbers), the last is never padded.
std::string Columns(const std::vector<std::vector<std::string>>& rows,
                    const std::vector<size_t>& right) {
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, std::count(right.begin(), right.end(), i) ? pad : "", row[i]);
      } else if (std::count(right.begin(), right.end(), i)) {
        absl::StrAppend(&line, pad, row[i], "  ");
      } else {
        absl::StrAppend(&line, row[i], pad, "  ");
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace

std::string HumanAge(int64_t micros) {
  const int64_t s = std::max<int64_t>(0, micros / 1000000);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string CheckpointTable(const std::string& job, const std::vector<CheckpointSummary>& ckpts,
                            bool all, int64_t now_micros) {
  if (ckpts.empty()) {
    return absl::StrCat("job ", job, all ? ": no checkpoints\n" : ": no committed checkpoints\n");
  }
  std::vector<std::vector<std::string>> rows;
  if (all) {
    rows.push_back(
        {"STEP", "STATE", "COMMITTED", "BYTES", "SHARDS", "METRICS", "PINNED", "KEPT BY", "NOTE"});
  } else {
    rows.push_back({"STEP", "COMMITTED", "BYTES", "SHARDS", "METRICS", "PINNED", "KEPT BY"});
  }
  for (const CheckpointSummary& c : ckpts) {
    const bool committed = c.state == CheckpointState::kCommitted;
    std::vector<std::string> metrics;
    for (const auto& m : c.metrics) metrics.push_back(absl::StrCat(m.first, "=", m.second));
    std::vector<std::string> row = {
        absl::StrCat(c.step),
        committed ? FormatUtc(c.committed_at_micros, TimePrecision::kSeconds) : "-",
        committed ? HumanBytes(c.bytes) : "-",
        committed ? absl::StrCat(c.num_shards) : absl::StrCat(c.shards_durable, "/", c.num_shards),
        metrics.empty() ? "-" : absl::StrJoin(metrics, ","),
        c.pinned ? "yes" : "no",
        c.kept_by.empty() ? "-" : absl::StrJoin(c.kept_by, ",")};
    if (all) {
      row.insert(row.begin() + 1, std::string(CheckpointStateName(c.state)));
      std::string note = "-";
      if (c.state == CheckpointState::kAborted || c.state == CheckpointState::kAborting) {
        note = c.abort_reason.empty() ? "aborted" : c.abort_reason;
      } else if (!committed && c.state != CheckpointState::kDeleting) {
        note = absl::StrCat(c.shards_durable, " of ", c.num_shards, " shards durable, started ",
                            HumanAge(now_micros - c.created_at_micros), " ago");
      }
      row.push_back(note);
    }
    rows.push_back(std::move(row));
  }
  return all ? Columns(rows, {0, 3, 4}) : Columns(rows, {0, 2, 3});
}

std::string CheckpointJson(const std::string& job, const std::vector<CheckpointSummary>& ckpts,
                           bool all) {
  nlohmann::ordered_json out;
  out["job"] = job;
  out["checkpoints"] = nlohmann::ordered_json::array();
  for (const CheckpointSummary& c : ckpts) {
    const bool committed = c.state == CheckpointState::kCommitted;
    nlohmann::ordered_json j;
    j["step"] = c.step;
    if (all) j["state"] = std::string(CheckpointStateName(c.state));
    j["committed_at"] = committed ? nlohmann::ordered_json(FormatUtc(c.committed_at_micros,
                                                                     TimePrecision::kShortest))
                                  : nlohmann::ordered_json(nullptr);
    j["bytes"] = c.bytes;
    j["num_shards"] = c.num_shards;
    j["metrics"] = nlohmann::ordered_json::object();
    for (const auto& m : c.metrics) j["metrics"][m.first] = m.second;
    j["pinned"] = c.pinned;
    j["kept_by"] = c.kept_by;
    j["prefix"] = c.prefix_uri;
    if (all) {
      j["shards_durable"] = c.shards_durable;
      j["created_at"] = FormatUtc(c.created_at_micros, TimePrecision::kShortest);
      if (!c.abort_reason.empty()) j["abort_reason"] = c.abort_reason;
    }
    out["checkpoints"].push_back(std::move(j));
  }
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string JobsTable(const std::vector<JobSummary>& jobs, int64_t now_micros) {
  if (jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"JOB", "NEWEST", "AGE", "COMMITTED", "PENDING", "ABORTED", "BYTES"});
  for (const JobSummary& j : jobs) {
    rows.push_back({j.job, j.newest_step ? absl::StrCat(*j.newest_step) : "-",
                    j.newest_step ? HumanAge(now_micros - j.newest_committed_at_micros) : "-",
                    absl::StrCat(j.committed), absl::StrCat(j.pending), absl::StrCat(j.aborted),
                    HumanBytes(j.bytes)});
  }
  return Columns(rows, {1, 2, 3, 4, 5, 6});
}

std::string JobsJson(const std::vector<JobSummary>& jobs) {
  nlohmann::ordered_json out;
  out["jobs"] = nlohmann::ordered_json::array();
  for (const JobSummary& j : jobs) {
    nlohmann::ordered_json e;
    e["job"] = j.job;
    e["newest_step"] = j.newest_step ? nlohmann::ordered_json(*j.newest_step)
                                     : nlohmann::ordered_json(nullptr);
    e["newest_committed_at"] =
        j.newest_step ? nlohmann::ordered_json(
                            FormatUtc(j.newest_committed_at_micros, TimePrecision::kShortest))
                      : nlohmann::ordered_json(nullptr);
    e["committed"] = j.committed;
    e["pending"] = j.pending;
    e["aborted"] = j.aborted;
    e["bytes"] = j.bytes;
    out["jobs"].push_back(std::move(e));
  }
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string PolicyString(const RetentionPolicy& policy) {
  std::vector<std::string> parts;
  if (policy.keep_last != 0) parts.push_back(absl::StrCat("keep-last=", policy.keep_last));
  if (policy.keep_every_steps != 0) {
    parts.push_back(absl::StrCat("keep-every-steps=", policy.keep_every_steps));
  }
  if (policy.keep_every_hours != 0) {
    parts.push_back(absl::StrCat("keep-every-hours=", policy.keep_every_hours));
  }
  if (policy.keep_best != 0) {
    parts.push_back(absl::StrCat("keep-best=", policy.keep_best, "(", policy.metric, ",",
                                 policy.maximize ? "max" : "min", ")"));
  }
  if (parts.empty()) return "none (keep everything)";
  return absl::StrJoin(parts, " ");
}

std::string GcText(const std::string& job, bool dry_run, const GcResult& result) {
  const char* const del = dry_run ? "would delete" : "delete";
  std::vector<std::vector<std::string>> rows;
  int64_t kept = 0, to_delete = 0;
  for (const RetentionDecision& d : result.decisions) {
    std::string why;
    if (d.keep) {
      ++kept;
      why = d.kept_by.empty() ? d.reason : absl::StrCat("kept by ", absl::StrJoin(d.kept_by, ", "));
    } else {
      ++to_delete;
      why = d.reason;
    }
    rows.push_back({absl::StrCat(d.step), d.keep ? "keep" : del, why.empty() ? "-" : why});
  }
  std::string out;
  if (!rows.empty()) {
    rows.insert(rows.begin(), {"STEP", "ACTION", "WHY"});
    size_t w0 = 0, w1 = 0;
    for (const auto& row : rows) {
      w0 = std::max(w0, row[0].size());
      w1 = std::max(w1, row[1].size());
    }
    for (const auto& row : rows) {
      absl::StrAppend(&out, std::string(w0 - row[0].size(), ' '), row[0], "  ", row[1],
                      std::string(w1 - row[1].size(), ' '), "  ", row[2], "\n");
    }
  }
  const size_t total = result.decisions.size();
  if (dry_run) {
    absl::StrAppend(&out, "job ", job, " (dry run): would delete ", to_delete, " of ", total,
                    " checkpoints, keep ", kept, "\n");
  } else {
    absl::StrAppend(&out, "job ", job, ": deleted ", result.deleted, " of ", total,
                    " checkpoints, kept ", kept, "\n");
  }
  return out;
}

std::string GcJson(const std::string& job, bool dry_run, const GcResult& result) {
  nlohmann::ordered_json out;
  out["job"] = job;
  out["dry_run"] = dry_run;
  // In a dry run: how many would be deleted (what the text summary says too).
  int64_t deleted = result.deleted;
  if (dry_run) {
    deleted = std::count_if(result.decisions.begin(), result.decisions.end(),
                            [](const RetentionDecision& d) { return !d.keep; });
  }
  out["deleted"] = deleted;
  out["decisions"] = nlohmann::ordered_json::array();
  for (const RetentionDecision& d : result.decisions) {
    nlohmann::ordered_json j;
    j["step"] = d.step;
    j["keep"] = d.keep;
    j["kept_by"] = d.kept_by;
    j["reason"] = d.reason;
    out["decisions"].push_back(std::move(j));
  }
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace cli
}  // namespace cairn
