#include "bench/checkpoint/torch_baseline.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "bench/checkpoint/bench_util.h"

namespace cairn_bench {

TorchBaseline::TorchBaseline(const std::string& script, const std::string& sizes, const std::string& dir) {
  int to_child[2], from_child[2];
  if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) Die("pipe");
  pid_ = ::fork();
  if (pid_ < 0) Die("fork");
  if (pid_ == 0) {
    ::dup2(to_child[0], 0);
    ::dup2(from_child[1], 1);
    ::close(to_child[1]);
    ::close(from_child[0]);
    ::execl("/usr/bin/python3", "python3", script.c_str(), sizes.c_str(), dir.c_str(),
            static_cast<char*>(nullptr));
    std::perror("exec /usr/bin/python3");
    ::_exit(127);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  in_ = ::fdopen(to_child[1], "w");
  out_ = ::fdopen(from_child[0], "r");
  const std::string ready = ReadLine();
  if (ready.rfind("ready ", 0) != 0) Die("torch baseline did not start: " + ready);
  version_ = ready.substr(6);
}
TorchBaseline::~TorchBaseline() {
  std::fputs("quit\n", in_);
  std::fclose(in_);
  std::fclose(out_);
  int status;
  ::waitpid(pid_, &status, 0);
}
// "save" or "load": the seconds the torch side measured.
double TorchBaseline::Run(const char* cmd) {
  std::fprintf(in_, "%s\n", cmd);
  std::fflush(in_);
  const std::string reply = ReadLine();
  char* end = nullptr;
  const double secs = std::strtod(reply.c_str(), &end);
  if (reply.empty() || end == reply.c_str()) Die(absl::StrCat("torch ", cmd, ": ", reply));
  return secs;
}

std::string TorchBaseline::ReadLine() {
  char line[512];
  if (std::fgets(line, sizeof line, out_) == nullptr) return "(torch baseline exited)";
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace cairn_bench
