#include "tests/testing/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace cairn {
namespace testing {
namespace {

void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = ::opendir(path.c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") RemoveTree(path + "/" + n);
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

}  // namespace

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/cairn-test-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("CAIRN_KEEP_TEST_DIRS") == nullptr) RemoveTree(path_);
}

std::string SharedDir() {
  const char* env = std::getenv("CAIRN_SHARED_DIR");
  std::string dir = env && *env ? env : CAIRN_SHARED_DIR;
  struct stat st;
  if (::stat((dir + "/testdata/tf").c_str(), &st) != 0) return "";
  return dir;
}

std::vector<Vector> TfVectors() {
  std::vector<Vector> out;
  const std::string shared = SharedDir();
  if (shared.empty()) return out;
  const std::string root = shared + "/testdata/tf";
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string dir = root + "/" + name;
    DIR* sub = ::opendir(dir.c_str());
    if (sub == nullptr) continue;
    while (struct dirent* f = ::readdir(sub)) {
      std::string file = f->d_name;
      const std::string suffix = ".index";
      if (file.size() > suffix.size() &&
          file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0) {
        out.push_back({name + "/" + file.substr(0, file.size() - suffix.size()),
                       dir + "/" + file.substr(0, file.size() - suffix.size())});
      }
    }
    ::closedir(sub);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const Vector& a, const Vector& b) { return a.name < b.name; });
  return out;
}

std::string BinPath(const std::string& name) { return std::string(CAIRN_BIN_DIR) + "/" + name; }

namespace {

// Spawns argv with stdin from /dev/null and stdout/stderr on `child_out` /
// `child_err` (closed here once the child holds them), and collects what
// arrives on `read_out` / `read_err` until both report EOF (or EIO: a
// terminal nobody holds any more), then waits for the child.
RunResult SpawnAndCollect(const std::vector<std::string>& argv, int child_out, int child_err,
                          int read_out, int read_err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, child_out, 1);
  posix_spawn_file_actions_adddup2(&actions, child_err, 2);
  posix_spawn_file_actions_addclose(&actions, read_out);
  posix_spawn_file_actions_addclose(&actions, read_err);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(child_out);
  ::close(child_err);
  RunResult result;
  if (rc != 0) {
    ::close(read_out);
    ::close(read_err);
    result.err = std::string("spawn failed: ") + std::strerror(rc);
    return result;
  }
  struct pollfd fds[2] = {{read_out, POLLIN, 0}, {read_err, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace

RunResult RunCairn(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("cairn"));
  return Run(args);
}

RunResult Run(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) throw std::runtime_error("pipe failed");
  return SpawnAndCollect(argv, out_pipe[1], err_pipe[1], out_pipe[0], err_pipe[0]);
}

RunResult RunWithStderrOnTerminal(const std::vector<std::string>& argv, int columns) {
  int master = -1, slave = -1;
  struct winsize ws {};
  ws.ws_col = static_cast<unsigned short>(columns);
  ws.ws_row = 24;
  if (::openpty(&master, &slave, nullptr, nullptr, &ws) != 0) {
    throw std::runtime_error(std::string("openpty: ") + std::strerror(errno));
  }
  struct termios raw;
  ::tcgetattr(slave, &raw);
  ::cfmakeraw(&raw);
  ::tcsetattr(slave, TCSANOW, &raw);
  int out_pipe[2];
  if (::pipe(out_pipe) != 0) throw std::runtime_error("pipe failed");
  return SpawnAndCollect(argv, out_pipe[1], slave, out_pipe[0], master);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << data;
}

void CopyFile(const std::string& from, const std::string& to) { WriteFile(to, ReadFile(from)); }

}  // namespace testing
}  // namespace cairn
