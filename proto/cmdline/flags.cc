#include "proto/cmdline/flags.h"

#include <cstdlib>

#include "storage/storage.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cairn {
namespace cmdline {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& known,
                                   const std::set<std::string>& repeatable) {
  Flags flags;
  bool only_positional = false;
  for (const std::string& arg : args) {
    if (only_positional || arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      if (arg == "--") {
        only_positional = true;
        continue;
      }
      if (!only_positional && arg.size() > 1 && arg[0] == '-') {
        return absl::InvalidArgumentError(absl::StrCat("unknown option ", arg));
      }
      flags.positional_.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::string value = eq == std::string::npos ? "true" : arg.substr(eq + 1);
    if (!known.count(name)) return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    auto& slot = flags.values_[name];
    if (!slot.empty() && !repeatable.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("option --", name, " given more than once"));
    }
    slot.push_back(std::move(value));
  }
  return flags;
}

std::optional<std::string> Flags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Flags::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

bool Flags::GetBool(const std::string& name) const {
  auto v = Get(name);
  return v.has_value() && *v != "false" && *v != "0";
}

absl::StatusOr<std::optional<int64_t>> Flags::GetInt(const std::string& name, int64_t min,
                                                     int64_t max) const {
  auto v = Get(name);
  if (!v) return std::optional<int64_t>();
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out) || out < min || out > max) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, "=", *v, ": expected an integer in [",
                                                   min, ", ", max, "]"));
  }
  return std::optional<int64_t>(out);
}

const char* const kTlsFlags[4] = {"tls-cert", "tls-key", "tls-ca", "tls-client-auth"};

StorageOptions StorageOptionsFromEnvironment() {
  StorageOptions o;
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  o.s3.endpoint = env("AWS_ENDPOINT_URL");
  if (!env("AWS_REGION").empty()) o.s3.region = env("AWS_REGION");
  o.s3.access_key = env("AWS_ACCESS_KEY_ID");
  o.s3.secret_key = env("AWS_SECRET_ACCESS_KEY");
  o.s3.session_token = env("AWS_SESSION_TOKEN");
  return o;
}

StorageOptions StorageOptionsFromFlags(const Flags& flags) {
  StorageOptions options = StorageOptionsFromEnvironment();
  if (auto endpoint = flags.Get("s3-endpoint")) options.s3.endpoint = *endpoint;
  return options;
}

TlsOptions TlsFromFlags(const Flags& flags) {
  TlsOptions tls;
  tls.cert_file = flags.Get("tls-cert").value_or("");
  tls.key_file = flags.Get("tls-key").value_or("");
  tls.ca_file = flags.Get("tls-ca").value_or("");
  tls.require_client_cert = flags.GetBool("tls-client-auth");
  return tls;
}

const char* TlsUsage(bool server) {
  if (server) {
    return R"(TLS (see README.md, Security):
  --tls-cert, --tls-key  PEM certificate and key: serve TLS, and present them
                     as client certificate when calling other Cairn servers
  --tls-ca           PEM CA bundle verifying the servers called and, with
                     --tls-client-auth, the clients
  --tls-client-auth  mutual TLS: refuse clients without a certificate signed
                     by --tls-ca
  --insecure         allow plaintext on a non-loopback --listen address
)";
  }
  return R"(TLS and authorization (see README.md, Security):
  --tls-ca=FILE      use TLS, verifying the servers against this CA bundle
  --tls-cert=FILE, --tls-key=FILE
                     present a client certificate (mutual TLS)
  --token=TOKEN      an authorization token from 'cairn token' (default
                     $CAIRN_TOKEN)
)";
}

}  // namespace cmdline
}  // namespace cairn
