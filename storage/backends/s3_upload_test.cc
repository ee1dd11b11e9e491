// S3 multipart uploads against the in-process fake S3
// (storage/backends/testing/): what a lost answer must not leave behind.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "storage/backends/http_transport.h"
#include "storage/backends/remote_storage.h"
#include "storage/backends/testing/fake_s3_server.h"
#include "storage/backends/testing/faulty_transport.h"
#include "storage/storage.h"

namespace cairn {
namespace {

using internal::HttpRequest;
using testing::Fault;

// Writes 12 MiB (three parts) through S3 storage on a fake store whose
// first CreateMultipartUpload meets `fault`: the store opens the upload,
// the answer is lost. `open` receives the uploads left open afterwards:
// every one is an orphan.
void WriteMultipart(Fault fault, std::vector<std::string>* open) {
  auto s3 = std::make_shared<testing::FakeS3Server>();
  s3->CreateBucket("bucket");
  testing::FaultOptions faults;
  bool first = true;
  faults.choose = [&first, fault](const HttpRequest& r) {
    if (r.method != "POST" || !absl::EndsWith(r.url, "?uploads=") || !first) return Fault::kNone;
    first = false;
    return fault;
  };
  auto faulty = std::make_shared<testing::FaultyTransport>(s3, faults);
  StorageOptions options;
  options.s3 = s3->ClientOptions();
  options.s3.part_size = 5 << 20;
  options.s3.retry_total_ms = 10000;
  auto storage = internal::NewS3StorageForUri("s3://bucket/root", options, faulty);
  ASSERT_TRUE(storage.ok()) << storage.status();
  auto file = (*storage)->NewWritableFile("job/part.data-00000-of-00001");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append(std::string(12 << 20, 'x')).ok());
  absl::Status closed = (*file)->Close();
  ASSERT_TRUE(closed.ok()) << closed;
  EXPECT_EQ(faulty->injected()[fault], 1);
  EXPECT_EQ(s3->Keys("bucket"), std::vector<std::string>{"root/job/part.data-00000-of-00001"});
  *open = s3->OpenUploads("bucket");
}

// The upload whose start was answered is completed; the one whose answer
// was lost is aborted, not left open (and billed) for good.
TEST(S3Upload, ARetriedStartLeavesNoOrphanedUpload) {
  std::vector<std::string> open;
  WriteMultipart(Fault::kDropAfter, &open);  // a reset: the client retries
  EXPECT_TRUE(open.empty()) << open.front() << " is still open";
}

// libcurl resends by itself when a reused connection closes before the
// answer: the client sees only the second upload.
TEST(S3Upload, ATransportsSilentResendLeavesNoOrphanedUpload) {
  std::vector<std::string> open;
  WriteMultipart(Fault::kResend, &open);
  EXPECT_TRUE(open.empty()) << open.front() << " is still open";
}

}  // namespace
}  // namespace cairn
