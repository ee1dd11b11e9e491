// cairn-writer: a shard writer node. See README.md.
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <thread>

#include "proto/cmdline/flags.h"
#include "observability/log.h"
#include "proto/server/server_main.h"
#include "shard_writer/shard_writer.h"
#include "observability/version.h"

namespace {

constexpr char kUsage[] =
    R"(usage: cairn-writer --coordinator=HOST:PORT [--listen=HOST:PORT] [--advertise=HOST:PORT]
                    [--storage=URI] [--tls-cert=FILE --tls-key=FILE] [--tls-ca=FILE]
                    [--tls-client-auth] [--insecure] [--auth-key-file=FILE]
       cairn-writer --help | --version

Receives workers' tensor streams and writes checkpoint shards.
  --coordinator  the coordinator to register with (required)
  --listen       address to serve on (default 127.0.0.1:0; port 0 picks a free
                 port, printed as "listening on HOST:PORT")
  --advertise    address clients should use (default: the listening address)
  --storage      storage root (default: the coordinator's)
  --report-timeout=SECONDS
                 how long to keep retrying a durability report while the
                 coordinator does not answer (default 60)
  --max-shard-bytes=N
                 refuse a shard stream bringing more tensor bytes (default 1 TiB)
  --metrics-listen=HOST:PORT
                 serve Prometheus metrics over HTTP at /metrics (port 0: any)
  --direct-io=false
                 write through the page cache instead of with O_DIRECT
                 (O_DIRECT is used where the filesystem has it; far less
                 CPU per byte)
  --inventory-sha256=true
                 also record each data file's SHA-256 in the catalog's inventory
                 (about 0.9 s of CPU per GiB; `cairn verify --deep` always checks
                 the whole-file CRC32C, and the SHA-256 too where recorded)
  --s3-endpoint      S3 endpoint for s3:// storage (default $AWS_ENDPOINT_URL;
                     credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
                     region from AWS_REGION)
  --auth-key-file  the coordinator's authorization key file: SaveShard needs
                 a write token for the job (see 'cairn token')
Stops cleanly on SIGTERM or SIGINT.
)";

}  // namespace

int main(int argc, char** argv) {
  using cairn::cmdline::Flags;
  // Each 4 MiB chunk received is a fresh allocation; above glibc's mmap
  // threshold each would be mapped, faulted in page by page and unmapped
  // again (measured: ~450k page faults per 4 GiB received). Served from a
  // heap that keeps freed memory (up to 256 MiB) instead, the chunks reuse
  // warm pages; the service hands it all back once it has been idle for a
  // while (WriterService::TrimIfIdle).
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  // A heap per two cores (at least two), not one per gRPC thread (glibc's
  // default: up to 8 per core): a stream handled by a thread that never ran
  // one would otherwise fault a heap's worth of chunks in again, however
  // warm the others are. The allocations are few and large; sharing a heap
  // costs little.
  ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency() / 2)));
  cairn::cmdline::PrepareServerProcess();
  cairn::logging::SetProgram("cairn-writer");
  auto flags = Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                            {"help", "version", "coordinator", "listen", "advertise", "storage", "s3-endpoint", "inventory-sha256", "direct-io", "metrics-listen",
                             "tls-cert", "tls-key", "tls-ca", "tls-client-auth", "insecure",
                             "auth-key-file", "report-timeout", "max-shard-bytes"});
  if (!flags.ok()) {
    std::cerr << "cairn-writer: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  if (flags->GetBool("help")) {
    std::cout << kUsage << cairn::cmdline::TlsUsage(/*server=*/true);
    return 0;
  }
  if (flags->GetBool("version")) {
    std::cout << "cairn-writer " << CAIRN_VERSION << "\n";
    return 0;
  }
  cairn::WriterOptions options;
  options.storage = cairn::cmdline::StorageOptionsFromFlags(*flags);
  options.coordinator = flags->Get("coordinator").value_or("");
  options.listen = flags->Get("listen").value_or("127.0.0.1:0");
  options.advertise = flags->Get("advertise").value_or("");
  auto report_timeout = flags->GetInt("report-timeout", 1, 86400);
  auto max_shard = flags->GetInt("max-shard-bytes", 1, INT64_MAX);
  if (!report_timeout.ok() || !max_shard.ok()) {
    std::cerr << "cairn-writer: "
              << (!report_timeout.ok() ? report_timeout.status() : max_shard.status()).message() << "\n";
    return 2;
  }
  if (report_timeout->has_value()) options.report_timeout_ms = **report_timeout * 1000;
  if (max_shard->has_value()) options.max_shard_bytes = static_cast<uint64_t>(**max_shard);
  options.storage_uri = flags->Get("storage").value_or("");
  options.metrics_listen = flags->Get("metrics-listen").value_or("");
  if (auto sha = flags->Get("inventory-sha256")) options.inventory_sha256 = *sha != "false" && *sha != "0";
  if (auto direct = flags->Get("direct-io")) options.direct_io = *direct != "false" && *direct != "0";
  if (options.coordinator.empty() || !flags->positional().empty()) {
    std::cerr << "cairn-writer: --coordinator is required\n" << kUsage;
    return 2;
  }
  const int rc = cairn::cmdline::ServerSecurityFromFlags(*flags, "cairn-writer", options.listen, &options.tls,
                                                     &options.insecure, &options.auth_key);
  if (rc >= 0) return rc;
  options.stop_requested = [](int ms) { return cairn::cmdline::PollTerminationSignal(ms) != 0; };
  return cairn::cmdline::ServeUntilSignal(cairn::WriterServer::Start(options), "cairn-writer");
}
