#include "proto/rpc/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cairn {
namespace auth {
namespace {

std::string Hmac(const std::string& key, const std::string& payload) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), out, &n);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string Nonce() {
  unsigned char bytes[12];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // Uniqueness is all a nonce needs here; fall back to the clock.
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    return absl::StrCat("t", t);
  }
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::Status Unauthenticated(const std::string& why) {
  return absl::UnauthenticatedError(absl::StrCat("invalid token: ", why));
}

}  // namespace

const char* ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kRead:
      return "read";
    case Scope::kWrite:
      return "write";
    case Scope::kCluster:
      return "cluster";
  }
  return "?";
}

absl::StatusOr<Scope> ParseScope(const std::string& name) {
  if (name == "read") return Scope::kRead;
  if (name == "write") return Scope::kWrite;
  if (name == "cluster") return Scope::kCluster;
  return absl::InvalidArgumentError(
      absl::StrCat("scope \"", name, "\" must be read, write or cluster"));
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read auth key file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string key = ss.str();
  while (!key.empty() && absl::ascii_isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  if (key.size() < kMinKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("auth key file ", path, " holds ", key.size(),
                                                   " bytes; at least ", kMinKeyBytes,
                                                   " are required"));
  }
  return key;
}

int64_t NowUnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string MintToken(const std::string& key, const std::string& job, Scope scope,
                      int64_t expires_unix_seconds) {
  const std::string payload =
      absl::StrCat(job, "|", ScopeName(scope), "|", expires_unix_seconds, "|", Nonce());
  return absl::StrCat(absl::WebSafeBase64Escape(payload), ".",
                      absl::WebSafeBase64Escape(Hmac(key, payload)));
}

std::string MintClusterToken(const std::string& key) {
  return MintToken(key, kAnyJob, Scope::kCluster, NowUnixSeconds() + kClusterTokenTtlSeconds);
}

absl::StatusOr<Claims> VerifyToken(const std::string& key, const std::string& token,
                                   int64_t now_unix_seconds) {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no token: this server requires 'authorization: Bearer TOKEN' (see cairn token)");
  }
  const size_t dot = token.find('.');
  if (dot == std::string::npos || token.find('.', dot + 1) != std::string::npos) {
    return Unauthenticated("malformed");
  }
  std::string payload, signature;
  if (!absl::WebSafeBase64Unescape(absl::string_view(token).substr(0, dot), &payload) ||
      !absl::WebSafeBase64Unescape(absl::string_view(token).substr(dot + 1), &signature)) {
    return Unauthenticated("malformed");
  }
  const std::string expected = Hmac(key, payload);
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return Unauthenticated("bad signature (tampered, or issued with another key)");
  }
  // JOB|SCOPE|EXPIRY|NONCE; split from the right (the job is validated by
  // the caller, and only ever compared).
  std::vector<std::string> parts = absl::StrSplit(payload, '|');
  if (parts.size() != 4) return Unauthenticated("malformed payload");
  Claims claims;
  claims.job = parts[0];
  auto scope = ParseScope(parts[1]);
  if (!scope.ok() || claims.job.empty()) return Unauthenticated("malformed payload");
  claims.scope = *scope;
  if (!absl::SimpleAtoi(parts[2], &claims.expires_unix_seconds)) {
    return Unauthenticated("malformed expiry");
  }
  if (claims.expires_unix_seconds <= now_unix_seconds) {
    return absl::UnauthenticatedError(absl::StrCat(
        "token for job ", claims.job, " expired ", now_unix_seconds - claims.expires_unix_seconds,
        " s ago"));
  }
  return claims;
}

absl::Status Authorize(const std::string& key, const std::string& token, const std::string& job,
                       Scope needed, int64_t now_unix_seconds) {
  auto claims = VerifyToken(key, token, now_unix_seconds);
  if (!claims.ok()) {
    return absl::Status(claims.status().code(),
                        absl::StrCat("job ", job, ": ", claims.status().message()));
  }
  if (claims->job != kAnyJob && claims->job != job) {
    return absl::PermissionDeniedError(
        absl::StrCat("token for job ", claims->job, " gives no access to job ", job));
  }
  const bool covered = needed == Scope::kCluster  ? claims->scope == Scope::kCluster
                       : needed == Scope::kWrite ? claims->scope == Scope::kWrite
                                                 : claims->scope != Scope::kCluster;
  if (!covered && needed == Scope::kCluster) {
    return absl::PermissionDeniedError(absl::StrCat(
        "only cluster tokens (coordinator and writers) may make this call, not a ",
        ScopeName(claims->scope), " token for job ", claims->job));
  }
  if (!covered) {
    return absl::PermissionDeniedError(absl::StrCat("a ", ScopeName(claims->scope),
                                                     " token cannot ", ScopeName(needed),
                                                     " job ", job));
  }
  return absl::OkStatus();
}

namespace {
std::string AttemptPayload(const Attempt& a, absl::string_view nonce) {
  // NUL cannot occur in a job name or a staging prefix.
  return absl::StrCat(nonce, std::string(1, '\0'), a.job, std::string(1, '\0'), a.step, "/",
                      a.shard_index, "/", a.num_shards, std::string(1, '\0'), a.staging_prefix);
}
}  // namespace

std::string RandomKey() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // Never weaker than no check at all; distinct per process.
    return absl::StrCat("fallback-", std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return std::string(reinterpret_cast<const char*>(bytes), sizeof(bytes));
}

std::string MintAttemptToken(const std::string& key, const Attempt& attempt) {
  const std::string nonce = Nonce();
  return absl::StrCat(nonce, ".",
                      absl::WebSafeBase64Escape(Hmac(key, AttemptPayload(attempt, nonce))));
}

absl::Status VerifyAttemptToken(const std::string& key, const std::string& token,
                                const Attempt& attempt) {
  const size_t dot = token.find('.');
  std::string mac;
  if (key.empty() || dot == std::string::npos ||
      !absl::WebSafeBase64Unescape(absl::string_view(token).substr(dot + 1), &mac)) {
    return absl::PermissionDeniedError("malformed attempt token (not issued by the coordinator)");
  }
  const std::string expected = Hmac(key, AttemptPayload(attempt, token.substr(0, dot)));
  if (mac.size() != expected.size() ||
      CRYPTO_memcmp(mac.data(), expected.data(), expected.size()) != 0) {
    return absl::PermissionDeniedError(
        "attempt token does not match this shard (not issued by this coordinator for it)");
  }
  return absl::OkStatus();
}

}  // namespace auth
}  // namespace cairn
