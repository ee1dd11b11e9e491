// `cairn policy: set or show a job's retention policy.
#include "client/cli/commands.h"

#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/common.h"
#include "proto/cmdline/flags.h"
#include "client/cli/format.h"
#include "client/client.h"

namespace cairn {
namespace cli {

constexpr char kPolicyHelp[] =
    "usage: cairn policy --coordinator=ADDR --job=JOB [--keep-last=N] [--keep-every-steps=S]\n"
    "                    [--keep-every-hours=H] [--keep-best=K --metric=NAME [--mode=min|max]]\n"
    "       cairn policy --coordinator=ADDR --job=JOB --show [--json]\n"
    "Sets JOB's retention policy, replacing the previous one, and prints it. Rules\n"
    "combine as a union: a committed checkpoint is kept if any rule keeps it.\n"
    "  --keep-last=N         the N newest (highest steps)\n"
    "  --keep-every-steps=S  every step divisible by S\n"
    "  --keep-every-hours=H  the first checkpoint of each H-hour window since the\n"
    "                        job's first commit (H may be fractional)\n"
    "  --keep-best=K         the K best by --metric=NAME (saved with --metric on\n"
    "                        save); --mode=min (default) or max says which is best\n"
    "0 turns a rule off; no rule flags clears the policy: keep everything. The\n"
    "newest checkpoint, pinned ones (cairn pin) and ones being restored are always\n"
    "kept. The policy applies at the next commit or cairn gc.\n"
    "--show prints the current policy without changing it.\n"
    "A --metric that none of the job's committed checkpoints has is refused\n"
    "(a typo would keep-best nothing); --force sets it anyway, e.g. for a\n"
    "metric only later checkpoints will carry.\n"
    "Example: cairn policy --coordinator=127.0.0.1:7070 --job=bert --keep-last=3 \\\n"
    "           --keep-best=1 --metric=loss --mode=min\n";

int RunPolicy(const std::vector<std::string>& args) {
  Flags flags;
  int rc = ParseOrExit(args,
                       {"coordinator", "job", "keep-last", "keep-every-steps", "keep-every-hours",
                        "keep-best", "metric", "mode", "show", "json", "force"},
                       kPolicyHelp, &flags);
  if (rc >= 0) return rc;
  if (!flags.positional().empty()) return UsageError("policy takes no positional arguments");
  std::string coordinator, job;
  rc = CoordinatorAndJob(flags, &coordinator, &job);
  if (rc >= 0) return rc;
  const std::vector<std::string> rule_flags = {"keep-last", "keep-every-steps", "keep-every-hours",
                                               "keep-best", "metric", "mode"};
  const bool show = flags.GetBool("show");
  if (show) {
    for (const std::string& name : rule_flags) {
      if (flags.Has(name)) {
        return UsageError(absl::StrCat("--show prints the policy of job ", job,
                                       "; it takes no rule flags (--", name, ")"));
      }
    }
  }

  RetentionPolicy policy;
  for (const auto& [name, field] :
       std::vector<std::pair<std::string, int64_t*>>{{"keep-last", &policy.keep_last},
                                                     {"keep-every-steps", &policy.keep_every_steps},
                                                     {"keep-best", &policy.keep_best}}) {
    auto v = flags.GetInt(name, 0, INT64_MAX);
    if (!v.ok()) return UsageError(std::string(v.status().message()));
    *field = v->value_or(0);
  }
  if (auto hours = flags.Get("keep-every-hours")) {
    double h;
    if (!absl::SimpleAtod(*hours, &h) || !std::isfinite(h) || h < 0) {
      return UsageError(absl::StrCat("--keep-every-hours=", *hours,
                                     ": expected a non-negative number of hours, e.g. 24 or 0.5"));
    }
    policy.keep_every_hours = h;
  }
  if (auto metric = flags.Get("metric")) {
    if (metric->empty() || *metric == "true") return UsageError("--metric needs a NAME");
    policy.metric = *metric;
  }
  if (auto mode = flags.Get("mode")) {
    if (*mode != "min" && *mode != "max") {
      return UsageError(absl::StrCat("--mode=", *mode, ": expected min or max"));
    }
    policy.maximize = *mode == "max";
  }
  if (policy.keep_best > 0 && policy.metric.empty()) {
    return UsageError(absl::StrCat("job ", job, ": --keep-best=", policy.keep_best,
                                   " needs --metric=NAME (the metric that ranks checkpoints)"));
  }
  if (policy.keep_best == 0 && (flags.Has("metric") || flags.Has("mode"))) {
    return UsageError(absl::StrCat("job ", job, ": --", flags.Has("metric") ? "metric" : "mode",
                                   " goes with --keep-best=K (K >= 1)"));
  }
  if (absl::Status s = ValidateRetentionPolicy(job, policy); !s.ok()) {
    return UsageError(std::string(s.message()));
  }

  auto client = ConnectTo(flags, coordinator);
  if (!client.ok()) return Failed(client.status());
  if (show) {
    auto current = (*client)->GetPolicy(job);
    if (!current.ok()) return Failed(current.status());
    policy = *std::move(current);
  } else {
    if (!policy.metric.empty() && !flags.GetBool("force")) {
      auto ckpts = (*client)->List(job);
      if (!ckpts.ok()) return Failed(ckpts.status());
      std::set<std::string> names;
      for (const CheckpointSummary& c : *ckpts) {
        for (const auto& m : c.metrics) names.insert(m.first);
      }
      if (!ckpts->empty() && !names.count(policy.metric)) {
        const std::string hint = cmdline::DidYouMean(policy.metric, names);
        return Failed(absl::FailedPreconditionError(absl::StrCat(
            "job ", job, ": no committed checkpoint has a metric \"", policy.metric, "\"",
            hint.empty() ? "" : absl::StrCat(" (did you mean \"", hint, "\"?)"), "; they have ",
            names.empty() ? "no metrics" : absl::StrCat("\"", absl::StrJoin(names, "\", \""), "\""),
            ". --force sets the policy anyway")));
      }
    }
    if (absl::Status s = (*client)->SetPolicy(job, policy); !s.ok()) return Failed(s);
  }
  if (flags.GetBool("json")) {
    nlohmann::json out = {{"job", job},
                          {"keep_last", policy.keep_last},
                          {"keep_every_steps", policy.keep_every_steps},
                          {"keep_every_hours", policy.keep_every_hours},
                          {"keep_best", policy.keep_best},
                          {"metric", policy.metric},
                          {"mode", policy.maximize ? "max" : "min"}};
    std::cout << out.dump(2) << "\n";
    return kOk;
  }
  std::cout << "retention policy of job " << job << ": " << PolicyString(policy)
            << "\n";
  return kOk;
}

}  // namespace cli
}  // namespace cairn
