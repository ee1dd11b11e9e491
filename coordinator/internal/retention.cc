#include "coordinator/internal/retention.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cairn {
namespace internal {

absl::Status ValidatePolicy(const v1::RetentionPolicy& p) {
  if (p.keep_last() < 0 || p.keep_every_steps() < 0 || p.keep_best() < 0) {
    return absl::InvalidArgumentError("retention counts must not be negative");
  }
  // Windows of at least a second and at most ~114 years: their count and
  // index always fit an int64 (1e-300 hours would overflow the cast).
  constexpr double kMinHours = 1.0 / 3600, kMaxHours = 1e6;
  if (!std::isfinite(p.keep_every_hours()) || p.keep_every_hours() < 0 ||
      (p.keep_every_hours() > 0 && (p.keep_every_hours() < kMinHours || p.keep_every_hours() > kMaxHours))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keep-every-hours must be 0 (off) or between ", kMinHours, " (one second) and ", kMaxHours));
  }
  if (p.keep_best() > 0 && p.metric().empty()) {
    return absl::InvalidArgumentError("keep-best needs a metric name");
  }
  if (p.keep_best() == 0 && !p.metric().empty()) {
    return absl::InvalidArgumentError("a metric is only used with keep-best");
  }
  return absl::OkStatus();
}

bool PolicyIsEmpty(const v1::RetentionPolicy& p) {
  return p.keep_last() == 0 && p.keep_every_steps() == 0 && p.keep_every_hours() == 0 &&
         p.keep_best() == 0;
}

std::string DescribePolicy(const v1::RetentionPolicy& p) {
  if (PolicyIsEmpty(p)) return "none (keep everything)";
  std::vector<std::string> parts;
  if (p.keep_last()) parts.push_back(absl::StrCat("keep-last=", p.keep_last()));
  if (p.keep_every_steps()) parts.push_back(absl::StrCat("keep-every-steps=", p.keep_every_steps()));
  if (p.keep_every_hours()) parts.push_back(absl::StrCat("keep-every-hours=", p.keep_every_hours()));
  if (p.keep_best()) {
    parts.push_back(absl::StrCat("keep-best=", p.keep_best(), "(", p.metric(), ",",
                                 p.maximize() ? "max" : "min", ")"));
  }
  return absl::StrJoin(parts, " ");
}

std::vector<Decision> EvaluateRetention(const v1::RetentionPolicy& policy,
                                        std::vector<RetentionCandidate> candidates,
                                        int64_t first_commit_micros) {
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.step < b.step; });
  const size_t n = candidates.size();
  std::vector<std::set<std::string>> kept(n);
  const bool empty = PolicyIsEmpty(policy);
  if (n > 0) kept[n - 1].insert("newest");
  for (size_t i = 0; i < n; ++i) {
    const RetentionCandidate& c = candidates[i];
    if (empty) kept[i].insert("no-policy");
    if (c.pinned) kept[i].insert("pinned");
    if (c.leased) kept[i].insert("leased");
    if (policy.keep_last() > 0 && static_cast<int64_t>(n - i) <= policy.keep_last()) {
      kept[i].insert("keep-last");
    }
    if (policy.keep_every_steps() > 0 && c.step % policy.keep_every_steps() == 0) {
      kept[i].insert("keep-every-steps");
    }
  }
  if (policy.keep_every_hours() > 0 && n > 0) {
    int64_t anchor = first_commit_micros;
    for (const auto& c : candidates) {
      if (anchor == 0 || c.committed_at_micros < anchor) anchor = c.committed_at_micros;
    }
    const double window = policy.keep_every_hours() * 3600e6;
    std::map<int64_t, size_t> first_in_window;  // window index → candidate
    for (size_t i = 0; i < n; ++i) {
      const int64_t w =
          static_cast<int64_t>(std::floor((candidates[i].committed_at_micros - anchor) / window));
      auto it = first_in_window.find(w);
      if (it == first_in_window.end() ||
          candidates[i].committed_at_micros < candidates[it->second].committed_at_micros) {
        first_in_window[w] = i;
      }
    }
    for (const auto& [w, i] : first_in_window) kept[i].insert("keep-every-hours");
  }
  if (policy.keep_best() > 0) {
    std::vector<size_t> with_metric;
    for (size_t i = 0; i < n; ++i) {
      auto it = candidates[i].metrics.find(policy.metric());
      if (it != candidates[i].metrics.end() && !std::isnan(it->second)) with_metric.push_back(i);
    }
    // Best first; ties go to the newer step.
    std::sort(with_metric.begin(), with_metric.end(), [&](size_t a, size_t b) {
      const double va = candidates[a].metrics.at(policy.metric());
      const double vb = candidates[b].metrics.at(policy.metric());
      if (va != vb) return policy.maximize() ? va > vb : va < vb;
      return candidates[a].step > candidates[b].step;
    });
    for (size_t k = 0; k < with_metric.size() && static_cast<int64_t>(k) < policy.keep_best(); ++k) {
      kept[with_metric[k]].insert("keep-best");
    }
  }
  std::vector<Decision> out;
  for (size_t i = 0; i < n; ++i) {
    Decision d;
    d.step = candidates[i].step;
    // Rule order for display: the configured rules first, then the guards.
    for (const char* rule : {"keep-last", "keep-every-steps", "keep-every-hours", "keep-best",
                             "pinned", "leased", "newest", "no-policy"}) {
      if (kept[i].count(rule)) d.kept_by.push_back(rule);
    }
    d.keep = !d.kept_by.empty();
    d.reason = d.keep ? absl::StrCat("kept by ", absl::StrJoin(d.kept_by, ", "))
                      : absl::StrCat("no rule keeps it (policy: ", DescribePolicy(policy), ")");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace internal
}  // namespace cairn
