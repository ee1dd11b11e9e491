// The commit protocol's state machine, per checkpoint (one catalog record):
//
//   PENDING ──all shards durable──▶ MERGING ──merged, decided──▶ COMMITTING ──published──▶ COMMITTED
//      │                               │                                                      │
//      └──timeout / refused──▶ ABORTING ◀──merge refused, timeout / rollback                  ▼
//                                 │                                                     DELETING ──▶ (gone)
//                                 ▼                                         (retention, rollback)
//                              ABORTED   (the step may be begun again)
//
// and per shard attempt: begun (a token) → durable → superseded (a retry
// while PENDING gets a new token; the old attempt's files are cleaned up).
//
// Rules the service keeps, each checked here or at its one call site:
// - Every transition is one synced catalog write (Catalog::PutCheckpoint).
// - Shards are begun, retried and reported durable only while PENDING. The
//   report that makes the last shard durable moves the record to MERGING in
//   the same write, so no attempt can change once the merge has begun: a
//   retry then is refused (FailedPrecondition), never acknowledged without
//   being in the result.
// - Only a MERGING record is decided, and only if it is still MERGING with
//   the same attempts after the merge returns.
// - COMMITTING is the decision: from there the commit finishes, whatever
//   crashes. ABORTING likewise always finishes as ABORTED.
#ifndef CAIRN_COORDINATOR_INTERNAL_COMMIT_STATE_H_
#define CAIRN_COORDINATOR_INTERNAL_COMMIT_STATE_H_

#include "absl/status/status.h"
#include "proto/catalog.pb.h"

namespace cairn {
namespace internal {

// "pending", "merging", ... (lower case, for messages and JSON).
const char* StateName(v1::CheckpointState state);

// Whether the state machine above has the edge from → to.
bool CanTransition(v1::CheckpointState from, v1::CheckpointState to);

// Sets record->state to `to`, or Internal (a bug) if the edge does not exist.
absl::Status Transition(v1::CheckpointRecord* record, v1::CheckpointState to);

// Not yet decided either way (PENDING or MERGING).
bool Undecided(v1::CheckpointState state);

bool AllShardsDurable(const v1::CheckpointRecord& record);

// A copy of `record` without its shards, which are not copied (a step may
// have 100,000): they are set aside during the copy and put back.
v1::CheckpointRecord CopyWithoutShards(v1::CheckpointRecord* record);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_COMMIT_STATE_H_
