// The one adapter between gRPC and absl::Status, plus helpers every Cairn
// server and client share.
#ifndef CAIRN_PROTO_RPC_UTIL_H_
#define CAIRN_PROTO_RPC_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace cairn {
namespace rpc {

// Largest gRPC message Cairn sends or accepts (data chunks are 4 MiB).
constexpr int kMaxMessageBytes = 64 << 20;
// Size of the data chunks of a SaveShard stream.
constexpr size_t kChunkBytes = 4 << 20;

grpc::Status ToGrpc(const absl::Status& s);
// `what` names the peer or call for the message ("coordinator 1.2.3.4:5").
absl::Status FromGrpc(const grpc::Status& s, const std::string& what = "");

// A channel to HOST:PORT with Cairn's message limits. Plaintext for now.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address);

// Server credentials for listening (plaintext for now).
std::shared_ptr<grpc::ServerCredentials> ServerCredentials();

// A ClientContext with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds timeout);

}  // namespace rpc
}  // namespace cairn

#endif  // CAIRN_PROTO_RPC_UTIL_H_
