// Which committed checkpoints a job's retention policy keeps: a pure
// function of the policy, the checkpoints and the job's first commit time,
// so it is tested on its own over simulated days.
//
// Rules combine as a union (kept if any rule keeps it):
//   keep-last N         the N highest steps
//   keep-every-steps S  steps divisible by S
//   keep-every-hours H  the first committed in each H-hour window counted
//                       from the job's first commit (TensorFlow's
//                       keep_checkpoint_every_n_hours, made deterministic)
//   keep-best K         the K best values of the metric (min or max);
//                       checkpoints without it are not candidates
// and always: "newest" (the highest step), "pinned", "leased".
// An empty policy keeps everything ("no-policy").
#ifndef CAIRN_COORDINATOR_INTERNAL_RETENTION_H_
#define CAIRN_COORDINATOR_INTERNAL_RETENTION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/cairn.pb.h"

namespace cairn {
namespace internal {

struct RetentionCandidate {
  int64_t step = 0;
  int64_t committed_at_micros = 0;
  std::map<std::string, double> metrics;
  bool pinned = false;
  bool leased = false;
};

struct Decision {
  int64_t step = 0;
  bool keep = true;
  std::vector<std::string> kept_by;
  std::string reason;
};

// InvalidArgument if the policy is malformed (negative counts, keep-best
// without a metric, non-finite hours).
absl::Status ValidatePolicy(const v1::RetentionPolicy& policy);

bool PolicyIsEmpty(const v1::RetentionPolicy& policy);

// One decision per candidate, ascending by step. `first_commit_micros` is the
// job's first commit ever (0: the earliest candidate's).
std::vector<Decision> EvaluateRetention(const v1::RetentionPolicy& policy,
                                        std::vector<RetentionCandidate> candidates,
                                        int64_t first_commit_micros);

// "keep-last=3 keep-every-steps=10 keep-best=1(loss,min)".
std::string DescribePolicy(const v1::RetentionPolicy& policy);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_RETENTION_H_
