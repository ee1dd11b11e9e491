// Saving: SaveShard streams one worker's tensors to the shard writer the
// coordinator assigns; SaveShardAsync snapshots them first and streams in the
// background.
#include "client/client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/internal/client_rep.h"
#include "client/internal/progress.h"
#include "client/internal/shard_stream.h"
#include "client/internal/tensor_feed.h"
#include "client/internal/validate.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/status_macros.h"

namespace cairn {

using internal::RpcError;
namespace v1 = ::cairn::v1;

SaveHandle::SaveHandle(std::shared_ptr<Rep> rep) : rep_(std::move(rep)) {}
SaveHandle::~SaveHandle() = default;

absl::StatusOr<SaveShardResult> SaveHandle::Wait() {
  std::unique_lock<std::mutex> lock(rep_->mu);
  rep_->cv.wait(lock, [this] { return rep_->done; });
  rep_->waited = true;
  return rep_->result;
}

bool SaveHandle::Done() const {
  std::lock_guard<std::mutex> lock(rep_->mu);
  return rep_->done;
}

int64_t SaveHandle::durable_after_micros() const {
  std::lock_guard<std::mutex> lock(rep_->mu);
  return rep_->durable_after_micros;
}


absl::StatusOr<SaveShardResult> Client::SaveShard(const SaveShardOptions& options,
                                                  const std::vector<SaveTensor>& tensors) {
  RETURN_IF_ERROR(internal::ValidateSaveShard(options, tensors));
  internal::TensorFeed feed(tensors);
  return SaveFromFeed(options, &feed);
}

absl::StatusOr<SaveShardResult> Client::SaveFromFeed(const SaveShardOptions& options,
                                                     internal::TensorFeed* feed) {
  const std::string what = absl::StrCat("saving shard ", options.shard_index, "/",
                                        options.num_shards, " of ", options.job, "/",
                                        options.step);

  // A writer that cannot be reached (it died, or is cut off) costs one more
  // attempt, not the save: the shard is begun again on another writer, and
  // the coordinator is told which ones failed so it skips them until they
  // heartbeat again.
  constexpr int kMaxWriterAttempts = 4;
  std::vector<std::string> unreachable;
  v1::SaveShardResponse response;
  // A save fed while it streams asks for a writer once its first tensor is
  // there (or it is closed): one abandoned before that (its caller's
  // preparation failed) never reaches the coordinator.
  feed->Get(0);
  const auto abandoned_error = [&] {
    return absl::CancelledError(absl::StrCat(what, ": abandoned before all its tensors were given"));
  };
  if (feed->aborted()) return abandoned_error();
  for (int attempt = 1;; ++attempt) {
    // 1. The coordinator assigns a writer and an attempt.
    v1::BeginShardRequest begin;
    begin.set_job(options.job);
    begin.set_step(options.step);
    begin.set_shard_index(options.shard_index);
    begin.set_num_shards(options.num_shards);
    begin.mutable_metrics()->insert(options.metrics.begin(), options.metrics.end());
    for (const std::string& w : unreachable) begin.add_unreachable_writers(w);
    v1::BeginShardResponse assigned;
    {
      auto ctx = rep_->UnaryContext();
      feed->SetCancel([c = ctx.get()] { c->TryCancel(); });
      grpc::Status s = rep_->coordinator->BeginShard(ctx.get(), begin, &assigned);
      feed->SetCancel(nullptr);
      if (feed->aborted()) return abandoned_error();
      if (!s.ok()) {
        absl::Status error = RpcError(s, rep_->CoordinatorName(), what);
        if (unreachable.empty()) return error;
        return absl::Status(error.code(), absl::StrCat(error.message(), " (after shard writer ",
                                                       unreachable.back(), " was unreachable)"));
      }
    }
    if (assigned.writer_address().empty()) {
      return absl::InternalError(absl::StrCat(what, ": ", rep_->CoordinatorName(),
                                              " assigned no shard writer"));
    }
    const std::string writer_name = absl::StrCat("shard writer ", assigned.writer_address());

    // 2. Stream the shard to that writer.
    ASSIGN_OR_RETURN(auto writer_channel, rep_->WriterChannel(assigned.writer_address()));
    auto ctx = rep_->NewContext(std::chrono::milliseconds(rep_->options.save_timeout_ms));
    auto stream = std::make_unique<internal::ShardStream>(writer_channel, ctx.get(), &response);
    // Abandoning interrupts a write stuck behind flow control at once.
    feed->SetCancel([c = ctx.get()] { c->TryCancel(); });
    struct ClearCancel {
      internal::TensorFeed* feed;
      ~ClearCancel() { feed->SetCancel(nullptr); }
    } clear_cancel{feed};

    // (A feed still being added to has no progress callback: BeginSaveShard.)
    internal::ProgressCounter progress(options.progress,
                                       feed->closed_from_start() ? feed->data_bytes() : 0);
    bool abandoned = false;
    bool sent = [&] {
      progress.Begin();
      v1::SaveShardMessage msg;
      v1::SaveShardHeader* header = msg.mutable_header();
      header->set_job(options.job);
      header->set_step(options.step);
      header->set_shard_index(options.shard_index);
      header->set_num_shards(options.num_shards);
      header->set_token(assigned.token());
      header->set_staging_prefix(assigned.staging_prefix());
      if (!stream->Write(msg)) return false;

      // Data chunks go out straight from the tensors' memory (ShardStream).
      // Runs of small tensors go as batches when the writer takes them:
      // one header message and one data message for up to kBatchBytes.
      const bool batches = assigned.writer_features() & v1::WRITER_FEATURE_TENSOR_BATCHES;
      std::vector<absl::string_view> pieces;
      v1::TensorBatch batch_headers;  // reused: Clear keeps the headers' memory
      // Tensor #i, waiting for the caller to add it (nullptr: no more).
      const SaveTensor* next = feed->Get(0);
      for (size_t i = 0; next != nullptr;) {
        if (batches && internal::Batchable(*next)) {
          v1::TensorBatch* batch = &batch_headers;
          batch->Clear();
          pieces.clear();
          size_t bytes = 0, data = 0;
          for (; next != nullptr && internal::Batchable(*next) && bytes < internal::kBatchBytes &&
                 batch->tensors_size() < internal::kBatchTensors;
               next = feed->Get(++i)) {
            internal::FillTensorHeader(*next, batch->add_tensors());
            bytes += internal::BatchedBytes(*next);
            data += next->data.size();
            if (!next->data.empty()) pieces.push_back(next->data);
          }
          if (next == nullptr && feed->aborted()) break;  // never sent as if complete
          if (!stream->WriteBatch(*batch)) return false;
          if (!pieces.empty() && !stream->WriteData(pieces)) return false;
          progress.Add(data);
          continue;
        }
        const SaveTensor& t = *next;
        next = feed->Get(++i);
        v1::SaveShardMessage tensor_msg;
        internal::FillTensorHeader(t, tensor_msg.mutable_tensor());
        if (!stream->Write(tensor_msg)) return false;
        for (size_t pos = 0; pos < t.data.size(); pos += rpc::kChunkBytes) {
          const size_t n = std::min(rpc::kChunkBytes, t.data.size() - pos);
          if (!stream->WriteData(t.data.data() + pos, n)) return false;
          progress.Add(n);
        }
      }
      if (feed->aborted()) {
        abandoned = true;
        return false;
      }
      progress.Finish();
      return stream->WritesDone();
    }();
    if (abandoned || feed->aborted()) {
      // The writer sees the call cancelled, not a complete shard. Before
      // that, a tensor announced and never given its bytes: were the
      // cancellation ever taken for a clean end, the writer would refuse
      // the shard ("got 0 bytes of data, its shape needs 1").
      v1::SaveShardMessage unfinished;
      unfinished.mutable_tensor()->set_name("cairn/abandoned-save");
      unfinished.mutable_tensor()->set_dtype(static_cast<int32_t>(DataType::kUint8));
      unfinished.mutable_tensor()->add_shape(1);
      stream->Write(unfinished);
      ctx->TryCancel();
      stream->Finish().ok();
      return abandoned_error();
    }
    grpc::Status finished = stream->Finish();
    if (finished.error_code() == grpc::StatusCode::UNAVAILABLE && attempt < kMaxWriterAttempts) {
      unreachable.push_back(assigned.writer_address());
      continue;
    }
    if (!finished.ok()) {
      return RpcError(finished, writer_name, what);
    }
    if (!sent) {
      // The stream broke but the server reported success: should not happen.
      return absl::UnavailableError(
          absl::StrCat(what, ": the stream to ", writer_name, " broke off"));
    }
    break;
  }
  SaveShardResult result;
  result.committed = response.committed();
  result.bytes = response.bytes();
  result.num_tensors = response.num_tensors();
  return result;
}


namespace {

// Copies [src, src+n) to dst with two threads when it is large: the snapshot
// of an async save is the only time the training thread waits.
void ParallelCopy(char* dst, const char* src, size_t n) {
  constexpr size_t kParallelAbove = 32 << 20;
  if (n < kParallelAbove) {
    std::memcpy(dst, src, n);
    return;
  }
  const size_t half = n / 2 / 4096 * 4096;
  std::thread helper([=] { std::memcpy(dst + half, src + half, n - half); });
  std::memcpy(dst, src, half);
  helper.join();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SaveHandle>> Client::SaveShardAsync(
    const SaveShardOptions& options, const std::vector<SaveTensor>& tensors) {
  RETURN_IF_ERROR(internal::ValidateSaveShard(options, tensors));
  std::lock_guard<std::mutex> lock(rep_->async_mu);
  // One async save at a time: wait for the previous one, and refuse to go on
  // silently past a failure nobody looked at.
  if (rep_->async_thread.joinable()) rep_->async_thread.join();
  if (rep_->async_save) {
    std::lock_guard<std::mutex> prev_lock(rep_->async_save->mu);
    const auto& prev = rep_->async_save->result;
    if (!prev.ok() && !rep_->async_save->waited) {
      const std::string msg = absl::StrCat("the previous async save (", rep_->async_save->what,
                                           ") failed and was never waited for: ",
                                           prev.status().message());
      rep_->async_save->waited = true;  // reported now, once
      return absl::FailedPreconditionError(msg);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  auto save = std::make_shared<SaveHandle::Rep>();
  save->what = absl::StrCat("shard ", options.shard_index, "/", options.num_shards, " of ",
                            options.job, "/", options.step);
  save->buffers.reserve(tensors.size());
  save->tensors.reserve(tensors.size());
  std::vector<Buffer> spare;
  {
    std::lock_guard<std::mutex> spare_lock(rep_->spare_mu);
    spare.swap(rep_->spare_buffers);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SaveTensor& t = tensors[i];
    Buffer copy = i < spare.size() && spare[i].size() == t.data.size() ? std::move(spare[i])
                                                                      : Buffer(t.data.size());
    if (!t.data.empty()) ParallelCopy(copy.data(), t.data.data(), t.data.size());
    SaveTensor staged = t;
    staged.data = copy.view();
    save->buffers.push_back(std::move(copy));
    save->tensors.push_back(std::move(staged));
  }
  rep_->async_save = save;
  rep_->async_thread = std::thread([this, save, options, start] {
    auto result = SaveShard(options, save->tensors);
    const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count();
    if (!result.ok()) {
      std::cerr << "cairn: async save of " << save->what << " failed: " << result.status().message()
                << std::endl;
    }
    std::lock_guard<std::mutex> done_lock(save->mu);
    save->result = std::move(result);
    save->durable_after_micros = micros;
    save->tensors.clear();
    {
      std::lock_guard<std::mutex> spare_lock(rep_->spare_mu);
      rep_->spare_buffers = std::move(save->buffers);  // kept for the next snapshot
    }
    save->buffers.clear();
    save->done = true;
    save->cv.notify_all();
  });
  return std::unique_ptr<SaveHandle>(new SaveHandle(save));
}

// ---------------------------------------------------------------- SaveStream

struct SaveStream::Rep {
  Client* client = nullptr;
  SaveShardOptions options;
  std::deque<SaveTensor> tensors;  // the feed points at them: a deque keeps their addresses
  internal::TensorFeed feed;
  internal::SaveTensorChecker checker;
  absl::Status error;  // the first invalid tensor
  std::thread thread;
  std::mutex mu;  // guards what the thread sets below
  bool done = false;
  absl::StatusOr<SaveShardResult> result = absl::UnknownError("unfinished");
  bool finished = false;
};

SaveStream::SaveStream(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}

SaveStream::~SaveStream() {
  if (rep_->thread.joinable()) {
    rep_->feed.Abort();
    rep_->thread.join();
  }
}

absl::Status SaveStream::Add(std::vector<SaveTensor> tensors) {
  Rep& r = *rep_;
  if (r.finished) return absl::FailedPreconditionError("SaveStream::Add after Finish");
  if (!r.error.ok()) return r.error;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.done && !r.result.ok()) return r.result.status();  // the stream failed already
  }
  for (SaveTensor& t : tensors) {
    r.tensors.push_back(std::move(t));
    const SaveTensor& added = r.tensors.back();
    if (absl::Status s = r.checker.Add(added, r.tensors.size() - 1); !s.ok()) {
      r.error = s;
      r.feed.Abort();
      return s;
    }
    r.feed.Add(&added);
  }
  return absl::OkStatus();
}

absl::StatusOr<SaveShardResult> SaveStream::Finish() {
  Rep& r = *rep_;
  if (r.finished) return absl::FailedPreconditionError("SaveStream::Finish called twice");
  r.finished = true;
  absl::Status not_empty = internal::ValidateNotEmpty(r.options, r.tensors.size());
  if (r.error.ok() && !not_empty.ok()) {
    r.error = not_empty;
    r.feed.Abort();
  }
  if (r.error.ok()) r.feed.Close();
  r.thread.join();
  if (!r.error.ok()) return r.error;
  std::lock_guard<std::mutex> lock(r.mu);
  return r.result;
}

absl::StatusOr<std::unique_ptr<SaveStream>> Client::BeginSaveShard(const SaveShardOptions& options) {
  RETURN_IF_ERROR(internal::ValidateSaveOptions(options));
  if (options.progress) {
    return absl::InvalidArgumentError("BeginSaveShard: a progress callback needs SaveShard");
  }
  auto rep = std::make_unique<SaveStream::Rep>();
  rep->client = this;
  rep->options = options;
  SaveStream::Rep* r = rep.get();
  r->thread = std::thread([r] {
    auto result = r->client->SaveFromFeed(r->options, &r->feed);
    std::lock_guard<std::mutex> lock(r->mu);
    r->result = std::move(result);
    r->done = true;
  });
  return std::unique_ptr<SaveStream>(new SaveStream(std::move(rep)));
}

}  // namespace cairn
