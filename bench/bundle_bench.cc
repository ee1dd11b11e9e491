// Bundle write/read throughput against plain file I/O of the same bytes, and
// CRC32C speed. Prints ratios measured in the same run (the machines are
// shared and noisy: warm up, repeat, report medians). Not a test.
//
//   build/bin/bundle_bench [--mib=512] [--repeats=3] [--dir=/tmp]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/crc32c.h"
#include "storage/storage.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Die(const absl::Status& s) {
  std::fprintf(stderr, "bundle_bench: %s\n", std::string(s.message()).c_str());
  std::exit(1);
}

struct TensorSpec {
  std::string name;
  size_t offset;
  size_t size;
};

double PlainWrite(const std::string& path, const std::string& data) {
  auto t0 = Clock::now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  constexpr size_t kChunk = 8 << 20;
  for (size_t off = 0; off < data.size(); off += kChunk) {
    size_t n = std::min(kChunk, data.size() - off);
    if (::write(fd, data.data() + off, n) != static_cast<ssize_t>(n)) std::abort();
  }
  ::fsync(fd);
  ::close(fd);
  return Seconds(t0);
}

double PlainRead(const std::string& path, std::string* out) {
  auto t0 = Clock::now();
  int fd = ::open(path.c_str(), O_RDONLY);
  constexpr size_t kChunk = 8 << 20;
  for (size_t off = 0; off < out->size(); off += kChunk) {
    size_t n = std::min(kChunk, out->size() - off);
    if (::pread(fd, out->data() + off, n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) std::abort();
  }
  ::close(fd);
  return Seconds(t0);
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 512;
  int repeats = 3;
  std::string dir = "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--mib=", 0) == 0) mib = std::stoul(a.substr(6));
    else if (a.rfind("--repeats=", 0) == 0) repeats = std::stoi(a.substr(10));
    else if (a.rfind("--dir=", 0) == 0) dir = a.substr(6);
    else {
      std::fprintf(stderr, "usage: bundle_bench [--mib=N] [--repeats=N] [--dir=DIR]\n");
      return 2;
    }
  }
  dir = absl::StrCat(dir, "/cairn-bench-", ::getpid());
  auto storage_or = cairn::NewLocalStorage(dir);
  if (!storage_or.ok()) Die(storage_or.status());
  auto storage = std::move(storage_or).value();

  // A mixed-size state: a few large matrices, many medium and small tensors.
  std::string data(mib << 20, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  std::vector<TensorSpec> tensors;
  size_t off = 0;
  const size_t sizes[] = {64 << 20, 4 << 20, 256 << 10, 4 << 10};
  for (int i = 0; off < data.size(); ++i) {
    size_t sz = std::min(sizes[i % 4], data.size() - off);
    sz -= sz % 4;
    if (sz == 0) break;
    tensors.push_back({absl::StrCat("layer_", i, "/w"), off, sz});
    off += sz;
  }

  std::vector<double> plain_w, bundle_w, plain_r, bundle_r;
  std::string readback(off, '\0');
  for (int rep = 0; rep < repeats + 1; ++rep) {  // first round warms up
    const std::string plain_path = absl::StrCat(dir, "/plain.bin");
    ::mkdir(dir.c_str(), 0755);
    double pw = PlainWrite(plain_path, data.substr(0, off));
    double pr = PlainRead(plain_path, &readback);

    const std::string prefix = absl::StrCat("ckpt-", rep, "/variables");
    auto t0 = Clock::now();
    auto writer = cairn::BundleWriter::Create(storage.get(), prefix);
    if (!writer.ok()) Die(writer.status());
    for (const auto& t : tensors) {
      absl::Status s = (*writer)->Add(t.name, cairn::DataType::kFloat,
                                      {static_cast<int64_t>(t.size / 4)},
                                      absl::string_view(data.data() + t.offset, t.size));
      if (!s.ok()) Die(s);
    }
    double adds = Seconds(t0);
    if (absl::Status s = (*writer)->Finish(); !s.ok()) Die(s);
    if (std::getenv("BENCH_DEBUG")) std::printf("adds %.3f total %.3f plain %.3f\n", adds, Seconds(t0), pw);
    double bw = Seconds(t0);

    t0 = Clock::now();
    auto reader = cairn::BundleReader::Open(storage.get(), prefix);
    if (!reader.ok()) Die(reader.status());
    auto entries = (*reader)->ListTensors();
    for (const auto& e : *entries) {
      if (absl::Status s = (*reader)->ReadEntryInto(e, readback.data() + 0); !s.ok()) Die(s);
    }
    double br = Seconds(t0);
    if (rep > 0) {
      plain_w.push_back(pw);
      plain_r.push_back(pr);
      bundle_w.push_back(bw);
      bundle_r.push_back(br);
    }
    storage->Delete(prefix + ".index").IgnoreError();
    storage->Delete(prefix + ".data-00000-of-00001").IgnoreError();
    ::unlink(plain_path.c_str());
  }

  auto gbps = [&](double s) { return off / s / 1e9; };
  std::printf("bundle benchmark: %zu MiB in %zu tensors, median of %d runs, dir %s\n", off >> 20,
              tensors.size(), repeats, dir.c_str());
  std::printf("%-28s %10s %10s %8s %s\n", "figure", "cairn", "baseline", "ratio", "baseline");
  std::printf("%-28s %7.2f GB/s %7.2f GB/s %8.2f %s\n", "write (fsync'd)", gbps(Median(bundle_w)),
              gbps(Median(plain_w)), Median(plain_w) / Median(bundle_w),
              "write()+fsync of the same bytes");
  std::printf("%-28s %7.2f GB/s %7.2f GB/s %8.2f %s\n", "read (CRC-checked)", gbps(Median(bundle_r)),
              gbps(Median(plain_r)), Median(plain_r) / Median(bundle_r),
              "pread() of the same bytes (page cache warm for both)");

  const size_t crc_bytes = 256 << 20;
  std::vector<double> hw, sw;
  for (int rep = 0; rep < repeats; ++rep) {
    auto t0 = Clock::now();
    volatile uint32_t c = cairn::crc32c::Extend(0, data.data(), crc_bytes);
    hw.push_back(Seconds(t0));
    t0 = Clock::now();
    c = cairn::crc32c::ExtendPortable(0, data.data(), crc_bytes);
    sw.push_back(Seconds(t0));
    (void)c;
  }
  std::printf("%-28s %7.2f GB/s %7.2f GB/s %8.2f %s (hardware path: %s, target >= 5 GB/s)\n",
              "crc32c", crc_bytes / Median(hw) / 1e9, crc_bytes / Median(sw) / 1e9,
              Median(sw) / Median(hw), "portable slicing-by-8",
              cairn::crc32c::HardwareAvailable() ? "yes" : "no");
  ::rmdir((dir + "/ckpt-0").c_str());
  for (int rep = 0; rep <= repeats; ++rep) ::rmdir(absl::StrCat(dir, "/ckpt-", rep).c_str());
  ::rmdir(dir.c_str());
  return 0;
}
