#include "proto/layout.h"

#include "absl/strings/str_cat.h"

namespace cairn {

absl::Status ValidateJobName(absl::string_view job) {
  constexpr size_t kMaxJobNameLength = 128;
  if (job.empty()) return absl::InvalidArgumentError("job name is empty");
  if (job.size() > kMaxJobNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("job name \"", job.substr(0, 32), "...\" has ",
                                                   job.size(), " characters; at most ",
                                                   kMaxJobNameLength, " are allowed"));
  }
  if (job[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("job name \"", job, "\" must not start with '.'"));
  }
  if (job.find("..") != absl::string_view::npos) {
    // Paths under the job would read as parent-directory steps.
    return absl::InvalidArgumentError(absl::StrCat("job name \"", job, "\" must not contain \"..\""));
  }
  for (char c : job) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("job name \"", job, "\" may hold only letters, digits, '.', '_' and '-'"));
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
