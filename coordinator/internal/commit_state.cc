#include "coordinator/internal/commit_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace cairn {
namespace internal {

const char* StateName(v1::CheckpointState state) {
  switch (state) {
    case v1::PENDING: return "pending";
    case v1::MERGING: return "merging";
    case v1::COMMITTING: return "committing";
    case v1::COMMITTED: return "committed";
    case v1::ABORTING: return "aborting";
    case v1::ABORTED: return "aborted";
    case v1::DELETING: return "deleting";
    default: return "unknown";
  }
}

bool CanTransition(v1::CheckpointState from, v1::CheckpointState to) {
  switch (from) {
    case v1::PENDING: return to == v1::MERGING || to == v1::ABORTING;
    case v1::MERGING: return to == v1::COMMITTING || to == v1::ABORTING;
    case v1::COMMITTING: return to == v1::COMMITTED;
    case v1::COMMITTED: return to == v1::DELETING;
    case v1::ABORTING: return to == v1::ABORTED;
    default: return false;
  }
}

absl::Status Transition(v1::CheckpointRecord* record, v1::CheckpointState to) {
  if (!CanTransition(record->state(), to)) {
    return absl::InternalError(absl::StrCat("checkpoint ", record->job(), "/", record->step(),
                                            ": no transition from ", StateName(record->state()),
                                            " to ", StateName(to)));
  }
  record->set_state(to);
  return absl::OkStatus();
}

bool Undecided(v1::CheckpointState state) { return state == v1::PENDING || state == v1::MERGING; }

bool AllShardsDurable(const v1::CheckpointRecord& record) {
  return std::all_of(record.shards().begin(), record.shards().end(),
                     [](const v1::ShardRecord& s) { return s.durable(); });
}

v1::CheckpointRecord CopyWithoutShards(v1::CheckpointRecord* record) {
  google::protobuf::RepeatedPtrField<v1::ShardRecord> shards;
  shards.Swap(record->mutable_shards());
  v1::CheckpointRecord copy = *record;
  shards.Swap(record->mutable_shards());
  return copy;
}

}  // namespace internal
}  // namespace cairn
