// Named sync points: places in the servers' code where tests hook in, as
// RocksDB's SyncPoint does. Production code only names the point:
//
//   CAIRN_SYNC_POINT("after_merge");
//
// and a test (in-process) or a server's testing flag (`--crash-at=NAME` of
// cairn-coordinator) installs what happens there: block until the test has
// sent a racing call, count passes, or exit abruptly as a crash would.
// With no callback installed a point costs one relaxed atomic load.
//
// Thread-safe. Callbacks run on the thread that reaches the point, with no
// lock of the registry held (they may block, or clear themselves).
#ifndef CAIRN_OBSERVABILITY_SYNC_POINT_H_
#define CAIRN_OBSERVABILITY_SYNC_POINT_H_

#include <functional>
#include <string>

namespace cairn {
namespace sync_point {

using Callback = std::function<void()>;

// Installs `callback` at `name` (replacing an earlier one).
void Set(const std::string& name, Callback callback);
// Removes the callback at `name`, if any.
void Clear(const std::string& name);
// Removes every callback.
void ClearAll();
// Runs the callback installed at `name`, if any.
void Process(const char* name);

// Exit code of a process stopped at a crash point (InstallCrash).
constexpr int kCrashExitCode = 86;
// Installs at `name` a callback that logs the point and ends the process at
// once with kCrashExitCode (no destructors, no flushing beyond stderr).
void InstallCrash(const std::string& name);

}  // namespace sync_point
}  // namespace cairn

#define CAIRN_SYNC_POINT(name) ::cairn::sync_point::Process(name)

#endif  // CAIRN_OBSERVABILITY_SYNC_POINT_H_
