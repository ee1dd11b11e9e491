// One conformance suite that every storage backend runs: local files, the
// in-memory backend, S3 and, for the read part, plain HTTP.
//
// S3 and HTTP run on every build against in-process fakes
// (storage/backends/testing/): s3_fake, s3_faulty_fake (the same behind
// injected 500s, 503 SlowDowns, resets before and after the request is
// applied, and silent resends), http_fake and http_faulty_fake. After each
// test on a fake S3 no multipart upload may be left open.
//
// They also run against real servers, a Ceph object gateway (directly and
// through a fault-injecting proxy) and nginx, started by scripts/test.sh
// (tests/servers/*.sh), which exports:
//   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
//   CAIRN_TEST_S3_BUCKET          a bucket to use
//   CAIRN_TEST_S3_FAULT_ENDPOINT  the same gateway behind tests/servers/fault_proxy.py
//   CAIRN_HTTP_URL, CAIRN_HTTP_ROOT  nginx serving the directory CAIRN_HTTP_ROOT
// Backends whose variables are missing are skipped with "missing dependency:
// ..." (scripts/test.sh fails such skips when CI=true).
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "proto/cmdline/flags.h"
#include "storage/backends/remote_storage.h"
#include "storage/backends/testing/fake_http_server.h"
#include "storage/backends/testing/fake_s3_server.h"
#include "storage/backends/testing/faulty_transport.h"
#include "storage/storage.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string UniqueName() {
  static std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat("conformance-", rng() % 1000000000);
}

struct Backend {
  std::string name;
  bool writable = true;
  // Returns a fresh, empty storage root, or "" with `why` set to skip.
  std::function<std::unique_ptr<Storage>(std::string* why)> open;
  // For read-only backends: writes a file so that the backend can read it.
  std::function<void(const std::string& path, const std::string& data)> seed;
  // If set, run after each test: checks on what the test left behind.
  std::function<void()> check;
};

// The in-process servers of the current test (fresh ones for each).
struct Fakes {
  std::shared_ptr<testing::FakeS3Server> s3;
  std::shared_ptr<testing::FakeHttpServer> http;
  std::shared_ptr<testing::FaultyTransport> faulty;
  uint64_t fault_seed = 0;
  std::string http_dir;
};
Fakes& CurrentFakes() {
  static Fakes fakes;
  return fakes;
}
constexpr char kFakeBucket[] = "fake-bucket";

// The fault seed of the next faulty test: CAIRN_FAULT_SEED (as for
// scripts/test.sh's proxy) or random for the first, one more for each
// after. Printed after each faulty test; parallel requests draw in arrival
// order, so a seed replays a test only roughly.
uint64_t NextFaultSeed() {
  static uint64_t seed = [] {
    uint64_t s = 0;
    return absl::SimpleAtoi(Env("CAIRN_FAULT_SEED"), &s) ? s : std::random_device{}();
  }();
  return seed++;
}

// Wraps `server` in injected faults if `faulty` (20% of requests, as the
// proxy in front of the real gateway).
std::shared_ptr<internal::HttpTransport> MaybeFaulty(std::shared_ptr<internal::HttpTransport> server,
                                                     bool faulty) {
  if (!faulty) return server;
  testing::FaultOptions faults;
  faults.rate = 0.2;
  faults.seed = CurrentFakes().fault_seed = NextFaultSeed();
  CurrentFakes().faulty = std::make_shared<testing::FaultyTransport>(std::move(server), faults);
  return CurrentFakes().faulty;
}

void CheckFakes() {
  const Fakes& fakes = CurrentFakes();
  if (fakes.s3) {
    const std::vector<std::string> open = fakes.s3->OpenUploads(kFakeBucket);
    EXPECT_TRUE(open.empty()) << "multipart uploads left open: " << absl::StrJoin(open, ", ");
  }
  if (fakes.faulty && fakes.faulty->requests() > 0) {
    std::cout << "injected faults (seed " << fakes.fault_seed << "): " << fakes.faulty->Summary() << "\n";
  }
}

