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

// `cairn list` as a table: one line per checkpoint with step, commit time,
// size, shards, metrics, pinned and the retention rules keeping it.
std::string CheckpointTable(const std::string& job, const std::vector<CheckpointSummary>& ckpts);

// `cairn list --json`: {"job": JOB, "checkpoints": [{"step", "committed_at",
// "bytes", "num_shards", "metrics": {NAME: VALUE}, "pinned", "kept_by",
// "prefix"}]}, pretty-printed, newline-terminated.
std::string CheckpointJson(const std::string& job, const std::vector<CheckpointSummary>& ckpts);

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
