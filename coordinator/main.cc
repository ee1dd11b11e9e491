// cairn-coordinator: the catalog and commit service. See README.md.
#include <iostream>
#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/cmdline/signals.h"

#include "proto/cmdline/flags.h"
#include "observability/log.h"
#include "proto/server/server_main.h"
#include "absl/strings/numbers.h"
#include "coordinator/coordinator.h"
#include "observability/sync_point.h"
#include "observability/version.h"

namespace {

constexpr char kUsage[] =
    R"(usage: cairn-coordinator (--db=DIR | --catalog=etcd://HOST:PORT[,...]/PREFIX
                          [--etcd-lease-ttl=SECONDS] [--advertise=HOST:PORT])
                         --storage=URI [--listen=HOST:PORT]
                         [--pending-timeout=SECONDS] [--writer-timeout=SECONDS]
                         [--heartbeat-interval=SECONDS] [--metrics-listen=HOST:PORT]
                         [--tls-cert=FILE --tls-key=FILE [--tls-ca=FILE]
                          [--tls-client-auth]] [--insecure] [--auth-key-file=FILE]
       cairn-coordinator --help | --version

Keeps the catalog of jobs and checkpoints, assigns shards to shard writers and
commits checkpoints under the storage root URI.
  --db               the catalog in a RocksDB directory (embedded; the default
                     choice for one coordinator)
  --catalog          the catalog in etcd, for several coordinators: one leads
                     (an etcd lease), the others wait as standbys and take over
                     when it stops; several endpoints as IPV4:PORT,IPV4:PORT
  --etcd-lease-ttl   seconds a leader may go silent before a standby takes
                     over (default 5)
  --advertise        this coordinator's address as the others report it
                     (default: --listen)
  --listen           address to serve on (default 127.0.0.1:0; port 0 picks a
                     free port, printed as "listening on HOST:PORT")
  --pending-timeout  abort a checkpoint whose shards have not all arrived after
                     this many seconds (default 600)
  --writer-timeout   consider a writer dead after this many seconds without a
                     heartbeat (default 5; at least 3 heartbeat intervals)
  --heartbeat-interval  seconds between a writer's heartbeats (default 1)
  --metrics-listen   HOST:PORT for the status page (/), its JSON (/api/jobs) and
                     Prometheus metrics (/metrics); port 0 picks one (logged)
  --s3-endpoint      S3 endpoint for s3:// storage (default $AWS_ENDPOINT_URL;
                     credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
                     region from AWS_REGION)
  --auth-key-file    per-job authorization: every call needs a token signed
                     with this key (see 'cairn token'); give the writers the
                     same file. Default: no authorization.
Stops cleanly on SIGTERM or SIGINT.
)";

}  // namespace

int main(int argc, char** argv) {
  using cairn::cmdline::Flags;
  cairn::cmdline::PrepareServerProcess();
  cairn::logging::SetProgram("cairn-coordinator");
  auto flags = Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                            {"help", "version", "db", "storage", "listen", "pending-timeout", "writer-timeout", "heartbeat-interval",
                             "crash-at", "s3-endpoint", "catalog", "etcd-lease-ttl", "advertise", "metrics-listen", "tls-cert", "tls-key", "tls-ca",
                             "tls-client-auth", "insecure", "auth-key-file"});
  if (!flags.ok()) {
    std::cerr << "cairn-coordinator: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  if (flags->GetBool("help")) {
    std::cout << kUsage << cairn::cmdline::TlsUsage(/*server=*/true);
    return 0;
  }
  if (flags->GetBool("version")) {
    std::cout << "cairn-coordinator " << CAIRN_VERSION << "\n";
    return 0;
  }
  if (!flags->positional().empty()) {
    std::cerr << "cairn-coordinator: unexpected argument " << flags->positional()[0] << "\n";
    return 2;
  }
  cairn::CoordinatorOptions options;
  options.storage = cairn::cmdline::StorageOptionsFromFlags(*flags);
  options.db_path = flags->Get("db").value_or("");
  options.storage_uri = flags->Get("storage").value_or("");
  options.listen = flags->Get("listen").value_or("127.0.0.1:0");
  // Testing: end the process abruptly at this named sync point (see
  // observability/sync_point.h and the CAIRN_SYNC_POINT names in coordinator/).
  if (auto point = flags->Get("crash-at"); point.has_value()) cairn::sync_point::InstallCrash(*point);
  options.metrics_listen = flags->Get("metrics-listen").value_or("");
  auto pending = flags->GetInt("pending-timeout", 1, 365LL * 86400);
  if (!pending.ok()) {
    std::cerr << "cairn-coordinator: " << pending.status().message() << "\n";
    return 2;
  }
  if (pending->has_value()) options.pending_timeout_ms = **pending * 1000;
  // Fractions of a second allowed ("0.2"), in [10 ms, 1 day].
  for (auto [name, ms] : {std::pair<const char*, int64_t*>{"writer-timeout", &options.writer_timeout_ms},
                          {"heartbeat-interval", &options.heartbeat_interval_ms}}) {
    const std::optional<std::string> text = flags->Get(name);
    if (!text.has_value()) continue;
    double seconds = 0;
    if (!absl::SimpleAtod(*text, &seconds) || !(seconds >= 0.01 && seconds <= 86400)) {
      std::cerr << "cairn-coordinator: --" << name << "=" << *text
                << ": expected seconds between 0.01 and 86400\n";
      return 2;
    }
    *ms = static_cast<int64_t>(seconds * 1000 + 0.5);
  }
  options.catalog = flags->Get("catalog").value_or("");
  options.advertise = flags->Get("advertise").value_or("");
  if (options.db_path.empty() == options.catalog.empty() || options.storage_uri.empty()) {
    std::cerr << "cairn-coordinator: --storage and one of --db or --catalog are required\n" << kUsage;
    return 2;
  }
  auto ttl = flags->GetInt("etcd-lease-ttl", 2, 3600);
  if (!ttl.ok()) {
    std::cerr << "cairn-coordinator: " << ttl.status().message() << "\n";
    return 2;
  }
  if (ttl->has_value()) options.etcd_lease_ttl_seconds = **ttl;
  // Fail-stop: a deposed leader's catalog refuses every write (fencing); the
  // process ends so its supervisor restarts it as a standby.
  options.on_lost_leadership = [](const absl::Status& why) {
    cairn::logging::Log(absl::StrCat("lost the leadership (", why.message(), "); exiting"));
    std::_Exit(3);
  };
  options.on_standby = [](const std::string& leader) {
    cairn::logging::Log(leader.empty() ? std::string("standby: waiting for the leadership")
                                       : absl::StrCat("standby: the leader is ", leader));
  };
  const int rc = cairn::cmdline::ServerSecurityFromFlags(*flags, "cairn-coordinator", options.listen, &options.tls,
                                                     &options.insecure, &options.auth_key);
  if (rc >= 0) return rc;
  // A standby waits inside Start until it leads; SIGTERM still stops it.
  auto started = std::async(std::launch::async, [&options] { return cairn::CoordinatorServer::Start(options); });
  while (started.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    if (const int sig = cairn::cmdline::PollTerminationSignal(200); sig != 0) {
      cairn::logging::Log(absl::StrCat("signal ", sig, " before serving; exiting"));
      std::_Exit(0);
    }
  }
  return cairn::cmdline::ServeUntilSignal(started.get(), "cairn-coordinator");
}
