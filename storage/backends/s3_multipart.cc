// S3 multipart uploads, and the writable file built on them: nothing is
// visible under the key before CompleteMultipartUpload succeeds, and an
// abandoned or failed file aborts its upload.
#include <algorithm>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/backends/s3_client.h"
#include "storage/backends/s3_xml.h"
#include "storage/backends/sigv4.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

absl::StatusOr<std::string> S3Client::CreateUpload(const std::string& key) const {
  Call c;
  c.method = "POST";
  c.key = key;
  c.query = {{"uploads", ""}};
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status / 100 != 2) return Error(r, absl::StrCat("start multipart upload of ", Describe(key)));
  auto id = ParseInitiateMultipartUpload(r.body);
  if (!id.ok()) {
    return absl::InternalError(absl::StrCat("start multipart upload of ", Describe(key), ": ", id.status().message()));
  }
  if (id->empty()) return absl::InternalError(absl::StrCat("no UploadId for ", Describe(key)));
  // Starting an upload is not idempotent: an earlier attempt whose answer
  // was lost may have opened one the store keeps (and bills) for good —
  // our retry, or libcurl's own silent resend on a reused connection that
  // closed, which we cannot see. Keys are written by one file at a time,
  // so every other open upload of this key is such an orphan: one listing
  // per multipart file finds them.
  AbortOtherUploads(key, *id);
  return *id;
}

// Aborts every open multipart upload of exactly `key` but `keep`. Best
// effort: a failure leaves what the store's lifecycle rules would clean.
void S3Client::AbortOtherUploads(const std::string& key, const std::string& keep) const {
  Call c;
  c.method = "GET";
  c.query = {{"prefix", key}, {"uploads", ""}};
  auto r = Send(c);
  if (!r.ok() || r->status / 100 != 2) return;
  auto uploads = ParseListMultipartUploads(r->body);
  if (!uploads.ok()) return;
  for (const MultipartUploadEntry& u : *uploads) {
    if (u.key == key && !u.upload_id.empty() && u.upload_id != keep) AbortUpload(key, u.upload_id);
  }
}

absl::StatusOr<std::string> S3Client::UploadPart(const std::string& key, const std::string& upload_id,
                                                 int number, absl::string_view data) const {
  Call c;
  c.method = "PUT";
  c.key = key;
  c.query = {{"partNumber", absl::StrCat(number)}, {"uploadId", upload_id}};
  c.headers = {{"Content-MD5", Md5Base64(data)}};
  c.body = data;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status / 100 != 2) return Error(r, absl::StrCat("upload part ", number, " of ", Describe(key)));
  return r.headers["etag"];
}

absl::Status S3Client::CompleteUpload(const std::string& key, const std::string& upload_id,
                                      const std::map<int, std::string>& etags, uint64_t size) const {
  const std::string xml = CompleteMultipartUploadXml(etags);
  Call c;
  c.method = "POST";
  c.key = key;
  c.query = {{"uploadId", upload_id}};
  c.headers = {{"Content-MD5", Md5Base64(xml)}, {"Content-Type", "application/xml"}};
  c.body = xml;
  ASSIGN_OR_RETURN(HttpResponse r, Send(c));
  if (r.status == 404 && ParseErrorBody(r.body).code == "NoSuchUpload") {
    // A retried Complete whose first attempt succeeded but lost its reply.
    auto existing = Head(key);
    if (existing.ok() && *existing == size) return absl::OkStatus();
  }
  if (r.status / 100 != 2 || BodyReportsFailure(r.body)) {
    AbortUpload(key, upload_id);
    return Error(r, absl::StrCat("complete multipart upload of ", Describe(key)));
  }
  return absl::OkStatus();
}

void S3Client::AbortUpload(const std::string& key, const std::string& upload_id) const {
  Call c;
  c.method = "DELETE";
  c.key = key;
  c.query = {{"uploadId", upload_id}};
  Send(c).IgnoreError();
}

