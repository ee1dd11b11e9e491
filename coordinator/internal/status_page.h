// The coordinator's status web page: one self-contained HTML document (no
// build step, nothing from a CDN) whose script reads /api/jobs and
// /api/jobs/JOB (status_json.cc) every few seconds and draws
//   - the overview: jobs with the age of their newest commit (red past
//     ?stale=DURATION, default 6h), the shard writers with heartbeat age,
//     streams and bytes written, the version and uptime;
//   - a job (#job=NAME, a link that can be shared): a timeline of its steps
//     (commit time against step, labelled axes, hover details), pending
//     steps with their durable shards, aborted steps with the reason, and
//     every checkpoint with the retention rules keeping it and pins.
// With authorization on it is opened as /?token=TOKEN; the token is sent on
// as a bearer header.
#ifndef CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_
#define CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_

namespace cairn {
namespace internal {

extern const char kStatusPageHtml[];

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_
