// A shard writer node: receives a worker's tensors as a gRPC stream and
// writes them as one single-shard bundle in the job's staging area, data
// written as bytes arrive (CRC32C computed on the fly), then fsync'd and
// published, then reported durable to the coordinator. Many streams and jobs
// are served at once; memory per stream is bounded by one gRPC message
// (a 4 MiB chunk) plus the file write buffer, whatever the tensor sizes.
//
//   cairn::WriterOptions options;
//   options.coordinator = "127.0.0.1:7070";
//   ASSIGN_OR_RETURN(auto writer, cairn::WriterServer::Start(options));
//   writer->Wait();
#ifndef CAIRN_SHARD_WRITER_SHARD_WRITER_H_
#define CAIRN_SHARD_WRITER_SHARD_WRITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/rpc/tls_options.h"
#include "storage/storage.h"

namespace cairn {

struct WriterOptions {
  // HOST:PORT to listen on; port 0 picks a free port.
  std::string listen = "127.0.0.1:0";
  // The coordinator's HOST:PORT. Required.
  std::string coordinator;
  // The address clients should use to reach this writer; default: the
  // address listened on.
  std::string advertise;
  // Storage root; default: the one the coordinator announces at registration.
  std::string storage_uri;
  StorageOptions storage;  // how to reach it (S3 endpoint and credentials, ...)
  // How long to keep retrying a durability report the coordinator does not
  // answer (it may be restarting).
  int64_t report_timeout_ms = 60000;
  // While Start waits for the coordinator to answer: called between
  // attempts to wait up to `ms` milliseconds; returning true gives up
  // starting (Start returns Cancelled). main() passes a wait for SIGTERM, so
  // a writer whose coordinator is down still stops at once. Default: sleep.
  std::function<bool(int ms)> stop_requested;
  // Also compute each shard's SHA-256 while it streams in, for the
  // catalog's inventory. Off by default: every file's whole-file CRC32C is
  // recorded anyway (combined from the per-chunk CRCs computed on the fly,
  // at no extra pass over the bytes), and `cairn verify --deep` checks it;
  // the SHA-256 costs about 0.9 s of CPU per GiB (the writer's largest cost),
  // for a digest a store may want for auditing, not for corruption checks.
  bool inventory_sha256 = false;
  // Write local shard files with O_DIRECT (StorageOptions::local_direct_io):
  // a fraction of the CPU time of writing through the page cache.
  bool direct_io = true;
  // Largest shard (tensor bytes) one stream may bring; a stream past it is
  // refused (its partial files go with the checkpoint's staging area).
  uint64_t max_shard_bytes = uint64_t{1} << 40;
  // Accept SaveShardMessage.batch (and announce it). Off only to act as a
  // writer from before batches, in tests of mixed-version clusters.
  bool accept_tensor_batches = true;
  // HOST:PORT of an HTTP endpoint serving /metrics (Prometheus); empty = none.
  std::string metrics_listen;
  // TLS: serve TLS when tls.cert_file/key_file are set (mutual TLS with
  // tls.require_client_cert); the channel to the coordinator uses the same
  // settings (tls.ca_file verifies it; the certificate is presented).
  TlsOptions tls;
  // Allow a plaintext listen address beyond loopback.
  bool insecure = false;
  // HMAC key of per-job authorization tokens, the coordinator's; empty = off.
  // SaveShard then needs a write token for the job, Merge a cluster token,
  // and the writer signs its own calls to the coordinator.
  std::string auth_key;
};

class WriterServer {
 public:
  // Starts serving and registers with the coordinator (retrying until it
  // answers, up to report_timeout_ms).
  static absl::StatusOr<std::unique_ptr<WriterServer>> Start(const WriterOptions& options);
  ~WriterServer();

  std::string address() const;
  void Shutdown();
  void Wait();

 private:
  struct Rep;
  explicit WriterServer(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

}  // namespace cairn

#endif  // CAIRN_SHARD_WRITER_SHARD_WRITER_H_
