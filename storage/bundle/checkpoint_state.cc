#include "storage/bundle/checkpoint_state.h"

#include <cstdio>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cairn {
namespace {

std::string FormatDouble(double v) {
  // Shortest representation that round-trips, like Python's repr.
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    double back;
    if (absl::SimpleAtod(buf, &back) && back == v) break;
  }
  return buf;
}

}  // namespace

std::string FormatStateFile(const CheckpointStateFile& state) {
  std::string out;
  auto quoted = [](const std::string& s) { return absl::StrCat("\"", absl::CEscape(s), "\""); };
  if (!state.model_checkpoint_path.empty()) {
    absl::StrAppend(&out, "model_checkpoint_path: ", quoted(state.model_checkpoint_path), "\n");
  }
  for (const std::string& p : state.all_model_checkpoint_paths) {
    absl::StrAppend(&out, "all_model_checkpoint_paths: ", quoted(p), "\n");
  }
  for (double t : state.all_model_checkpoint_timestamps) {
    absl::StrAppend(&out, "all_model_checkpoint_timestamps: ", FormatDouble(t), "\n");
  }
  if (state.last_preserved_timestamp != 0) {
    absl::StrAppend(&out, "last_preserved_timestamp: ", FormatDouble(state.last_preserved_timestamp),
                    "\n");
  }
  return out;
}

absl::StatusOr<CheckpointStateFile> ParseStateFile(absl::string_view text) {
  CheckpointStateFile state;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint state line ", line_no, ": no ':'"));
    }
    absl::string_view field = absl::StripAsciiWhitespace(line.substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    auto parse_string = [&](std::string* out) -> absl::Status {
      if (value.size() < 2 || (value.front() != '"' && value.front() != '\'') ||
          value.back() != value.front()) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint state line ", line_no, ": expected a quoted string"));
      }
      std::string error;
      if (!absl::CUnescape(value.substr(1, value.size() - 2), out, &error)) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint state line ", line_no, ": ", error));
      }
      return absl::OkStatus();
    };
    auto parse_double = [&](double* out) -> absl::Status {
      if (!absl::SimpleAtod(value, out)) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint state line ", line_no, ": expected a number"));
      }
      return absl::OkStatus();
    };
    absl::Status s;
    if (field == "model_checkpoint_path") {
      s = parse_string(&state.model_checkpoint_path);
    } else if (field == "all_model_checkpoint_paths") {
      state.all_model_checkpoint_paths.emplace_back();
      s = parse_string(&state.all_model_checkpoint_paths.back());
    } else if (field == "all_model_checkpoint_timestamps") {
      state.all_model_checkpoint_timestamps.push_back(0);
      s = parse_double(&state.all_model_checkpoint_timestamps.back());
    } else if (field == "last_preserved_timestamp") {
      s = parse_double(&state.last_preserved_timestamp);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint state line ", line_no, ": unknown field \"", field, "\""));
    }
    if (!s.ok()) return s;
  }
  return state;
}

}  // namespace cairn
