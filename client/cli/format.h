// Text and JSON renderings the CLI prints.
#ifndef CAIRN_CLIENT_CLI_FORMAT_H_
#define CAIRN_CLIENT_CLI_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/client.h"

namespace cairn {
namespace cli {

// "512 B", "3.2 MiB", "1.0 GiB" (binary units, one decimal above bytes).
std::string HumanBytes(uint64_t bytes);

// "45s", "12m05s", "3h05m", "2d04h": an age for people.
std::string HumanAge(int64_t micros);

// `cairn list` as a table: one line per checkpoint with step, commit time,
// size, shards, metrics, pinned and the retention rules keeping it. With
// `all` (list --all) also a STATE column, "k/N" durable shards of a step
// not committed, and a NOTE: a pending step's age, an aborted one's reason.
// `now_micros` is the wall clock the ages are measured against.
std::string CheckpointTable(const std::string& job, const std::vector<CheckpointSummary>& ckpts,
                            bool all = false, int64_t now_micros = 0);

// `cairn list --json`: {"job": JOB, "checkpoints": [{"step", "committed_at",
// "bytes", "num_shards", "metrics": {NAME: VALUE}, "pinned", "kept_by",
// "prefix"}]}, pretty-printed, newline-terminated. With `all`, each entry
// also carries "state", "shards_durable", "created_at" and, when aborted,
// "abort_reason"; "committed_at" is null for a step not committed.
std::string CheckpointJson(const std::string& job, const std::vector<CheckpointSummary>& ckpts,
                           bool all = false);

// `cairn jobs`: one line per job with its newest committed step and that
// commit's age, and how many checkpoints it has in each state.
std::string JobsTable(const std::vector<JobSummary>& jobs, int64_t now_micros);
// `cairn jobs --json`: {"jobs": [{"job", "newest_step" (null if none),
// "newest_committed_at" (RFC 3339, or null), "committed", "pending",
// "aborted", "bytes"}]}.
std::string JobsJson(const std::vector<JobSummary>& jobs);

// A retention policy on one line, as `cairn policy` prints it:
// "keep-last=3 keep-every-steps=1000 keep-every-hours=24 keep-best=2(loss,min)",
// only the rules that are on; "none (keep everything)" when none is.
std::string PolicyString(const RetentionPolicy& policy);

// `cairn gc`: one line per checkpoint ("keep" with the rules keeping it, or
// "delete" / "would delete" with the reason), then a summary line.
std::string GcText(const std::string& job, bool dry_run, const GcResult& result);

// `cairn gc --json`: {"job", "dry_run", "deleted", "decisions": [{"step",
// "keep", "kept_by", "reason"}]}, pretty-printed, newline-terminated. In a
// dry run "deleted" counts the checkpoints that would be deleted.
std::string GcJson(const std::string& job, bool dry_run, const GcResult& result);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_CLIENT_CLI_FORMAT_H_
