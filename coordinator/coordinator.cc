#include "coordinator/coordinator.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "coordinator/internal/authorizing_service.h"
#include "coordinator/internal/catalog.h"
#include "coordinator/internal/service.h"
#include "proto/auth.h"
#include "proto/rpc_util.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {

struct CoordinatorServer::Rep {
  RealClock real_clock;
  std::unique_ptr<internal::CoordinatorService> service;
  // In front of `service` when authorization is on.
  std::unique_ptr<internal::AuthorizingCoordinatorService> authorizing;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  std::mutex mu;
  bool shut_down = false;
};

CoordinatorServer::CoordinatorServer(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
CoordinatorServer::~CoordinatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("--db is required");
  if (options.storage_uri.empty()) return absl::InvalidArgumentError("--storage is required");
  auto rep = std::make_unique<Rep>();
  Clock* clock = options.clock ? options.clock : &rep->real_clock;
  ASSIGN_OR_RETURN(auto catalog, internal::Catalog::Open(options.db_path));
  ASSIGN_OR_RETURN(auto storage, OpenStorage(options.storage_uri));
  rep->service = std::make_unique<internal::CoordinatorService>(options, std::move(catalog),
                                                                std::move(storage), clock);
  RETURN_IF_ERROR(rep->service->Recover());

  RETURN_IF_ERROR(rpc::CheckListenSecurity(options.listen, options.tls, options.insecure));
  auto credentials = rpc::ServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  if (!options.auth_key.empty() && options.auth_key.size() < auth::kMinKeyBytes) {
    return absl::InvalidArgumentError("the auth key is too short");
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
  builder.SetMaxSendMessageSize(rpc::kMaxMessageBytes);
  if (options.auth_key.empty()) {
    builder.RegisterService(rep->service.get());
  } else {
    rep->authorizing = std::make_unique<internal::AuthorizingCoordinatorService>(
        rep->service.get(), options.auth_key);
    builder.RegisterService(rep->authorizing.get());
  }
  rep->server = builder.BuildAndStart();
  if (!rep->server || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  rep->address = absl::StrCat(host, ":", port);
  rep->service->StartBackground();
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(rep)));
}

std::string CoordinatorServer::address() const { return rep_->address; }

void CoordinatorServer::Shutdown() {
  std::lock_guard<std::mutex> lock(rep_->mu);
  if (rep_->shut_down) return;
  rep_->shut_down = true;
  rep_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rep_->service->StopBackground();
}

void CoordinatorServer::Wait() { rep_->server->Wait(); }

}  // namespace cairn
