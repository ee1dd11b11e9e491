// The one adapter between gRPC and absl::Status, plus helpers every Cairn
// server and client share: channels and server credentials (plaintext or
// TLS / mutual TLS), and the bearer token metadata of per-job authorization.
#ifndef CAIRN_PROTO_RPC_RPC_UTIL_H_
#define CAIRN_PROTO_RPC_RPC_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/rpc/tls_options.h"

namespace cairn {
namespace rpc {

// Largest gRPC message Cairn sends or accepts (data chunks are 4 MiB).
constexpr int kMaxMessageBytes = 64 << 20;
// Size of the data chunks of a SaveShard stream.
constexpr size_t kChunkBytes = 4 << 20;
// Most tensors one SaveShardMessage.batch may hold (writers refuse more).
constexpr int kMaxBatchTensors = 4096;

// A Cairn server's answer: carries, besides code and message, status details
// (a google.rpc.Status with the same code and message) that mark it as the
// server's own, so that a client tells "the coordinator said UNAVAILABLE: no
// live writers" from "the coordinator could not be reached".
grpc::Status ToGrpc(const absl::Status& s);
// Whether `s` came from a Cairn server's handler (ToGrpc), not from the
// transport (connection refused, deadline, TLS handshake).
bool FromServer(const grpc::Status& s);
// `what` names the peer or call for the message ("coordinator 1.2.3.4:5"):
// a transport failure says "WHAT unreachable or too slow (...): MESSAGE";
// a server's answer is its message as is.
absl::Status FromGrpc(const grpc::Status& s, const std::string& what = "");

// The gRPC target for an address: HOST:PORT as is (gRPC resolves a name,
// again when connections fail); a list "HOST:PORT,HOST:PORT,..." (several
// coordinators, one leading) as one static target, over which gRPC connects
// to the first that answers and moves on when it goes (a standby does not
// listen until it leads). Names in a list are resolved here, once (all
// IPv4, or all IPv6 if a name has no IPv4 address); where addresses change
// (Kubernetes pods), give one name that resolves to every coordinator, or a
// Service in front of the leader. InvalidArgument names what cannot be
// used.
absl::StatusOr<std::string> ListTarget(const std::vector<std::string>& addresses);
absl::StatusOr<std::string> ChannelTarget(const std::string& address);

// A plaintext channel to HOST:PORT (or a list, see ChannelTarget) with
// Cairn's message limits.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& address);
// A channel to HOST:PORT: TLS if tls.client_enabled() (verifying the server
// against tls.ca_file, presenting cert_file/key_file if set), else plaintext.
// Fails if a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& address,
                                                          const TlsOptions& tls);

// Makes BuildAndStart fail on a port another process is bound to. gRPC
// sets SO_REUSEPORT by default, so a second server would share the port
// and split the clients' calls between two catalogs.
void RefusePortSharing(grpc::ServerBuilder* builder);

// Plaintext server credentials.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials();
// TLS server credentials if tls.server_enabled() (mutual TLS with
// require_client_cert), else plaintext. Fails on unreadable files or an
// inconsistent combination (key without cert, client auth without CA).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const TlsOptions& tls);

// Servers refuse to listen beyond loopback (127.0.0.0/8, localhost, [::1])
// in plaintext unless `insecure`: FailedPrecondition naming --insecure.
absl::Status CheckListenSecurity(const std::string& listen, const TlsOptions& tls, bool insecure);
bool IsLoopbackListen(const std::string& listen);

// A ClientContext with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds timeout);

// Sends `token` as "authorization: Bearer TOKEN" (nothing if empty).
void SetBearerToken(grpc::ClientContext* ctx, const std::string& token);
// The bearer token of a call, or "" if none.
std::string BearerToken(const grpc::ServerContext& ctx);

}  // namespace rpc
}  // namespace cairn

#endif  // CAIRN_PROTO_RPC_RPC_UTIL_H_
