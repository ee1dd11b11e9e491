// Fuzzes authorization-token verification. Each input is tried twice: as a
// whole token (forged: must be refused, never crash), and as the payload of
// a token correctly signed with the key (so the fuzzer reaches the claim
// parser behind the signature check: any accepted claims must be sane).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "proto/rpc/auth.h"

namespace {

const std::string kKey = "fuzzing-key-0123456789abcdef";
constexpr int64_t kNow = 1795372200;

std::string Sign(const std::string& payload) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &len);
  return absl::StrCat(absl::WebSafeBase64Escape(payload), ".",
                      absl::WebSafeBase64Escape(std::string(reinterpret_cast<char*>(mac), len)));
}

void CheckClaims(const cairn::auth::Claims& c) {
  if (c.job.empty() || c.expires_unix_seconds < kNow) __builtin_trap();
  if (c.job.find('|') != std::string::npos) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  using cairn::auth::Scope;
  // Forged: no input may verify without the key's signature.
  auto forged = cairn::auth::VerifyToken(kKey, input, kNow);
  if (forged.ok()) CheckClaims(*forged);
  (void)cairn::auth::Authorize(kKey, input, "job", Scope::kRead, kNow);

  // Signed: the payload parser sees arbitrary content.
  const std::string token = Sign(input);
  auto signed_claims = cairn::auth::VerifyToken(kKey, token, kNow);
  if (signed_claims.ok()) {
    CheckClaims(*signed_claims);
    // Accepted claims authorize exactly their job and scope.
    const auto& c = *signed_claims;
    const bool cluster = c.scope == Scope::kCluster;
    if (cairn::auth::Authorize(kKey, token, c.job, cluster ? Scope::kCluster : Scope::kRead, kNow).ok() !=
        true) {
      __builtin_trap();
    }
    if (c.job != cairn::auth::kAnyJob &&
        cairn::auth::Authorize(kKey, token, c.job + "x", Scope::kRead, kNow).ok()) {
      __builtin_trap();
    }
    if (c.scope == Scope::kRead &&
        cairn::auth::Authorize(kKey, token, c.job, Scope::kWrite, kNow).ok()) {
      __builtin_trap();
    }
  }
  // A different key never accepts it.
  if (cairn::auth::VerifyToken(kKey + "!", token, kNow).ok()) __builtin_trap();
  return 0;
}