std::vector<Backend> Backends() {
  std::vector<Backend> out;
  static testing::TempDir local_root;  // removed at exit
  out.push_back({"local", true, [](std::string*) {
                   return std::move(NewLocalStorage(local_root.Join(UniqueName()))).value();
                 }, nullptr, nullptr});
  out.push_back({"memory", true, [](std::string*) { return NewMemoryStorage(); }, nullptr, nullptr});
  auto s3_fake = [](bool faulty) {
    return [faulty](std::string*) -> std::unique_ptr<Storage> {
      Fakes& fakes = CurrentFakes();
      fakes = Fakes();
      fakes.s3 = std::make_shared<testing::FakeS3Server>();
      fakes.s3->CreateBucket(kFakeBucket);
      StorageOptions options;
      options.s3 = fakes.s3->ClientOptions();
      options.s3.part_size = 5 << 20;
      options.s3.list_page_size = 7;  // exercise pagination
      auto s = internal::NewS3StorageForUri(absl::StrCat("s3://", kFakeBucket, "/", UniqueName()), options,
                                            MaybeFaulty(fakes.s3, faulty));
      EXPECT_TRUE(s.ok()) << s.status();
      return s.ok() ? std::move(s).value() : nullptr;
    };
  };
  out.push_back({"s3_fake", true, s3_fake(false), nullptr, CheckFakes});
  out.push_back({"s3_faulty_fake", true, s3_fake(true), nullptr, CheckFakes});
  auto http_fake = [](bool faulty) {
    return [faulty](std::string*) -> std::unique_ptr<Storage> {
      Fakes& fakes = CurrentFakes();
      fakes = Fakes();
      fakes.http = std::make_shared<testing::FakeHttpServer>();
      fakes.http_dir = UniqueName();
      return std::move(internal::NewHttpStorageForUri(absl::StrCat("http://fake-http.test/", fakes.http_dir), {},
                                                      MaybeFaulty(fakes.http, faulty)))
          .value();
    };
  };
  auto http_fake_seed = [](const std::string& path, const std::string& data) {
    CurrentFakes().http->Put(absl::StrCat("/", CurrentFakes().http_dir, "/", path), data);
  };
  out.push_back({"http_fake", false, http_fake(false), http_fake_seed, CheckFakes});
  out.push_back({"http_faulty_fake", false, http_fake(true), http_fake_seed, CheckFakes});
  auto s3 = [](const std::string& endpoint_var) {
    return [endpoint_var](std::string* why) -> std::unique_ptr<Storage> {
      const std::string endpoint = Env(endpoint_var.c_str());
      const std::string bucket = Env("CAIRN_TEST_S3_BUCKET");
      if (endpoint.empty() || bucket.empty()) {
        *why = absl::StrCat("missing dependency: S3 server (", endpoint_var, " / CAIRN_TEST_S3_BUCKET unset; "
                            "scripts/test.sh starts a Ceph gateway)");
        return nullptr;
      }
      StorageOptions options = cmdline::StorageOptionsFromEnvironment();
      options.s3.endpoint = endpoint;
      options.s3.part_size = 5 << 20;
      options.s3.list_page_size = 7;  // exercise pagination
      auto s = OpenStorage(absl::StrCat("s3://", bucket, "/", UniqueName()), options);
      EXPECT_TRUE(s.ok()) << s.status();
      return s.ok() ? std::move(s).value() : nullptr;
    };
  };
  out.push_back({"s3", true, s3("AWS_ENDPOINT_URL"), nullptr, nullptr});
  out.push_back({"s3_faulty", true, s3("CAIRN_TEST_S3_FAULT_ENDPOINT"), nullptr, nullptr});
  static std::string http_dir;
  out.push_back({"http", false,
                 [](std::string* why) -> std::unique_ptr<Storage> {
                   const std::string url = Env("CAIRN_HTTP_URL");
                   const std::string root = Env("CAIRN_HTTP_ROOT");
                   if (url.empty() || root.empty()) {
                     *why = "missing dependency: HTTP server (CAIRN_HTTP_URL / CAIRN_HTTP_ROOT unset; "
                            "scripts/test.sh starts nginx)";
                     return nullptr;
                   }
                   http_dir = UniqueName();
                   return std::move(OpenStorage(absl::StrCat(url, "/", http_dir), {})).value();
                 },
                 [](const std::string& path, const std::string& data) {
                   auto local = std::move(NewLocalStorage(Env("CAIRN_HTTP_ROOT"))).value();
                   auto f = std::move(local->NewWritableFile(JoinPath(http_dir, path))).value();
                   ASSERT_TRUE(f->Append(data).ok());
                   ASSERT_TRUE(f->Close().ok());
                 },
                 nullptr});
  return out;
}

