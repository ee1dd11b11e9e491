#include "storage/layout.h"

#include "absl/strings/str_cat.h"

namespace cairn {

absl::Status ValidateJobName(absl::string_view job) {
  if (job.empty() || job.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("job name \"", absl::string_view(job.data(), std::min<size_t>(job.size(), 140)),
                     "\" must be 1 to 128 characters"));
  }
  if (job[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("job name \"", job, "\" must not start with '.'"));
  }
  for (char c : job) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("job name \"", job, "\" may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateStep(int64_t step) {
  if (step < 0) return absl::InvalidArgumentError(absl::StrCat("step ", step, " is negative"));
  return absl::OkStatus();
}

std::string CheckpointDir(absl::string_view job, int64_t step) {
  return absl::StrCat(job, "/ckpt-", step);
}
std::string CheckpointPrefix(absl::string_view job, int64_t step) {
  return absl::StrCat(job, "/ckpt-", step, "/variables");
}
std::string StateFilePath(absl::string_view job) { return absl::StrCat(job, "/checkpoint"); }
std::string StateFileEntry(int64_t step) { return absl::StrCat("ckpt-", step, "/variables"); }
std::string StagingDir(absl::string_view job, int64_t step) {
  return absl::StrCat(job, "/.cairn-staging/ckpt-", step);
}

}  // namespace cairn
