// The state behind Client and SaveHandle, shared by the files that implement
// them: client.cc (connection, queries, retention, leases), save.cc
// (SaveShard, SaveShardAsync) and restore.cc (Restore). Internal.
#ifndef CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_
#define CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/client.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

// A failed RPC to `peer` ("coordinator HOST:PORT") as "CONTEXT: PEER ...:
// MESSAGE", keeping the gRPC code.
absl::Status RpcError(const grpc::Status& s, const std::string& peer, absl::string_view context);


}  // namespace internal

struct SaveHandle::Rep {
  mutable std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool waited = false;
  absl::StatusOr<SaveShardResult> result = absl::UnknownError("save still running");
  int64_t durable_after_micros = 0;
  std::string what;
  // The snapshot the background save streams from.
  std::vector<Buffer> buffers;
  std::vector<SaveTensor> tensors;
};

struct Client::Rep {
  ClientOptions options;
  std::unique_ptr<::cairn::v1::Coordinator::Stub> coordinator;
  std::shared_ptr<grpc::Channel> coordinator_channel;

  // The async save in flight (at most one), and its thread.
  std::mutex async_mu;
  std::shared_ptr<SaveHandle::Rep> async_save;
  std::thread async_thread;
  // The previous snapshot's buffers, reused when the next save has the same
  // tensor sizes (as training's usually does): no allocation and no page
  // faults while the training thread waits.
  std::mutex spare_mu;
  std::vector<Buffer> spare_buffers;

  // Channels to shard writers, by address (gRPC channels are thread-safe and
  // reconnect by themselves, so one per writer serves every save).
  std::mutex mu;
  std::map<std::string, std::shared_ptr<grpc::Channel>> writer_channels;

  absl::StatusOr<std::shared_ptr<grpc::Channel>> WriterChannel(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu);
    auto& channel = writer_channels[address];
    if (!channel) {
      ASSIGN_OR_RETURN(channel, rpc::NewChannel(address, options.tls));
    }
    return channel;
  }

  // Every call carries the authorization token, if any.
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds timeout) const {
    auto ctx = rpc::Context(timeout);
    rpc::SetBearerToken(ctx.get(), options.token);
    return ctx;
  }

  std::unique_ptr<grpc::ClientContext> UnaryContext() const {
    return NewContext(std::chrono::milliseconds(options.rpc_timeout_ms));
  }

  // Runs `call` (a unary coordinator call, given a fresh context) and, with
  // several coordinator addresses, again while none answers, for up to
  // failover_wait_ms: a call in flight when the leader died, or made before
  // the standby leads, reaches the new leader. Only for calls that are safe
  // to repeat.
  template <typename Call>
  grpc::Status UnaryRetryingFailover(Call call) const {
    const bool several = options.coordinator.find(',') != std::string::npos;
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(several ? std::min(options.failover_wait_ms,
                                                                    options.rpc_timeout_ms)
                                                         : 0);
    std::chrono::milliseconds backoff(100);
    for (;;) {
      auto ctx = UnaryContext();
      grpc::Status s = call(ctx.get());
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE ||
          std::chrono::steady_clock::now() + backoff > until) {
        return s;
      }
      if (rpc::FromServer(s)) {
        // The server answered (e.g. a deposed leader): wait, then ask again.
        std::this_thread::sleep_for(backoff);
      } else {
        // No server answered. Wait on the channel itself: a channel whose
        // every address refused reconnects when its backoff ends only if
        // someone watches it (else gRPC's backup poller does, every 5 s),
        // and calls made in between fail at once. This returns as soon as
        // the new leader accepts a connection.
        const auto left = until - std::chrono::steady_clock::now();
        coordinator_channel->WaitForConnected(
            std::chrono::system_clock::now() +
            std::chrono::duration_cast<std::chrono::system_clock::duration>(left));
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
  }

  std::string CoordinatorName() const { return absl::StrCat("coordinator ", options.coordinator); }
};


}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_
