// S3 multipart uploads against an in-process fake store (HttpTransport):
// what a lost answer must not leave behind.
#include <map>
#include <mutex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/backends/http_transport.h"
#include "storage/backends/remote_storage.h"
#include "storage/storage.h"

namespace cairn {
namespace {

using internal::HttpRequest;
using internal::HttpResponse;

// Just enough of S3's multipart API. The first CreateMultipartUpload
// opens an upload whose answer is lost: returned as a reset (the client
// retries), or — as libcurl does by itself when a reused connection closes
// before the answer — silently resent, the client seeing only the second.
class FakeS3 : public internal::HttpTransport {
 public:
  explicit FakeS3(bool silent_resend) : silent_resend_(silent_resend) {}

  absl::StatusOr<HttpResponse> Send(const HttpRequest& req) override {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t q = req.url.find('?');
    const std::string path = req.url.substr(0, q);
    const std::string query = q == std::string::npos ? "" : req.url.substr(q + 1);
    const std::string key = path.substr(path.find("/bucket/") + 8);
    HttpResponse r;
    r.status = 200;
    if (req.method == "POST" && absl::StrContains(query, "uploads")) {
      std::string id = absl::StrCat("upload-", next_++);
      open_[id] = key;
      if (next_ == 1 && !silent_resend_) return absl::UnavailableError("connection reset (the store did start it)");
      if (next_ == 1) {
        id = absl::StrCat("upload-", next_++);
        open_[id] = key;
      }
      r.body = absl::StrCat("<InitiateMultipartUploadResult><UploadId>", id, "</UploadId></InitiateMultipartUploadResult>");
    } else if (req.method == "PUT" && absl::StrContains(query, "partNumber=")) {
      r.headers["etag"] = "\"etag\"";
    } else if (req.method == "POST" && absl::StrContains(query, "uploadId=")) {
      open_.erase(query.substr(query.find("uploadId=") + 9));
      r.body = "<CompleteMultipartUploadResult></CompleteMultipartUploadResult>";
    } else if (req.method == "DELETE" && absl::StrContains(query, "uploadId=")) {
      open_.erase(query.substr(query.find("uploadId=") + 9));
      r.status = 204;
    } else if (req.method == "GET" && absl::StrContains(query, "uploads")) {
      r.body = "<ListMultipartUploadsResult>";
      for (const auto& [id, k] : open_) {
        absl::StrAppend(&r.body, "<Upload><Key>", k, "</Key><UploadId>", id, "</UploadId></Upload>");
      }
      absl::StrAppend(&r.body, "</ListMultipartUploadsResult>");
    }
    return r;
  }
  std::map<std::string, std::string> open() {
    std::lock_guard<std::mutex> lock(mu_);
    return open_;
  }

 private:
  const bool silent_resend_;
  std::mutex mu_;
  int next_ = 0;
  std::map<std::string, std::string> open_;  // upload id -> key
};

// Writes 12 MiB (three parts) through S3 storage on `fake`; every upload
// left open in the fake afterwards is an orphan.
void WriteMultipart(const std::shared_ptr<FakeS3>& fake) {
  StorageOptions options;
  options.s3.endpoint = "http://s3.test";
  options.s3.access_key = "key";
  options.s3.secret_key = "secret";
  options.s3.part_size = 5 << 20;
  options.s3.retry_total_ms = 10000;
  auto storage = internal::NewS3StorageForUri("s3://bucket/root", options, fake);
  ASSERT_TRUE(storage.ok()) << storage.status();
  auto file = (*storage)->NewWritableFile("job/part.data-00000-of-00001");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append(std::string(12 << 20, 'x')).ok());
  ASSERT_TRUE((*file)->Close().ok());
}

// The upload whose start was answered is completed; the one whose answer
// was lost is aborted, not left open (and billed) for good.
TEST(S3Upload, ARetriedStartLeavesNoOrphanedUpload) {
  auto fake = std::make_shared<FakeS3>(/*silent_resend=*/false);
  WriteMultipart(fake);
  EXPECT_TRUE(fake->open().empty()) << fake->open().begin()->first << " is still open";
}

TEST(S3Upload, ATransportsSilentResendLeavesNoOrphanedUpload) {
  auto fake = std::make_shared<FakeS3>(/*silent_resend=*/true);
  WriteMultipart(fake);
  EXPECT_TRUE(fake->open().empty()) << fake->open().begin()->first << " is still open";
}

}  // namespace
}  // namespace cairn
