#include "client/internal/tensor_feed.h"

#include <utility>

namespace cairn {
namespace internal {

TensorFeed::TensorFeed(const std::vector<SaveTensor>& tensors)
    : closed_(true), closed_from_start_(true) {
  for (const SaveTensor& t : tensors) tensors_.push_back(&t);
}

void TensorFeed::Add(const SaveTensor* t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || aborted_) return;
    tensors_.push_back(t);
  }
  added_.notify_one();
}

void TensorFeed::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  added_.notify_all();
}

void TensorFeed::Abort() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    if (cancel_) cancel_();  // under the lock: the context cannot go away meanwhile
  }
  added_.notify_all();
}

void TensorFeed::SetCancel(std::function<void()> cancel) {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_ = std::move(cancel);
  if (aborted_ && cancel_) cancel_();
}

const SaveTensor* TensorFeed::Get(size_t i) {
  std::unique_lock<std::mutex> lock(mu_);
  added_.wait(lock, [&] { return aborted_ || i < tensors_.size() || closed_; });
  if (aborted_ || i >= tensors_.size()) return nullptr;
  return tensors_[i];
}

bool TensorFeed::aborted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

uint64_t TensorFeed::data_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const SaveTensor* t : tensors_) n += t->data.size();
  return n;
}

}  // namespace internal
}  // namespace cairn
