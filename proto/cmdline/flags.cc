#include "proto/cmdline/flags.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "storage/storage.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cairn {
namespace cmdline {

const std::set<std::string>& BooleanFlags() {
  static const auto* names = new std::set<std::string>{
      "help", "version", "json", "dry-run", "deep", "strict", "show", "force", "wait", "all",
      "insecure", "tls-client-auth", "inventory-sha256", "direct-io"};
  return *names;
}

namespace {

// Edits (insert, delete, substitute, swap two neighbours) from a to b,
// ignoring case: "setp" is one swap from "step".
size_t EditDistance(const std::string& a, const std::string& b) {
  auto same = [&](size_t i, size_t j) {
    return std::tolower(static_cast<unsigned char>(a[i])) ==
           std::tolower(static_cast<unsigned char>(b[j]));
  };
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (same(i - 1, j - 1) ? 0 : 1)});
      if (i > 1 && j > 1 && same(i - 1, j - 2) && same(i - 2, j - 1)) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

bool IsBooleanValue(const std::string& v) {
  return v == "true" || v == "false" || v == "1" || v == "0";
}

}  // namespace

std::string DidYouMean(const std::string& word, const std::set<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::string::npos;
  for (const std::string& c : candidates) {
    size_t d = EditDistance(word, c);
    // A prefix of a long name ("--coord") is as good as a near miss.
    if (word.size() >= 3 && c.compare(0, word.size(), word) == 0) d = std::min<size_t>(d, 1);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Two edits (a dropped and a doubled letter, say), one for short words,
  // where two edits reach almost anything ("setp" is not "help").
  const size_t limit = word.size() <= 4 ? 1 : 2;
  return best_distance <= limit ? best : "";
}

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& known,
                                   const std::set<std::string>& repeatable) {
  Flags flags;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positional || arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      if (arg == "--" && !only_positional) {
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
    if (!known.count(name)) {
      std::string hint = DidYouMean(name, known);
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown option --", name, hint.empty() ? "" : absl::StrCat(" (did you mean --", hint, "?)")));
    }
    const bool boolean = BooleanFlags().count(name) > 0;
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      if (boolean && !IsBooleanValue(value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " takes no value (or true/false); got \"", value, "\""));
      }
    } else if (boolean) {
      value = "true";
    } else if (i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0) {
      value = args[++i];  // --name value
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " needs a value: --", name, "=VALUE or --", name, " VALUE"));
    }
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
