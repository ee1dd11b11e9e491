#include "coordinator/coordinator.h"

#include <chrono>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "coordinator/internal/authorizing_service.h"
#include "coordinator/internal/catalog.h"
#include "coordinator/internal/service.h"
#include "coordinator/internal/status_page.h"
#include "observability/http_endpoint.h"
#include "observability/log.h"
#include "observability/metrics.h"
#include "proto/rpc/auth.h"
#include "proto/rpc/rpc_util.h"
#include "storage/metered_storage.h"
#include "storage/status_macros.h"
#include "proto/layout.h"
#include "storage/storage.h"

namespace cairn {

struct CoordinatorServer::Rep {
  RealClock real_clock;
  std::unique_ptr<internal::CoordinatorService> service;
  // In front of `service` when authorization is on.
  std::unique_ptr<internal::AuthorizingCoordinatorService> authorizing;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<HttpEndpoint> http;
  // cairn_writer_heartbeat_age_seconds (metrics::AddGaugeCollector); 0 = none.
  int64_t heartbeat_age_collector = 0;
  std::string address;
  std::mutex mu;
  bool shut_down = false;
};

namespace {

absl::StatusOr<std::unique_ptr<internal::Catalog>> OpenCatalog(const CoordinatorOptions& options) {
  if (options.catalog.empty()) return internal::Catalog::Open(options.db_path);
  ASSIGN_OR_RETURN(internal::EtcdStoreOptions etcd, internal::ParseEtcdUri(options.catalog));
  etcd.candidate = options.advertise.empty() ? options.listen : options.advertise;
  etcd.lease_ttl_seconds = options.etcd_lease_ttl_seconds;
  etcd.on_lost_leadership = options.on_lost_leadership;
  etcd.on_standby = options.on_standby;
  ASSIGN_OR_RETURN(std::unique_ptr<internal::KvStore> store, internal::OpenEtcdStore(etcd));
  return std::make_unique<internal::Catalog>(std::move(store));
}

}  // namespace

CoordinatorServer::CoordinatorServer(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
CoordinatorServer::~CoordinatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  if (options.db_path.empty() == options.catalog.empty()) {
    return absl::InvalidArgumentError("give the catalog as --db=DIR or --catalog=etcd://..., one of them");
  }
  if (options.storage_uri.empty()) return absl::InvalidArgumentError("--storage is required");
  if (options.heartbeat_interval_ms <= 0 ||
      options.writer_timeout_ms < 3 * options.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the writer timeout (", options.writer_timeout_ms, " ms) must be at least 3 heartbeat "
        "intervals (", options.heartbeat_interval_ms,
        " ms each): a shorter one declares healthy writers dead between their beats"));
  }
  auto rep = std::make_unique<Rep>();
  Clock* clock = options.clock ? options.clock : &rep->real_clock;
  ASSIGN_OR_RETURN(auto catalog, OpenCatalog(options));
  const auto led_at = std::chrono::steady_clock::now();
  if (!options.catalog.empty()) {
    // Opening an etcd catalog returns once this process leads (a standby
    // waits in it): an operator reading a failover wants to see when.
    logging::Log(absl::StrCat("leading: won the election on ", options.catalog));
  }
  // Writers are handed this root: a relative path would mean another
  // directory in each process (or be refused there).
  ASSIGN_OR_RETURN(std::string storage_uri, AbsoluteStorageUri(options.storage_uri));
  ASSIGN_OR_RETURN(auto storage, OpenStorage(storage_uri, options.storage));
  storage = MeteredStorage(std::move(storage), "coordinator");
  rep->service = std::make_unique<internal::CoordinatorService>(options, std::move(catalog),
                                                                std::move(storage), clock);
  RETURN_IF_ERROR(rep->service->Recover());
  if (!options.catalog.empty()) {
    logging::Log(absl::StrCat("catalog recovered in ",
                              std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - led_at).count(),
                              " ms; serving"));
  }
  {
    internal::CoordinatorService* service = rep->service.get();
    rep->heartbeat_age_collector = metrics::AddGaugeCollector(
        "cairn_writer_heartbeat_age_seconds",
        "Seconds since each shard writer's last heartbeat, at scrape time: a dead writer's grows.",
        [service] { return service->WriterHeartbeatAges(); });
  }
  // Removes the collector if Start fails below (Shutdown does otherwise).
  struct RemoveCollector {
    Rep* rep;
    ~RemoveCollector() {
      if (rep != nullptr) metrics::RemoveGaugeCollector(rep->heartbeat_age_collector);
    }
  } remove_collector{rep.get()};

  RETURN_IF_ERROR(rpc::CheckListenSecurity(options.listen, options.tls, options.insecure));
  auto credentials = rpc::ServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  if (!options.auth_key.empty() && options.auth_key.size() < auth::kMinKeyBytes) {
    return absl::InvalidArgumentError("the auth key is too short");
  }
  grpc::EnableDefaultHealthCheckService(true);  // grpc.health.v1.Health
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
  builder.SetMaxSendMessageSize(rpc::kMaxMessageBytes);
  rpc::RefusePortSharing(&builder);
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
  if (!options.metrics_listen.empty()) {
    internal::CoordinatorService* service = rep->service.get();
    auto json = [](absl::StatusOr<std::string> body) {
      HttpResponseBody out;
      out.content_type = "application/json";
      if (body.ok()) {
        out.body = *body;
      } else {
        out.status = absl::IsInvalidArgument(body.status()) ? 400
                     : absl::IsNotFound(body.status())      ? 404
                                                            : 500;
        out.body = absl::StrCat("{\"error\": \"", absl::CEscape(body.status().message()), "\"}");
      }
      return out;
    };
    const std::string auth_key = options.auth_key;
    // With authorization on, every page needs a read token for what it
    // shows (the overview: a token for every job, "*"): as a bearer header,
    // or ?token= for a browser.
    // `job` empty: a read token for any one job will do (the page itself,
    // which holds no data: a job's token opens it at #job=JOB).
    auto denied = [auth_key](const HttpRequest& request, const std::string& job) {
      std::optional<HttpResponseBody> out;
      if (auth_key.empty()) return out;
      std::string token = request.bearer_token;
      if (token.empty() && request.query.count("token")) token = request.query.at("token");
      std::string wanted = job;
      if (wanted.empty()) {
        auto claims = auth::VerifyToken(auth_key, token, auth::NowUnixSeconds());
        wanted = claims.ok() ? claims->job : auth::kAnyJob;
      }
      absl::Status s = auth::Authorize(auth_key, token, wanted, auth::Scope::kRead, auth::NowUnixSeconds());
      if (s.ok()) return out;
      out.emplace();
      out->status = absl::IsPermissionDenied(s) ? 403 : 401;
      out->content_type = "application/json";
      out->body = absl::StrCat("{\"error\": \"", absl::CEscape(s.message()), "\"}");
      return out;
    };
    std::map<std::string, HttpHandler> handlers;
    handlers["/"] = [denied](const HttpRequest& request) {
      HttpResponseBody out;
      if (request.path != "/" && request.path != "/index.html") {
        out.status = 404;
        out.body = "not found\n";
        return out;
      }
      if (auto refused = denied(request, "")) return *refused;
      out.content_type = "text/html; charset=utf-8";
      out.body = internal::kStatusPageHtml;
      return out;
    };
    handlers["/api/jobs"] = [service, json, denied](const HttpRequest& request) {
      if (auto refused = denied(request, auth::kAnyJob)) return *refused;
      return json(service->JobsJson());
    };
    handlers["/api/jobs/"] = [service, json, denied](const HttpRequest& request) {
      const std::string job = request.path.substr(std::string("/api/jobs/").size());
      if (absl::Status s = ValidateJobName(job); !s.ok()) return json(s);
      if (auto refused = denied(request, job)) return *refused;
      return json(service->JobJson(job));
    };
    ASSIGN_OR_RETURN(rep->http, HttpEndpoint::Start(options.metrics_listen, std::move(handlers)));
    logging::Log(absl::StrCat("status page and metrics on http://", rep->http->address(),
                              "/ (/metrics)"));
  }
  remove_collector.rep = nullptr;
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(rep)));
}

std::string CoordinatorServer::address() const { return rep_->address; }

void CoordinatorServer::Shutdown() {
  std::lock_guard<std::mutex> lock(rep_->mu);
  if (rep_->shut_down) return;
  rep_->shut_down = true;
  rep_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rep_->service->StopBackground();
  if (rep_->http) rep_->http->Stop();
  metrics::RemoveGaugeCollector(rep_->heartbeat_age_collector);
}

void CoordinatorServer::Wait() { rep_->server->Wait(); }

}  // namespace cairn
