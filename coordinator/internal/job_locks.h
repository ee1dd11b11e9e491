// One mutex per job name, created on first use and dropped when its last
// user lets go, so asking about any number of unknown job names costs no
// lasting memory.
#ifndef CAIRN_COORDINATOR_INTERNAL_JOB_LOCKS_H_
#define CAIRN_COORDINATOR_INTERNAL_JOB_LOCKS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace cairn {
namespace internal {

struct JobLocksEntry {
  std::mutex mu;
  int users = 0;  // guarded by JobLocks::mu_
};

class JobLocks {
 public:
  class Guard {
   public:
    Guard(Guard&& other) noexcept : locks_(other.locks_), it_(other.it_) { other.locks_ = nullptr; }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() {
      if (locks_ == nullptr) return;
      it_->second->mu.unlock();
      std::lock_guard<std::mutex> lock(locks_->mu_);
      if (--it_->second->users == 0) locks_->entries_.erase(it_);
    }

   private:
    friend class JobLocks;
    Guard(JobLocks* locks, std::map<std::string, std::unique_ptr<JobLocksEntry>>::iterator it)
        : locks_(locks), it_(it) {}
    JobLocks* locks_;
    std::map<std::string, std::unique_ptr<JobLocksEntry>>::iterator it_;
  };

  // Blocks until this thread holds `job`'s lock.
  Guard Lock(const std::string& job) {
    std::map<std::string, std::unique_ptr<JobLocksEntry>>::iterator it;
    {
      std::lock_guard<std::mutex> lock(mu_);
      it = entries_.try_emplace(job, nullptr).first;
      if (!it->second) it->second = std::make_unique<JobLocksEntry>();
      ++it->second->users;
    }
    it->second->mu.lock();
    return Guard(this, it);
  }

  // Jobs with a lock in use (for tests of the bound).
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.size();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<JobLocksEntry>> entries_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_JOB_LOCKS_H_