namespace {

constexpr size_t kMinPartSize = 5 << 20;  // S3's minimum for every part but the last

class S3WritableFile : public WritableFile {
 public:
  S3WritableFile(std::shared_ptr<const S3Client> client, std::string name, std::string key)
      : client_(std::move(client)), name_(std::move(name)), key_(std::move(key)) {}
  ~S3WritableFile() override {
    if (!done_) Abandon();
  }
  absl::Status Append(absl::string_view data) override;
  uint64_t Size() const override { return size_; }
  absl::Status Close() override;
  void Abandon() override;
  const std::string& name() const override { return name_; }

 private:
  absl::Status StartPart();  // sends buffer_ as the next part
  // Collects finished parts until at most `max_in_flight` remain; the first
  // failure among them.
  absl::Status WaitForParts(size_t max_in_flight);

  const std::shared_ptr<const S3Client> client_;
  const std::string name_;
  const std::string key_;
  std::string buffer_;
  uint64_t size_ = 0;
  bool done_ = false;
  absl::Status status_;  // sticky: the first failure
  std::string upload_id_;  // "" until the first part is sent
  int next_part_ = 1;
  std::map<int, std::string> etags_;  // part number -> ETag
  std::vector<std::future<absl::StatusOr<std::pair<int, std::string>>>> in_flight_;
};

absl::Status S3WritableFile::Append(absl::string_view data) {
  if (done_) return absl::FailedPreconditionError(absl::StrCat(name_, " is closed"));
  if (!status_.ok()) return status_;
  const size_t part = std::max(client_->options().s3.part_size, kMinPartSize);
  size_ += data.size();
  while (!data.empty()) {
    const size_t take = std::min(part - buffer_.size(), data.size());
    buffer_.append(data.data(), take);
    data.remove_prefix(take);
    if (buffer_.size() == part) {
      status_ = StartPart();
      if (!status_.ok()) return status_;
    }
  }
  return absl::OkStatus();
}

absl::Status S3WritableFile::StartPart() {
  if (upload_id_.empty()) {
    ASSIGN_OR_RETURN(upload_id_, client_->CreateUpload(key_));
  }
  RETURN_IF_ERROR(WaitForParts(static_cast<size_t>(std::max(1, client_->options().s3.upload_parallelism)) - 1));
  const int number = next_part_++;
  auto data = std::make_shared<std::string>(std::move(buffer_));
  buffer_.clear();
  std::shared_ptr<const S3Client> client = client_;
  std::string key = key_, upload_id = upload_id_;
  in_flight_.push_back(std::async(std::launch::async, [client, key, upload_id, number, data]()
                                      -> absl::StatusOr<std::pair<int, std::string>> {
    ASSIGN_OR_RETURN(std::string etag, client->UploadPart(key, upload_id, number, *data));
    return std::make_pair(number, etag);
  }));
  return absl::OkStatus();
}

absl::Status S3WritableFile::WaitForParts(size_t max_in_flight) {
  absl::Status first;
  while (in_flight_.size() > max_in_flight) {
    auto r = in_flight_.front().get();
    in_flight_.erase(in_flight_.begin());
    if (!r.ok()) {
      if (first.ok()) first = r.status();
    } else {
      etags_[r->first] = r->second;
    }
  }
  return first;
}

absl::Status S3WritableFile::Close() {
  if (done_) return absl::FailedPreconditionError(absl::StrCat(name_, " is closed"));
  if (!status_.ok()) {
    Abandon();
    return status_;
  }
  if (upload_id_.empty()) {
    done_ = true;
    return client_->Put(key_, buffer_);
  }
  absl::Status s = buffer_.empty() ? absl::OkStatus() : StartPart();
  absl::Status waited = WaitForParts(0);
  if (s.ok()) s = waited;
  if (!s.ok()) {
    Abandon();
    return s;
  }
  done_ = true;
  return client_->CompleteUpload(key_, upload_id_, etags_, size_);
}

void S3WritableFile::Abandon() {
  if (done_) return;
  done_ = true;
  WaitForParts(0).IgnoreError();
  if (!upload_id_.empty()) client_->AbortUpload(key_, upload_id_);
  buffer_.clear();
}

}  // namespace

std::unique_ptr<WritableFile> NewS3WritableFile(std::shared_ptr<const S3Client> client, std::string name,
                                                std::string key) {
  return std::make_unique<S3WritableFile>(std::move(client), std::move(name), std::move(key));
}

}  // namespace internal
}  // namespace cairn
