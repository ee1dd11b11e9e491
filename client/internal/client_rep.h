// The state behind Client and SaveHandle, shared by the files that implement
// them: client.cc (connection, queries, retention, leases), save.cc
// (SaveShard, SaveShardAsync) and restore.cc (Restore). Internal.
#ifndef CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_
#define CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_

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

  std::string CoordinatorName() const { return absl::StrCat("coordinator ", options.coordinator); }
};


}  // namespace cairn

#endif  // CAIRN_CLIENT_INTERNAL_CLIENT_REP_H_
