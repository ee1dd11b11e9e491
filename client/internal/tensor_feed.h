// The tensors of one shard's save, as the thread streaming them reads them:
// all there from the start (Client::SaveShard), or added while the stream
// is already sending the first ones (SaveStream), so that preparing a state
// of many small tensors overlaps with sending it.
#ifndef CAIRN_CLIENT_INTERNAL_TENSOR_FEED_H_
#define CAIRN_CLIENT_INTERNAL_TENSOR_FEED_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "client/client.h"

namespace cairn {
namespace internal {

class TensorFeed {
 public:
  // A closed feed of `tensors` (which must outlive it).
  explicit TensorFeed(const std::vector<SaveTensor>& tensors);
  // An open feed: Add, then Close (or Abort).
  TensorFeed() = default;
  TensorFeed(const TensorFeed&) = delete;
  TensorFeed& operator=(const TensorFeed&) = delete;

  // `t` must stay valid, at its address, as long as the feed.
  void Add(const SaveTensor* t);
  // No more tensors: the save ends after the last one added.
  void Close();
  // The save is abandoned: the stream must not end as if complete. Runs
  // the cancel hook, if one is set.
  void Abort();
  // What Abort runs to interrupt the streaming thread's call in progress
  // (ClientContext::TryCancel); cleared (nullptr) before that call's context
  // goes away. Runs at once if the feed is aborted already.
  void SetCancel(std::function<void()> cancel);

  // Tensor #i, waiting until it is added; nullptr once the feed is closed
  // before it (the end), or aborted.
  const SaveTensor* Get(size_t i);
  bool aborted() const;
  // Whether the feed was closed from the start (its size is known).
  bool closed_from_start() const { return closed_from_start_; }
  // The data bytes of every tensor, for a feed closed from the start.
  uint64_t data_bytes() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable added_;
  std::deque<const SaveTensor*> tensors_;
  bool closed_ = false;
  bool aborted_ = false;
  bool closed_from_start_ = false;
  std::function<void()> cancel_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_TENSOR_FEED_H_
