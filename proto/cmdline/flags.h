// A small command-line parser for Cairn's executables: `--name=value` and
// `--name value`, boolean `--name` (and `--name=true|false`), repeated
// flags, positional arguments, and "did you mean" for misspelt names.
//
// Whether a flag takes a value is a property of its name, the same in every
// executable (BooleanFlags()): that is what lets `--name value` be parsed
// without each command declaring its flags' types.
#ifndef CAIRN_PROTO_CMDLINE_FLAGS_H_
#define CAIRN_PROTO_CMDLINE_FLAGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/rpc/tls_options.h"
#include "storage/storage.h"

namespace cairn {
namespace cmdline {

// The flags that take no value. Every other flag takes one.
const std::set<std::string>& BooleanFlags();

// The candidate closest to `word` by edit distance (case-insensitive), if
// one is close enough to be a likely typo; else empty.
std::string DidYouMean(const std::string& word, const std::set<std::string>& candidates);

class Flags {
 public:
  // `known` lists the accepted flag names (without "--"); `repeatable` those
  // that may appear more than once. Unknown or repeated flags, and a flag
  // that takes a value given none, are InvalidArgument (a usage error); an
  // unknown flag's message suggests the nearest known one.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& known,
                                     const std::set<std::string>& repeatable = {});

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  // A flag given without "=value" is "true".
  bool GetBool(const std::string& name) const;
  // InvalidArgument naming the flag if present but not an integer in range.
  absl::StatusOr<std::optional<int64_t>> GetInt(const std::string& name, int64_t min,
                                                int64_t max) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// Storage options (storage/storage.h) from the standard AWS_* environment
// variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). For main() functions only:
// below main, options are passed in.
StorageOptions StorageOptionsFromEnvironment();
// The same, with --s3-endpoint overriding AWS_ENDPOINT_URL.
StorageOptions StorageOptionsFromFlags(const Flags& flags);

// The TLS flags every executable takes: --tls-cert, --tls-key, --tls-ca and
// (servers) --tls-client-auth.
extern const char* const kTlsFlags[4];
TlsOptions TlsFromFlags(const Flags& flags);
// The usage text of the TLS flags; `server` adds --tls-client-auth and
// --insecure.
const char* TlsUsage(bool server);

}  // namespace cmdline
}  // namespace cairn

#endif  // CAIRN_PROTO_CMDLINE_FLAGS_H_
