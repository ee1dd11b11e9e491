#include "observability/sync_point.h"

#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "observability/log.h"

namespace cairn {
namespace sync_point {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Callback>> callbacks;
  std::atomic<int> size{0};
};

Registry& Get() {
  static auto* registry = new Registry;  // never destroyed: points may run at exit
  return *registry;
}

}  // namespace

void Set(const std::string& name, Callback callback) {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  r.callbacks[name] = std::make_shared<Callback>(std::move(callback));
  r.size.store(static_cast<int>(r.callbacks.size()), std::memory_order_relaxed);
}

void Clear(const std::string& name) {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  r.callbacks.erase(name);
  r.size.store(static_cast<int>(r.callbacks.size()), std::memory_order_relaxed);
}

void ClearAll() {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  r.callbacks.clear();
  r.size.store(0, std::memory_order_relaxed);
}

void Process(const char* name) {
  Registry& r = Get();
  if (r.size.load(std::memory_order_relaxed) == 0) return;
  std::shared_ptr<Callback> callback;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.callbacks.find(name);
    if (it == r.callbacks.end()) return;
    callback = it->second;
  }
  (*callback)();
}

void InstallCrash(const std::string& name) {
  Set(name, [name] {
    logging::Log(absl::StrCat("crash point ", name, " reached: exiting abruptly (testing)"));
    ::_exit(kCrashExitCode);
  });
}

}  // namespace sync_point
}  // namespace cairn
