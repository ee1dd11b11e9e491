// The coordinator's status web page: one self-contained HTML document whose
// script reads /api/jobs and /api/jobs/JOB and draws, per job, a timeline of
// its checkpoints (step against commit time, size, state, pins, the
// retention rules keeping each).
#ifndef CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_
#define CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_

namespace cairn {
namespace internal {

extern const char kStatusPageHtml[];

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_STATUS_PAGE_H_
