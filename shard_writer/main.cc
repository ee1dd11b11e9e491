// cairn-writer: a shard writer node. See README.md.
#include <iostream>

#include "client/internal/flags.h"
#include "client/internal/signals.h"
#include "storage/storage.h"
#include "shard_writer/shard_writer.h"

namespace {

constexpr char kUsage[] =
    R"(usage: cairn-writer --coordinator=HOST:PORT [--listen=HOST:PORT] [--advertise=HOST:PORT]
                    [--storage=URI]

Receives workers' tensor streams and writes checkpoint shards.
  --coordinator  the coordinator to register with (required)
  --listen       address to serve on (default 127.0.0.1:0; port 0 picks a free
                 port, printed as "listening on HOST:PORT")
  --advertise    address clients should use (default: the listening address)
  --storage      storage root (default: the coordinator's)
  --s3-endpoint      S3 endpoint for s3:// storage (default $AWS_ENDPOINT_URL;
                     credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
                     region from AWS_REGION)
Stops cleanly on SIGTERM or SIGINT.
)";

}  // namespace

int main(int argc, char** argv) {
  using cairn::cli::Flags;
  cairn::cli::BlockTerminationSignals();
  auto flags = Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                            {"help", "coordinator", "listen", "advertise", "storage", "s3-endpoint"});
  if (!flags.ok()) {
    std::cerr << "cairn-writer: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  if (flags->GetBool("help")) {
    std::cout << kUsage;
    return 0;
  }
  {
    // S3 settings: the AWS_* environment, overridden by --s3-endpoint.
    cairn::StorageOptions storage_options = cairn::StorageOptionsFromEnvironment();
    if (auto endpoint = flags->Get("s3-endpoint")) storage_options.s3.endpoint = *endpoint;
    cairn::SetDefaultStorageOptions(storage_options);
  }
  cairn::WriterOptions options;
  options.coordinator = flags->Get("coordinator").value_or("");
  options.listen = flags->Get("listen").value_or("127.0.0.1:0");
  options.advertise = flags->Get("advertise").value_or("");
  options.storage_uri = flags->Get("storage").value_or("");
  if (options.coordinator.empty() || !flags->positional().empty()) {
    std::cerr << "cairn-writer: --coordinator is required\n" << kUsage;
    return 2;
  }
  auto server = cairn::WriterServer::Start(options);
  if (!server.ok()) {
    std::cerr << "cairn-writer: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "listening on " << (*server)->address() << std::endl;
  int sig = cairn::cli::WaitForTerminationSignal();
  std::cerr << "cairn-writer: signal " << sig << ", shutting down\n";
  (*server)->Shutdown();
  return 0;
}
