// TLS settings shared by every Cairn executable and the client library: a
// plain struct (no gRPC types) so public headers can carry it.
#ifndef CAIRN_PROTO_RPC_TLS_OPTIONS_H_
#define CAIRN_PROTO_RPC_TLS_OPTIONS_H_

#include <string>

namespace cairn {

struct TlsOptions {
  // PEM certificate chain and private key. A server serves TLS when both are
  // set; a client (or a server calling another server) presents them as its
  // client certificate.
  std::string cert_file;
  std::string key_file;
  // PEM CA bundle. A client verifies servers against it (empty: the system
  // roots); a server with require_client_cert verifies clients against it.
  std::string ca_file;
  // Servers only: mutual TLS, every client must present a certificate
  // signed by ca_file.
  bool require_client_cert = false;

  // Whether outgoing channels use TLS (any TLS setting given).
  bool client_enabled() const { return !ca_file.empty() || !cert_file.empty(); }
  // Whether a server serves TLS.
  bool server_enabled() const { return !cert_file.empty(); }
};

}  // namespace cairn

#endif  // CAIRN_PROTO_RPC_TLS_OPTIONS_H_
