#include "coordinator/internal/writer_registry.h"

namespace cairn {
namespace internal {

WriterRegistry::WriterRegistry(Clock* clock, int64_t timeout_ms)
    : clock_(clock), timeout_micros_(timeout_ms * 1000) {}

bool WriterRegistry::LiveLocked(const Writer& w, int64_t now) const {
  if (w.last_heartbeat_micros == 0 || now - w.last_heartbeat_micros > timeout_micros_) return false;
  return w.unreachable_at_micros == 0 || w.last_heartbeat_micros > w.unreachable_at_micros;
}

std::string WriterRegistry::Register(const std::string& address, const std::string& new_id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, w] : writers_) {
    if (w.address == address) {
      w.unreachable_at_micros = 0;
      w.load = Load();  // a restarted writer, maybe another version: features come with its beat
      return id;
    }
  }
  writers_[new_id].address = address;
  return new_id;
}

void WriterRegistry::Recover(const std::string& id, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  Writer& w = writers_[id];
  w.address = address;
  w.last_heartbeat_micros = clock_->NowMicros();
}

bool WriterRegistry::Heartbeat(const std::string& id) { return Heartbeat(id, Load()); }

bool WriterRegistry::Heartbeat(const std::string& id, const Load& load) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = writers_.find(id);
  if (it == writers_.end()) return false;
  // Strictly after any unreachable report, even on a coarse clock.
  it->second.last_heartbeat_micros =
      std::max(clock_->NowMicros(), it->second.unreachable_at_micros + 1);
  it->second.load = load;
  return true;
}

void WriterRegistry::MarkUnreachable(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, w] : writers_) {
    if (w.address == address) {
      w.unreachable_at_micros = std::max(clock_->NowMicros(), w.last_heartbeat_micros);
    }
  }
}

absl::StatusOr<WriterRegistry::Choice> WriterRegistry::Assign() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMicros();
  std::vector<std::map<std::string, Writer>::iterator> live;
  for (auto it = writers_.begin(); it != writers_.end(); ++it) {
    if (LiveLocked(it->second, now)) live.push_back(it);
  }
  if (live.empty()) return absl::UnavailableError("no live shard writers are registered");
  auto chosen = live[next_ % live.size()];
  for (size_t k = 1; k < live.size(); ++k) {
    auto candidate = live[(next_ + k) % live.size()];
    if (candidate->second.active_shards < chosen->second.active_shards) chosen = candidate;
  }
  next_ = (next_ + 1) % live.size();
  ++chosen->second.active_shards;
  return Choice{chosen->first, chosen->second.address, chosen->second.load.features};
}

void WriterRegistry::Release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = writers_.find(id);
  if (it != writers_.end() && it->second.active_shards > 0) --it->second.active_shards;
}

std::vector<std::string> WriterRegistry::LiveAddresses() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMicros();
  std::vector<std::string> out;
  for (const auto& [id, w] : writers_) {
    if (LiveLocked(w, now)) out.push_back(w.address);
  }
  return out;
}

std::vector<WriterRegistry::Info> WriterRegistry::Snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMicros();
  std::vector<Info> out;
  for (const auto& [id, w] : writers_) {
    out.push_back({id, w.address, LiveLocked(w, now), w.active_shards, w.last_heartbeat_micros, w.load});
  }
  return out;
}

}  // namespace internal
}  // namespace cairn
