// What the server executables (cairn-coordinator, cairn-writer) share around
// their flags: the security settings, and serving until SIGTERM.
#ifndef CAIRN_PROTO_SERVER_SERVER_MAIN_H_
#define CAIRN_PROTO_SERVER_SERVER_MAIN_H_

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "proto/cmdline/flags.h"
#include "proto/cmdline/signals.h"
#include "observability/log.h"

namespace cairn {
namespace cmdline {

// First thing in a server's main(): blocks SIGTERM/SIGINT (for
// ServeUntilSignal) and ignores SIGXFSZ and SIGPIPE, so that a full disk or a
// file-size limit surfaces as a write error (EFBIG / ENOSPC) that fails one
// save, and a vanished peer as a send error, instead of killing the server.
void PrepareServerProcess();

// Reads --tls-*, --insecure and --auth-key-file, and checks that `listen` is
// allowed with them (a non-loopback address needs TLS or --insecure). On a
// problem prints "PROGRAM: message" and returns exit status 2; else -1.
int ServerSecurityFromFlags(const Flags& flags, const char* program, const std::string& listen,
                            TlsOptions* tls, bool* insecure, std::string* auth_key);

// Prints "listening on ADDRESS" on stdout (the line scripts and tests wait
// for), serves until SIGTERM or SIGINT, then shuts down; start failures and
// signals are logged (observability/log.h). Exit status 1 if it did not start,
// 0 if a signal stopped it while starting (Start returned Cancelled).
template <typename Server>
int ServeUntilSignal(absl::StatusOr<std::unique_ptr<Server>> server, const char* program) {
  if (absl::IsCancelled(server.status())) {
    logging::Log(absl::StrCat("signal: ", server.status().message()));
    return 0;
  }
  if (!server.ok()) {
    logging::Log(absl::StrCat("cannot start: ", server.status().message()));
    return 1;
  }
  std::cout << "listening on " << (*server)->address() << std::endl;
  const int sig = WaitForTerminationSignal();
  logging::Log(absl::StrCat("signal ", sig, ", shutting down"));
  (*server)->Shutdown();
  logging::Log("stopped");
  return 0;
}

}  // namespace cmdline
}  // namespace cairn

#endif  // CAIRN_PROTO_SERVER_SERVER_MAIN_H_