void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

class Conformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    storage_ = GetParam().open(&why);
    if (!storage_) GTEST_SKIP() << why;
  }
  void TearDown() override {
    if (storage_ && GetParam().check) GetParam().check();
  }
  // Puts a file, through the backend if it is writable.
  void Put(const std::string& path, const std::string& data) {
    if (!GetParam().writable) {
      GetParam().seed(path, data);
      return;
    }
    auto f = storage_->NewWritableFile(path);
    ASSERT_TRUE(f.ok()) << f.status();
    for (size_t off = 0; off < data.size(); off += 1 << 20) {
      ASSERT_TRUE((*f)->Append(absl::string_view(data).substr(off, 1 << 20)).ok());
    }
    absl::Status s = (*f)->Close();
    ASSERT_TRUE(s.ok()) << s;
  }
  std::string Get(const std::string& path) {
    auto f = storage_->NewReadableFile(path);
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok()) return "";
    std::string out((*f)->Size(), '\0');
    absl::Status s = (*f)->ReadAt(0, out.size(), out.data());
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }
  std::unique_ptr<Storage> storage_;
};

TEST_P(Conformance, SmallFileRoundTrip) {
  Put("a/b/small.bin", "hello, storage");
  EXPECT_EQ(Get("a/b/small.bin"), "hello, storage");
  EXPECT_EQ(*storage_->FileSize("a/b/small.bin"), 14u);
  EXPECT_TRUE(*storage_->Exists("a/b/small.bin"));
  EXPECT_FALSE(*storage_->Exists("a/b/other.bin"));
  auto f = std::move(storage_->NewReadableFile("a/b/small.bin")).value();
  char buf[5];
  ASSERT_TRUE(f->ReadAt(7, 5, buf).ok());
  EXPECT_EQ(std::string(buf, 5), "stora");
  EXPECT_EQ(f->ReadAt(10, 5, buf).code(), absl::StatusCode::kOutOfRange);
}

TEST_P(Conformance, EmptyFile) {
  Put("empty", "");
  EXPECT_EQ(*storage_->FileSize("empty"), 0u);
  EXPECT_EQ(Get("empty"), "");
}

TEST_P(Conformance, LargeFileRoundTripsThroughPartsAndParallelRanges) {
  const std::string data = RandomBytes(23 << 20, 5);  // several multipart parts / ranged GETs
  Put("big/blob", data);
  EXPECT_EQ(*storage_->FileSize("big/blob"), data.size());
  EXPECT_TRUE(Get("big/blob") == data);
  auto f = std::move(storage_->NewReadableFile("big/blob")).value();
  std::string mid(9 << 20, '\0');
  ASSERT_TRUE(f->ReadAt(7777777, mid.size(), mid.data()).ok());
  EXPECT_TRUE(mid == data.substr(7777777, mid.size()));
}

