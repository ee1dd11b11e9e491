// Restores every tensor of a checkpoint prefix (any storage URI) into memory,
// checking every CRC, and prints "restore_seconds=S bytes=B". Used by
// bench/http_restore_bench.sh, which compares it with curl.
//
//   build/bin/restore_bench PREFIX_URI [--threads=N]
#include <chrono>
#include <cstdio>
#include <string>

#include "client/client.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: restore_bench PREFIX_URI [--threads=N]\n");
    return 2;
  }
  int threads = 4;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0) threads = std::stoi(a.substr(10));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto restored = cairn::RestoreFromPrefix(argv[1], {}, threads);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!restored.ok()) {
    std::fprintf(stderr, "restore_bench: %s\n", std::string(restored.status().message()).c_str());
    return 1;
  }
  uint64_t bytes = 0;
  for (const auto& [name, t] : *restored) bytes += t.tensor.data.size();
  std::printf("restore_seconds=%.4f bytes=%llu\n", secs, static_cast<unsigned long long>(bytes));
  return 0;
}
