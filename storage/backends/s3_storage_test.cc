// The S3 backend against the in-process fake S3 (storage/backends/testing/):
// what the conformance suite does not pin down — error messages, answers a
// real store sends only when something goes wrong, pagination, keys that
// need escaping.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/backends/http_transport.h"
#include "storage/backends/remote_storage.h"
#include "storage/backends/testing/fake_s3_server.h"
#include "storage/backends/testing/faulty_transport.h"
#include "storage/storage.h"

namespace cairn {
namespace {

using internal::HttpRequest;
using internal::HttpResponse;
using internal::HttpTransport;
using testing::Fault;
using ::testing::HasSubstr;

// An answer of Intercept's; nullopt passes the request on.
using MaybeAnswer = std::optional<absl::StatusOr<HttpResponse>>;

// Answers the requests `answer` picks itself; the others go to `next`.
class Intercept : public HttpTransport {
 public:
  using Answer = std::function<MaybeAnswer(const HttpRequest&)>;
  Intercept(std::shared_ptr<HttpTransport> next, Answer answer)
      : next_(std::move(next)), answer_(std::move(answer)) {}
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    if (auto a = answer_(request)) return *std::move(a);
    return next_->Send(request);
  }

 private:
  std::shared_ptr<HttpTransport> next_;
  Answer answer_;
};

HttpResponse Answer200(std::string body) {
  HttpResponse r;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

class S3StorageTest : public ::testing::Test {
 protected:
  S3StorageTest() : s3_(std::make_shared<testing::FakeS3Server>()) {
    s3_->CreateBucket("fake-bucket");
    options_.s3 = s3_->ClientOptions();
    options_.s3.part_size = 5 << 20;
    options_.s3.retry_total_ms = 10000;
  }
  // Storage at s3://BUCKET/p through `transport` (default: the fake itself).
  std::unique_ptr<Storage> Open(std::shared_ptr<HttpTransport> transport = nullptr,
                                const std::string& bucket = "fake-bucket") {
    auto s = internal::NewS3StorageForUri(absl::StrCat("s3://", bucket, "/p"), options_,
                                          transport ? transport : s3_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  static absl::Status Write(Storage* storage, const std::string& path, const std::string& data) {
    auto f = storage->NewWritableFile(path);
    if (!f.ok()) return f.status();
    absl::Status s = (*f)->Append(data);
    return s.ok() ? (*f)->Close() : s;
  }

  std::shared_ptr<testing::FakeS3Server> s3_;
  StorageOptions options_;
};

TEST_F(S3StorageTest, AWrongSecretIsPermissionDeniedNamingTheBucket) {
  options_.s3.secret_key = "not-the-secret";
  absl::Status s = Open()->FileSize("x").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  // S3 answers HEAD without a body: the status and the bucket it names.
  EXPECT_THAT(s.message(),
              HasSubstr("HEAD s3://fake-bucket/p/x: HTTP 403 (check the credentials for bucket fake-bucket)"));
  s = Write(Open().get(), "x", "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("PUT s3://fake-bucket/p/x: HTTP 403 SignatureDoesNotMatch: The request "
                                     "signature we calculated does not match"));
}

TEST_F(S3StorageTest, AMissingBucketIsNotFoundNamingIt) {
  absl::Status s = Open(nullptr, "no-such-bucket")->List("").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("bucket no-such-bucket does not exist: list s3://no-such-bucket/p/: "
                                     "HTTP 404 NoSuchBucket: The specified bucket does not exist"));
}

TEST_F(S3StorageTest, RetriesGiveUpWithTheLastFailure) {
  options_.s3.retry_total_ms = 300;
  testing::FaultOptions faults;
  faults.choose = [](const HttpRequest&) { return Fault::kSlowDown503; };
  auto faulty = std::make_shared<testing::FaultyTransport>(s3_, faults);
  absl::Status s = Write(Open(faulty).get(), "x", "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("PUT s3://fake-bucket/p/x failed after "));
  EXPECT_THAT(s.message(), HasSubstr(" attempts: HTTP 503 SlowDown"));
  EXPECT_GT(faulty->requests(), 1);
}

// A retried Complete whose first attempt succeeded finds no upload; the
// object it made is checked instead.
TEST_F(S3StorageTest, ALostAnswerToCompleteIsNoFailure) {
  testing::FaultOptions faults;
  int completes = 0;
  faults.choose = [&completes](const HttpRequest& r) {
    const bool complete = r.method == "POST" && absl::StrContains(r.url, "?uploadId=");
    return complete && ++completes == 1 ? Fault::kDropAfter : Fault::kNone;
  };
  auto faulty = std::make_shared<testing::FaultyTransport>(s3_, faults);
  auto storage = Open(faulty);
  ASSERT_TRUE(Write(storage.get(), "big", std::string(11 << 20, 'b')).ok());
  EXPECT_EQ(faulty->injected()[Fault::kDropAfter], 1);
  EXPECT_EQ(*storage->FileSize("big"), 11u << 20);
  EXPECT_TRUE(s3_->OpenUploads("fake-bucket").empty());
}

// S3 may answer CompleteMultipartUpload "200 OK" and fail it in the body.
TEST_F(S3StorageTest, A200ThatReportsAnErrorFailsTheFileAndAbortsTheUpload) {
  auto broken = std::make_shared<Intercept>(s3_, [](const HttpRequest& r) -> MaybeAnswer {
    if (r.method != "POST" || !absl::StrContains(r.url, "?uploadId=")) return std::nullopt;
    return Answer200("<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>We encountered an "
                     "internal error. Please try again.</Message></Error>");
  });
  absl::Status s = Write(Open(broken).get(), "big", std::string(11 << 20, 'b'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("complete multipart upload of s3://fake-bucket/p/big: HTTP 200 "
                                     "InternalError: We encountered an internal error"));
  EXPECT_TRUE(s3_->Keys("fake-bucket").empty());
  EXPECT_TRUE(s3_->OpenUploads("fake-bucket").empty());
}

TEST_F(S3StorageTest, AnUnreadableListingIsAnErrorNotAShortList) {
  auto broken = std::make_shared<Intercept>(s3_, [](const HttpRequest& r) -> MaybeAnswer {
    if (!absl::StrContains(r.url, "list-type=2")) return std::nullopt;
    return Answer200("<ListBucketResult><Contents><Key>p/a</Key></Contents><Contents><Ke");
  });
  absl::Status s = Open(broken)->List("").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("list s3://fake-bucket/p/: not XML"));
}

TEST_F(S3StorageTest, BatchDeleteFailuresNameKeyCodeAndMessage) {
  auto refusing = std::make_shared<Intercept>(s3_, [](const HttpRequest& r) -> MaybeAnswer {
    if (!absl::StrContains(r.url, "?delete=")) return std::nullopt;
    return Answer200("<DeleteResult><Error><Key>p/a</Key><Code>AccessDenied</Code><Message>Access Denied</Message>"
                     "</Error><Error><Key>p/b</Key><Code>AccessDenied</Code></Error></DeleteResult>");
  });
  absl::Status s = Open(refusing)->DeleteMany({"a", "b", "c"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("batch delete in s3://fake-bucket/p: p/a: AccessDenied: Access Denied "
                                     "(and 1 more keys)"));
}

TEST_F(S3StorageTest, ListingPagesThroughContinuationTokens) {
  options_.s3.list_page_size = 7;
  auto storage = Open();
  std::vector<std::string> expected;
  for (int i = 0; i < 20; ++i) {
    expected.push_back(absl::StrCat("d/f", 100 + i));
    ASSERT_TRUE(Write(storage.get(), expected.back(), "v").ok());
  }
  EXPECT_EQ(*storage->List("d"), expected);
  EXPECT_EQ(s3_->RequestCounts()["ListObjectsV2"], 3);
}

// Spaces, '+', '&', '%', quotes, '<', non-ASCII: through the URL, the
// signature, the listing's XML and the copy source of a rename.
TEST_F(S3StorageTest, KeysThatNeedEscapingRoundTrip) {
  auto storage = Open();
  const std::string name = "dir one/a+b&c=d%20e;f'g\"h<i>~\xc3\xa9.bin";
  ASSERT_TRUE(Write(storage.get(), name, "payload").ok());
  EXPECT_EQ(*storage->List("dir one"), std::vector<std::string>{name});
  ASSERT_TRUE(storage->Rename(name, name + ".renamed").ok());
  EXPECT_EQ(*storage->List(""), std::vector<std::string>{name + ".renamed"});
  auto f = storage->NewReadableFile(name + ".renamed");
  ASSERT_TRUE(f.ok()) << f.status();
  std::string got(7, '\0');
  ASSERT_TRUE((*f)->ReadAt(0, 7, got.data()).ok());
  EXPECT_EQ(got, "payload");
  ASSERT_TRUE(storage->DeleteMany({name + ".renamed"}).ok());
  EXPECT_TRUE(s3_->Keys("fake-bucket").empty());
}

// The fake checks signatures against the request as it arrives: a request
// changed after signing is refused, as S3 would.
TEST_F(S3StorageTest, TheFakeRefusesARequestChangedAfterSigning) {
  auto altered = std::make_shared<Intercept>(s3_, [this](const HttpRequest& r) -> MaybeAnswer {
    HttpRequest changed = r;
    changed.url = absl::StrReplaceAll(r.url, {{"max-keys=1000", "max-keys=999"}});
    return s3_->Send(changed);
  });
  absl::Status s = Open(altered)->List("").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("SignatureDoesNotMatch"));
}

}  // namespace
}  // namespace cairn