TEST_P(Conformance, MissingFilesAreNotFound) {
  EXPECT_EQ(storage_->NewReadableFile("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(storage_->FileSize("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(Conformance, PathsCannotEscapeTheRoot) {
  EXPECT_EQ(storage_->NewReadableFile("../x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(storage_->NewReadableFile("a/../../x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(storage_->NewReadableFile("/etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(Conformance, WritesAreInvisibleUntilCloseAndAbandonLeavesNothing) {
  if (!GetParam().writable) GTEST_SKIP() << GetParam().name << " is read-only";
  auto f = std::move(storage_->NewWritableFile("pending")).value();
  ASSERT_TRUE(f->Append(RandomBytes(12 << 20, 1)).ok());  // multipart already started on S3
  EXPECT_FALSE(*storage_->Exists("pending"));
  f->Abandon();
  EXPECT_FALSE(*storage_->Exists("pending"));
  {
    auto g = std::move(storage_->NewWritableFile("dropped")).value();
    ASSERT_TRUE(g->Append("x").ok());
  }  // destroyed unclosed
  EXPECT_FALSE(*storage_->Exists("dropped"));
  EXPECT_TRUE(storage_->List("")->empty());
}

TEST_P(Conformance, OverwriteRenameDeleteAndList) {
  if (!GetParam().writable) GTEST_SKIP() << GetParam().name << " is read-only";
  Put("d/one", "1");
  Put("d/one", "uno");
  EXPECT_EQ(Get("d/one"), "uno");
  Put("d/two", "2");
  Put("d/sub/three", "3");
  Put("other", "x");
  EXPECT_EQ(*storage_->List("d"), (std::vector<std::string>{"d/one", "d/sub/three", "d/two"}));
  ASSERT_TRUE(storage_->Rename("d/two", "e/deux").ok());
  EXPECT_FALSE(*storage_->Exists("d/two"));
  EXPECT_EQ(Get("e/deux"), "2");
  ASSERT_TRUE(storage_->Delete("d/one").ok());
  ASSERT_TRUE(storage_->Delete("d/one").ok());  // idempotent
  EXPECT_FALSE(*storage_->Exists("d/one"));
  EXPECT_TRUE(*storage_->Exists("d"));  // a "directory" with something under it
  for (int i = 0; i < 20; ++i) Put(absl::StrCat("many/f", i), "v");
  auto listed = storage_->List("many");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 20u);
  ASSERT_TRUE(storage_->DeleteMany(*listed).ok());
  EXPECT_TRUE(storage_->List("many")->empty());
  ASSERT_TRUE(storage_->RemoveDirIfEmpty("many").ok());
}

TEST_P(Conformance, RenameManyMovesEachFileAndStopsAtTheFirstFailure) {
  if (!GetParam().writable) GTEST_SKIP() << GetParam().name << " is read-only";
  for (int i = 0; i < 5; ++i) Put(absl::StrCat("staged/f", i), absl::StrCat("v", i));
  std::vector<std::pair<std::string, std::string>> moves;
  for (int i = 0; i < 5; ++i) moves.emplace_back(absl::StrCat("staged/f", i), absl::StrCat("final/g", i));
  ASSERT_TRUE(storage_->RenameMany(moves).ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(*storage_->Exists(absl::StrCat("staged/f", i)));
    EXPECT_EQ(Get(absl::StrCat("final/g", i)), absl::StrCat("v", i));
  }
  EXPECT_TRUE(storage_->RenameMany({}).ok());
  // The second source is missing: the first is moved, the third is not.
  Put("a1", "1");
  Put("a3", "3");
  EXPECT_FALSE(storage_->RenameMany({{"a1", "b1"}, {"a2", "b2"}, {"a3", "b3"}}).ok());
  EXPECT_EQ(Get("b1"), "1");
  EXPECT_TRUE(*storage_->Exists("a3"));
  EXPECT_FALSE(*storage_->Exists("b3"));
}

TEST_P(Conformance, ABundleWrittenAndReadThroughTheBackend) {
  const std::string big = RandomBytes(4 * 3000000, 9);
  if (GetParam().writable) {
    auto w = std::move(BundleWriter::Create(storage_.get(), "ckpt/variables")).value();
    ASSERT_TRUE(w->Add("big", DataType::kFloat, {3000000}, big).ok());
    ASSERT_TRUE(w->AddString("s", {2}, {"a", "bc"}).ok());
    ASSERT_TRUE(w->Finish().ok());
  } else {
    auto local = NewMemoryStorage();
    auto w = std::move(BundleWriter::Create(local.get(), "ckpt/variables")).value();
    ASSERT_TRUE(w->Add("big", DataType::kFloat, {3000000}, big).ok());
    ASSERT_TRUE(w->AddString("s", {2}, {"a", "bc"}).ok());
    ASSERT_TRUE(w->Finish().ok());
    for (const char* f : {"ckpt/variables.index", "ckpt/variables.data-00000-of-00001"}) {
      auto in = std::move(local->NewReadableFile(f)).value();
      std::string bytes(in->Size(), '\0');
      ASSERT_TRUE(in->ReadAt(0, bytes.size(), bytes.data()).ok());
      Put(f, bytes);
    }
  }
  auto r = BundleReader::Open(storage_.get(), "ckpt/variables");
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = (*r)->ReadTensor("big");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->data.view() == big);
  EXPECT_EQ((*r)->ReadTensor("s")->strings, (std::vector<std::string>{"a", "bc"}));
}

TEST_P(Conformance, ReadOnlyBackendsRefuseWrites) {
  if (GetParam().writable) GTEST_SKIP() << GetParam().name << " is writable";
  EXPECT_EQ(storage_->NewWritableFile("x").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(storage_->Delete("x").code(), absl::StatusCode::kPermissionDenied);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<Backend>& info) { return info.param.name; });

}  // namespace
}  // namespace cairn
