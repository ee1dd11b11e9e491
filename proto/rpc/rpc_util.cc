#include "proto/rpc/rpc_util.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace cairn {
namespace rpc {
namespace {

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect within seconds, not gRPC's default of up to two minutes: a
  // restarted server, or after a failover the new leading coordinator,
  // is found again quickly. (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is
  // also the time a connection attempt, TLS handshake included, may take.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  return args;
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read TLS ", what, " file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS ", what, " file ", path, " is empty"));
  }
  return ss.str();
}

}  // namespace

absl::StatusOr<std::string> ListTarget(const std::vector<std::string>& addresses) {
  if (addresses.empty()) return absl::InvalidArgumentError("no address given");
  if (addresses.size() == 1) return addresses[0];
  std::vector<std::string> v4, v6;
  bool every_v4 = true, every_v6 = true;  // every address has one of that family
  for (const std::string& address : addresses) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
      return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\" is not HOST:PORT"));
    }
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("address \"", address, "\": cannot resolve: ", ::gai_strerror(rc)));
    }
    std::vector<std::string> mine4, mine6;
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, text, sizeof(text));
        mine4.push_back(absl::StrCat(text, ":", port));
      } else if (a->ai_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, text, sizeof(text));
        mine6.push_back(absl::StrCat("[", text, "]:", port));
      }
    }
    ::freeaddrinfo(found);
    for (auto* list : {&mine4, &mine6}) {  // one entry per address, in order
      std::vector<std::string> unique;
      for (auto& e : *list) {
        if (std::find(unique.begin(), unique.end(), e) == unique.end()) unique.push_back(e);
      }
      *list = std::move(unique);
    }
    if (mine4.empty() && mine6.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\" has no IP address"));
    }
    every_v4 = every_v4 && !mine4.empty();
    every_v6 = every_v6 && !mine6.empty();
    v4.insert(v4.end(), mine4.begin(), mine4.end());
    v6.insert(v6.end(), mine6.begin(), mine6.end());
  }
  if (every_v4) return absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
  // (Counting IPv6 addresses instead would let a name with two of them
  // stand in for another that has none, dropping that one silently.)
  if (every_v6) return absl::StrCat("ipv6:", absl::StrJoin(v6, ","));
  return absl::InvalidArgumentError(absl::StrCat(
      "addresses \"", absl::StrJoin(addresses, ","),
      "\" mix hosts with only IPv4 and only IPv6 addresses; give addresses of one family"));
}

absl::StatusOr<std::string> ChannelTarget(const std::string& address) {
  if (address.find(',') == std::string::npos) return address;
  return ListTarget(absl::StrSplit(address, ','));
}

namespace {

// google.rpc.Status{code, message} in protobuf's wire format (fields 1 and
// 2), written by hand: the googleapis protos are not a dependency.
std::string EncodeStatusDetails(int code, absl::string_view message) {
  std::string out;
  auto varint = [&out](uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  };
  out.push_back(0x08);  // field 1, varint
  varint(static_cast<uint64_t>(code));
  out.push_back(0x12);  // field 2, length-delimited
  varint(message.size());
  out.append(message.data(), message.size());
  return out;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(s.code());
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(s.message()),
                      EncodeStatusDetails(code, s.message()));
}

bool FromServer(const grpc::Status& s) { return !s.ok() && !s.error_details().empty(); }

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = s.error_message();
  if (!FromServer(s) && (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
    msg = absl::StrCat(what.empty() ? "server" : what,
                       " unreachable or too slow (or a TLS mismatch: plaintext vs TLS, an "
                       "untrusted certificate, or a client certificate required): ",
                       msg);
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), msg);
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& address) {
  // A list that cannot be used is given to gRPC as is: its calls fail.
  return grpc::CreateCustomChannel(ChannelTarget(address).value_or(address),
                                   grpc::InsecureChannelCredentials(), ChannelArgs());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& address,
                                                          const TlsOptions& tls) {
  auto target = ChannelTarget(address);
  if (!target.ok()) return target.status();
  if (!tls.client_enabled()) return NewChannel(address);
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    auto ca = ReadPem(tls.ca_file, "CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("a TLS certificate needs its key, and a key its certificate");
  }
  if (!tls.cert_file.empty()) {
    auto cert = ReadPem(tls.cert_file, "certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(tls.key_file, "key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::CreateCustomChannel(*target, grpc::SslCredentials(ssl), ChannelArgs());
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials() {
  return grpc::InsecureServerCredentials();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const TlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  if (tls.require_client_cert && (!tls.server_enabled() || tls.ca_file.empty())) {
    return absl::InvalidArgumentError(
        "--tls-client-auth needs --tls-cert, --tls-key and --tls-ca (to verify clients)");
  }
  if (!tls.server_enabled()) return ServerCredentials();
  auto cert = ReadPem(tls.cert_file, "certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key_file, "key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      tls.require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!tls.ca_file.empty()) {
    auto ca = ReadPem(tls.ca_file, "CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

bool IsLoopbackListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status CheckListenSecurity(const std::string& listen, const TlsOptions& tls, bool insecure) {
  if (tls.server_enabled() || insecure || IsLoopbackListen(listen)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to listen on non-loopback address ", listen,
      " without TLS: give --tls-cert and --tls-key, or --insecure to serve plaintext anyway"));
}

std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

void SetBearerToken(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

std::string BearerToken(const grpc::ServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  const std::string value(it->second.data(), it->second.size());
  constexpr char kBearer[] = "Bearer ";
  if (!absl::StartsWith(value, kBearer)) return "";
  return value.substr(sizeof(kBearer) - 1);
}

void RefusePortSharing(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

}  // namespace rpc
}  // namespace cairn
