// Helpers shared by Cairn's tests: scratch directories, the shared test
// material, and running real executables.
#ifndef CAIRN_TESTS_TESTING_TEST_UTIL_H_
#define CAIRN_TESTS_TESTING_TEST_UTIL_H_

#include <string>
#include <vector>

namespace cairn {
namespace testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction
// unless CAIRN_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ../shared beside the checkout, or "" if absent (tests then GTEST_SKIP).
std::string SharedDir();
// The real TensorFlow checkpoints: {directory name, prefix path}.
struct Vector {
  std::string name;
  std::string prefix;
};
std::vector<Vector> TfVectors();

// build/bin/NAME
std::string BinPath(const std::string& name);

struct RunResult {
  int exit_code = -1;  // -1 if killed by a signal
  std::string out;
  std::string err;
};
// Runs argv[0] with arguments (no shell), capturing stdout and stderr.
RunResult Run(const std::vector<std::string>& argv);
// Runs build/bin/cairn with `args`.
RunResult RunCairn(std::vector<std::string> args);
// Run, but with stderr on a pseudo-terminal of `columns` columns in raw mode
// (bytes pass unchanged): `err` is what the terminal received.
RunResult RunWithStderrOnTerminal(const std::vector<std::string>& argv, int columns);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& data);
void CopyFile(const std::string& from, const std::string& to);

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_TEST_UTIL_H_
