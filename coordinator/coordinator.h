// The coordinator: Cairn's catalog of jobs and checkpoints (RocksDB), shard
// assignment, and the two-phase commit that makes a checkpoint visible only
// once every shard is durable and the merged index is written.
//
//   cairn::CoordinatorOptions options;
//   options.listen = "127.0.0.1:0";
//   options.db_path = "/data/cairn/catalog";
//   options.storage_uri = "/data/cairn/checkpoints";
//   ASSIGN_OR_RETURN(auto server, cairn::CoordinatorServer::Start(options));
//   std::cout << "listening on " << server->address() << "\n";
//   server->Wait();
//
// Commit protocol (see proto/cairn.proto): shards are written by writers to
// JOB/.cairn-staging/ckpt-STEP/...; when all N are durable the parts are
// merged there; the commit is then decided (state COMMITTING, synced), the
// merged files are renamed to JOB/ckpt-STEP/ (data files first, the index
// last), the `checkpoint` state file is rewritten, and the record becomes
// COMMITTED in one synced write. After a crash, Start() finishes every
// decided commit and every pending checkpoint whose shards are all durable;
// the rest stay pending until their timeout aborts them and removes their
// files. A committed checkpoint is never touched by any of this.
#ifndef CAIRN_COORDINATOR_COORDINATOR_H_
#define CAIRN_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/clock.h"
#include "proto/rpc/tls_options.h"
#include "storage/storage.h"

namespace cairn {

struct CoordinatorOptions {
  // HOST:PORT to listen on; port 0 picks a free port.
  std::string listen = "127.0.0.1:0";
  // Where the catalog lives: a RocksDB directory (created if missing), the
  // embedded default; or, for several coordinators of which one leads,
  // `catalog` = "etcd://HOST:PORT[,HOST:PORT...]/PREFIX". Exactly one.
  std::string db_path;
  std::string catalog;
  // etcd only: this coordinator's name in the leader election, as standbys
  // report it (default: `listen`).
  std::string advertise;
  // etcd only: the leadership lease's TTL. A standby takes over at most
  // about this long after the leader stops renewing it.
  int64_t etcd_lease_ttl_seconds = 5;
  // etcd only: called once if this coordinator loses the leadership (its
  // catalog then refuses every write). A server process should exit, so its
  // supervisor restarts it as a standby.
  std::function<void(const absl::Status&)> on_lost_leadership;
  // etcd only: called while this coordinator waits as a standby, with the
  // leader's address.
  std::function<void(const std::string&)> on_standby;
  // Root under which every job's checkpoints live. Required.
  std::string storage_uri;
  StorageOptions storage;  // how to reach it (S3 endpoint and credentials, ...)
  // A pending checkpoint not complete this long after its first shard began
  // is aborted and its files removed.
  int64_t pending_timeout_ms = 10 * 60 * 1000;
  // A writer silent this long is considered dead and gets no new shards.
  // At least 3 heartbeat intervals (Start refuses less): liveness needs
  // margin for a late beat.
  int64_t writer_timeout_ms = 5000;
  // How often writers should heartbeat.
  int64_t heartbeat_interval_ms = 1000;
  // TLS: serve TLS when tls.cert_file/key_file are set (mutual TLS with
  // tls.require_client_cert); calls to writers (Merge) use the same settings.
  TlsOptions tls;
  // Allow a plaintext listen address beyond loopback.
  bool insecure = false;
  // HMAC key of per-job authorization tokens (proto/auth.h); empty = every
  // call is allowed. Writers must be given the same key.
  std::string auth_key;
  // HOST:PORT of an HTTP endpoint serving the status page (/), its JSON
  // (/api/jobs, /api/jobs/JOB) and Prometheus metrics (/metrics); empty =
  // none. Port 0 picks one; the address is logged to stderr.
  std::string metrics_listen;
  // Time source; nullptr = the real clock. Not owned; must outlive the server.
  Clock* clock = nullptr;
};

class CoordinatorServer {
 public:
  // Opens the catalog (with etcd: waits until this coordinator leads),
  // claims the storage root (FailedPrecondition if a
  // marker there names another catalog), recovers unfinished commits, and
  // starts serving.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  // Shuts down if still running.
  ~CoordinatorServer();

  // The address actually listened on, e.g. "127.0.0.1:41235".
  std::string address() const;
  // Stops accepting calls, lets running ones finish, stops background work.
  void Shutdown();
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  struct Rep;
  explicit CoordinatorServer(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace cairn

#endif  // CAIRN_COORDINATOR_COORDINATOR_H_
