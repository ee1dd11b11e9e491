// Per-job authorization tokens (no gRPC types here; see rpc_util.h for the
// metadata they travel in).
//
// A token is base64url("JOB|SCOPE|EXPIRY_UNIX_SECONDS|NONCE") + "." +
// base64url(HMAC-SHA256(key, payload)). SCOPE is "read", "write" (implies
// read) or "cluster" (the internal calls between coordinator and writers,
// minted by the servers themselves). JOB "*" (admin tokens, cluster tokens)
// matches every job. Whoever holds the key can mint tokens: the coordinator,
// the writers and the `cairn token` admin command share one key file.
//
//   std::string t = auth::MintToken(key, "job-a", auth::Scope::kWrite, now + 3600);
//   RETURN_IF_ERROR(auth::Authorize(key, t, "job-a", auth::Scope::kRead, now));
#ifndef CAIRN_PROTO_RPC_AUTH_H_
#define CAIRN_PROTO_RPC_AUTH_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cairn {
namespace auth {

enum class Scope { kRead, kWrite, kCluster };

// "read", "write", "cluster".
const char* ScopeName(Scope scope);
// InvalidArgument unless `name` is one of the above.
absl::StatusOr<Scope> ParseScope(const std::string& name);

// Job name that matches every job (admin and cluster tokens).
constexpr char kAnyJob[] = "*";
// Lifetime of the cluster tokens servers mint for each internal call.
constexpr int64_t kClusterTokenTtlSeconds = 600;
// Shortest accepted key.
constexpr size_t kMinKeyBytes = 16;

// Reads a key file (trailing whitespace dropped). InvalidArgument if it is
// shorter than kMinKeyBytes.
absl::StatusOr<std::string> ReadKeyFile(const std::string& path);

// The seconds since the Unix epoch now.
int64_t NowUnixSeconds();

std::string MintToken(const std::string& key, const std::string& job, Scope scope,
                      int64_t expires_unix_seconds);
// A cluster token valid for kClusterTokenTtlSeconds from now.
std::string MintClusterToken(const std::string& key);

struct Claims {
  std::string job;
  Scope scope = Scope::kRead;
  int64_t expires_unix_seconds = 0;
};

// Checks the signature (constant time) and expiry. Unauthenticated if the
// token is empty, malformed, forged or expired.
absl::StatusOr<Claims> VerifyToken(const std::string& key, const std::string& token,
                                   int64_t now_unix_seconds);

// VerifyToken, then: PermissionDenied unless the token is for `job` (or
// "*") and its scope covers `needed` (write covers read; cluster covers only
// cluster; a cluster call needs a cluster token). `job` "*" asks for access
// to every job (only "*" tokens have it).
absl::Status Authorize(const std::string& key, const std::string& token, const std::string& job,
                       Scope needed, int64_t now_unix_seconds);

// Attempt tokens: the coordinator issues one per shard attempt
// (BeginShard), bound to what the attempt may write; a writer checks it
// before it writes a byte, so nobody without a BeginShard from this
// coordinator can make a writer fill its disk. The key is the coordinator's
// (RandomKey(), kept in its catalog) and is handed to writers when they
// register and heartbeat.
struct Attempt {
  std::string job;
  int64_t step = 0;
  int32_t shard_index = 0;
  int32_t num_shards = 0;
  std::string staging_prefix;
};
// 32 random bytes.
std::string RandomKey();
// "NONCE.MAC" (web-safe base64 parts).
std::string MintAttemptToken(const std::string& key, const Attempt& attempt);
// PermissionDenied unless `token` was minted with `key` for exactly `attempt`.
absl::Status VerifyAttemptToken(const std::string& key, const std::string& token,
                                const Attempt& attempt);

}  // namespace auth
}  // namespace cairn

#endif  // CAIRN_PROTO_RPC_AUTH_H_
