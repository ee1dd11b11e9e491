#include "proto/server/server_main.h"

#include <csignal>

#include "proto/rpc/auth.h"
#include "proto/rpc/rpc_util.h"

namespace cairn {
namespace cmdline {

void PrepareServerProcess() {
  BlockTerminationSignals();
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
}

int ServerSecurityFromFlags(const Flags& flags, const char* program, const std::string& listen,
                            TlsOptions* tls, bool* insecure, std::string* auth_key) {
  *tls = TlsFromFlags(flags);
  *insecure = flags.GetBool("insecure");
  if (absl::Status s = rpc::CheckListenSecurity(listen, *tls, *insecure); !s.ok()) {
    std::cerr << program << ": " << s.message() << "\n";
    return 2;
  }
  if (auto key_file = flags.Get("auth-key-file")) {
    auto key = auth::ReadKeyFile(*key_file);
    if (!key.ok()) {
      std::cerr << program << ": " << key.status().message() << "\n";
      return 2;
    }
    *auth_key = *key;
  }
  return -1;
}

}  // namespace cmdline
}  // namespace cairn
