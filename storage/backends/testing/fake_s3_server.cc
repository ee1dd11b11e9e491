#include "storage/backends/testing/fake_s3_server.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "storage/backends/s3_xml.h"
#include "storage/backends/sigv4.h"
#include "storage/backends/testing/fake_http_server.h"
#include "storage/backends/testing/sigv4_check.h"

namespace cairn {
namespace testing {

using internal::HttpRequest;
using internal::HttpResponse;
using internal::XmlEscape;

namespace {

constexpr char kXmlns[] = "http://s3.amazonaws.com/doc/2006-03-01/";
constexpr char kLastModified[] = "2026-01-01T00:00:00.000Z";
constexpr size_t kMaxKeys = 1000;  // S3's limit per list page and per batch delete
constexpr char kNoSuchUpload[] =
    "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or "
    "completed.";

HttpResponse XmlAnswer(absl::string_view root, absl::string_view content) {
  HttpResponse r;
  r.status = 200;
  r.headers["content-type"] = "application/xml";
  r.body = absl::StrCat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<", root, " xmlns=\"", kXmlns, "\">",
                        content, "</", root, ">");
  return r;
}

std::string Tagged(absl::string_view tag, absl::string_view text) {
  return absl::StrCat("<", tag, ">", XmlEscape(text), "</", tag, ">");
}

// Opaque to clients, as S3's (there the MD5 of a simple object).
std::string ETagOf(absl::string_view data) {
  return absl::StrCat("\"", internal::Sha256Hex(data).substr(0, 32), "\"");
}

std::string Unquoted(absl::string_view etag) {
  return std::string(absl::StripSuffix(absl::StripPrefix(etag, "\""), "\""));
}

// The operation a request asks for and the query parameters it may carry;
// "" if the fake does not serve it.
struct Operation {
  std::string name;
  std::vector<std::string> params;
};
Operation Classify(const HttpRequest& req, const FakeUrl& url, bool has_key) {
  const std::string& m = req.method;
  const bool copy = !HeaderValue(req, "x-amz-copy-source").empty();
  if (!has_key) {
    if (m == "GET" && url.Get("list-type") == "2") {
      return {"ListObjectsV2", {"list-type", "prefix", "max-keys", "continuation-token", "start-after"}};
    }
    if (m == "GET" && url.Has("uploads")) return {"ListMultipartUploads", {"uploads", "prefix"}};
    if (m == "POST" && url.Has("delete")) return {"DeleteObjects", {"delete"}};
    return {};
  }
  if (m == "HEAD" || m == "GET") return {m == "HEAD" ? "HeadObject" : "GetObject", {}};
  if (m == "PUT" && url.Has("uploadId")) return {copy ? "" : "UploadPart", {"partNumber", "uploadId"}};
  if (m == "PUT") return {copy ? "CopyObject" : "PutObject", {}};
  if (m == "POST" && url.Has("uploads")) return {"CreateMultipartUpload", {"uploads"}};
  if (m == "POST" && url.Has("uploadId")) return {"CompleteMultipartUpload", {"uploadId"}};
  if (m == "DELETE") return {url.Has("uploadId") ? "AbortMultipartUpload" : "DeleteObject", {"uploadId"}};
  return {};
}

}  // namespace

HttpResponse S3ErrorAnswer(long status, absl::string_view code, absl::string_view message,
                           absl::string_view resource) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = "application/xml";
  r.body = absl::StrCat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>", code, "</Code><Message>",
                        XmlEscape(message), "</Message><Resource>", XmlEscape(resource),
                        "</Resource><RequestId>fake</RequestId></Error>");
  return r;
}

struct FakeS3Server::Target {
  FakeUrl url;
  std::string bucket;
  std::string key;
  std::string op;
};

FakeS3Server::FakeS3Server(FakeS3Options options) : options_(std::move(options)) {}

S3Options FakeS3Server::ClientOptions() const {
  S3Options s3;
  s3.endpoint = absl::StrCat("http://", options_.host);
  s3.region = options_.region;
  s3.access_key = options_.access_key;
  s3.secret_key = options_.secret_key;
  return s3;
}

void FakeS3Server::CreateBucket(const std::string& bucket) {
  std::lock_guard<std::mutex> lock(mu_);
  buckets_[bucket];
}

std::vector<std::string> FakeS3Server::Keys(const std::string& bucket) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  auto b = buckets_.find(bucket);
  if (b != buckets_.end()) {
    for (const auto& [key, object] : b->second) out.push_back(key);
  }
  return out;
}

std::vector<std::string> FakeS3Server::OpenUploads(const std::string& bucket) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [id, u] : uploads_) {
    if (u.bucket == bucket) out.push_back(absl::StrCat(u.key, " upload ", id));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, int64_t> FakeS3Server::RequestCounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

absl::StatusOr<HttpResponse> FakeS3Server::Send(const HttpRequest& request) {
  auto url = ParseFakeUrl(request.url);
  if (!url.ok()) return Deliver(request, S3ErrorAnswer(400, "InvalidURI", url.status().message(), request.url));
  Target t;
  t.url = *std::move(url);
  absl::string_view path = absl::StripPrefix(t.url.path, "/");
  const size_t slash = path.find('/');
  t.bucket = std::string(path.substr(0, slash));
  if (slash != absl::string_view::npos) t.key = std::string(path.substr(slash + 1));
  const Operation op = Classify(request, t.url, !t.key.empty());
  t.op = op.name;
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[t.op.empty() ? "(not implemented)" : t.op];
  if (t.op.empty() || t.bucket.empty()) {
    return Deliver(request, S3ErrorAnswer(501, "NotImplemented",
                                          absl::StrCat("the fake S3 does not implement ", request.method, " ",
                                                       request.url), "/"));
  }
  for (const auto& [name, value] : t.url.query) {
    if (std::find(op.params.begin(), op.params.end(), name) == op.params.end()) {
      return Deliver(request, S3ErrorAnswer(501, "NotImplemented",
                                            absl::StrCat("the fake S3 does not implement parameter ", name,
                                                         " of ", t.op), "/"));
    }
  }
  if (auto refused = CheckSigV4(request, t.url, options_.access_key, options_.secret_key, options_.region)) {
    return Deliver(request, S3ErrorAnswer(refused->status, refused->code, refused->message, t.url.raw_path));
  }
  const std::string md5 = HeaderValue(request, "Content-MD5");
  if (!md5.empty() && md5 != internal::Md5Base64(request.body)) {
    return Deliver(request, S3ErrorAnswer(400, "BadDigest", "The Content-MD5 you specified did not match what we "
                                                            "received.", t.url.raw_path));
  }
  if (buckets_.count(t.bucket) == 0) {
    return Deliver(request, S3ErrorAnswer(404, "NoSuchBucket", "The specified bucket does not exist", t.bucket));
  }
  return Deliver(request, Handle(request, t));
}

HttpResponse FakeS3Server::Handle(const HttpRequest& req, const Target& t) {
  std::map<std::string, Object>& objects = buckets_[t.bucket];
  const std::string resource = absl::StrCat("/", t.bucket, "/", t.key);
  if (t.op == "ListObjectsV2") return ListObjects(t);
  if (t.op == "ListMultipartUploads") return ListUploads(t);
  if (t.op == "DeleteObjects") return DeleteObjects(req, t);
  if (t.op == "CopyObject") return CopyObject(req, t);
  if (t.op == "CompleteMultipartUpload") return CompleteUpload(req, t);
  if (t.op == "HeadObject" || t.op == "GetObject") {
    auto it = objects.find(t.key);
    if (it == objects.end()) return S3ErrorAnswer(404, "NoSuchKey", "The specified key does not exist.", resource);
    HttpResponse r = AnswerBytes(req, *it->second.data);
    if (r.status == 416) return S3ErrorAnswer(416, "InvalidRange", "The requested range is not satisfiable", resource);
    r.headers["etag"] = it->second.etag;
    return r;
  }
  HttpResponse ok;
  ok.status = 200;
  if (t.op == "PutObject") {
    Object& o = objects[t.key];
    o = {std::make_shared<const std::string>(req.body), ETagOf(req.body)};
    ok.headers["etag"] = o.etag;
    return ok;
  }
  if (t.op == "DeleteObject") {
    objects.erase(t.key);
    ok.status = 204;
    return ok;
  }
  if (t.op == "CreateMultipartUpload") {
    const int64_t n = next_id_++;
    // Shaped like real ids, with characters a URL must escape.
    const std::string id = absl::StrCat("2~fake+", n, "/", n * 7919, "=");
    uploads_[id] = Upload{t.bucket, t.key, n, {}};
    return XmlAnswer("InitiateMultipartUploadResult",
                     absl::StrCat(Tagged("Bucket", t.bucket), Tagged("Key", t.key), Tagged("UploadId", id)));
  }
  // UploadPart and AbortMultipartUpload: an upload of this key.
  auto upload = uploads_.find(t.url.Get("uploadId"));
  if (upload == uploads_.end() || upload->second.bucket != t.bucket || upload->second.key != t.key) {
    return S3ErrorAnswer(404, "NoSuchUpload", kNoSuchUpload, resource);
  }
  if (t.op == "AbortMultipartUpload") {
    uploads_.erase(upload);
    ok.status = 204;
    return ok;
  }
  int number = 0;
  if (!absl::SimpleAtoi(t.url.Get("partNumber"), &number) || number < 1 || number > 10000) {
    return S3ErrorAnswer(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                         resource);
  }
  Object& part = upload->second.parts[number];
  part = {std::make_shared<const std::string>(req.body), ETagOf(req.body)};
  ok.headers["etag"] = part.etag;
  return ok;
}

HttpResponse FakeS3Server::ListObjects(const Target& t) {
  const std::map<std::string, Object>& objects = buckets_[t.bucket];
  const std::string prefix = t.url.Get("prefix");
  size_t max_keys = kMaxKeys;
  if (t.url.Has("max-keys") && !absl::SimpleAtoi(t.url.Get("max-keys"), &max_keys)) {
    return S3ErrorAnswer(400, "InvalidArgument", "Provided max-keys not an integer or within integer range", "/");
  }
  max_keys = std::min(max_keys, kMaxKeys);
  std::string after = t.url.Get("start-after");
  if (t.url.Has("continuation-token")) {
    auto token = list_tokens_.find(t.url.Get("continuation-token"));
    if (token == list_tokens_.end()) {
      return S3ErrorAnswer(400, "InvalidArgument", "The continuation token provided is incorrect", "/");
    }
    after = token->second;
  }
  auto it = after < prefix ? objects.lower_bound(prefix) : objects.upper_bound(after);
  std::string contents;
  size_t count = 0;
  std::string last;
  for (; it != objects.end() && absl::StartsWith(it->first, prefix) && count < max_keys; ++it, ++count) {
    absl::StrAppend(&contents, "<Contents>", Tagged("Key", it->first), Tagged("LastModified", kLastModified),
                    Tagged("ETag", it->second.etag), Tagged("Size", absl::StrCat(it->second.data->size())),
                    Tagged("StorageClass", "STANDARD"), "</Contents>");
    last = it->first;
  }
  const bool truncated = it != objects.end() && absl::StartsWith(it->first, prefix);
  std::string head = absl::StrCat(Tagged("Name", t.bucket), Tagged("Prefix", prefix),
                                  Tagged("KeyCount", absl::StrCat(count)), Tagged("MaxKeys", absl::StrCat(max_keys)),
                                  Tagged("IsTruncated", truncated ? "true" : "false"));
  if (t.url.Has("continuation-token")) {
    absl::StrAppend(&head, Tagged("ContinuationToken", t.url.Get("continuation-token")));
  }
  if (truncated) {
    // Opaque, shaped like S3's (base64, with '/', '+' and '=').
    const std::string token = absl::StrCat("1fake/", next_id_++, "+token=");
    list_tokens_[token] = last;
    absl::StrAppend(&head, Tagged("NextContinuationToken", token));
  }
  return XmlAnswer("ListBucketResult", head + contents);
}

HttpResponse FakeS3Server::ListUploads(const Target& t) {
  const std::string prefix = t.url.Get("prefix");
  std::vector<std::pair<std::pair<std::string, int64_t>, std::string>> listed;  // (key, sequence), id
  for (const auto& [id, u] : uploads_) {
    if (u.bucket == t.bucket && absl::StartsWith(u.key, prefix)) listed.push_back({{u.key, u.sequence}, id});
  }
  std::sort(listed.begin(), listed.end());
  const bool truncated = listed.size() > kMaxKeys;
  if (truncated) listed.resize(kMaxKeys);
  std::string content = absl::StrCat(Tagged("Bucket", t.bucket), Tagged("Prefix", prefix),
                                     Tagged("MaxUploads", absl::StrCat(kMaxKeys)),
                                     Tagged("IsTruncated", truncated ? "true" : "false"));
  for (const auto& [order, id] : listed) {
    absl::StrAppend(&content, "<Upload>", Tagged("Key", order.first), Tagged("UploadId", id),
                    Tagged("StorageClass", "STANDARD"), Tagged("Initiated", kLastModified), "</Upload>");
  }
  return XmlAnswer("ListMultipartUploadsResult", content);
}

HttpResponse FakeS3Server::DeleteObjects(const HttpRequest& req, const Target& t) {
  if (HeaderValue(req, "Content-MD5").empty()) {
    return S3ErrorAnswer(400, "InvalidRequest", "Missing required header for this request: Content-MD5", "/");
  }
  auto doc = internal::ParseXml(req.body);
  std::vector<std::string> keys;
  if (doc.ok() && doc->name == "Delete") {
    for (const internal::XmlElement& o : doc->children) {
      if (o.name == "Object") keys.push_back(o.ChildText("Key"));
    }
  }
  if (!doc.ok() || doc->name != "Delete" || keys.empty() || keys.size() > kMaxKeys) {
    return S3ErrorAnswer(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against "
                                              "our published schema", "/");
  }
  const bool quiet = doc->ChildText("Quiet") == "true";
  std::string content;
  for (const std::string& key : keys) {
    buckets_[t.bucket].erase(key);
    if (!quiet) absl::StrAppend(&content, "<Deleted>", Tagged("Key", key), "</Deleted>");
  }
  return XmlAnswer("DeleteResult", content);
}

HttpResponse FakeS3Server::CopyObject(const HttpRequest& req, const Target& t) {
  auto source = PercentDecode(HeaderValue(req, "x-amz-copy-source"));
  const std::string resource = absl::StrCat("/", t.bucket, "/", t.key);
  absl::string_view src = source.ok() ? absl::StripPrefix(*source, "/") : "";
  const size_t slash = src.find('/');
  if (!source.ok() || slash == absl::string_view::npos || absl::StrContains(src, '?')) {
    return S3ErrorAnswer(400, "InvalidArgument", "Copy Source must mention the source bucket and key: "
                                                 "sourcebucket/sourcekey", resource);
  }
  const std::string src_bucket(src.substr(0, slash)), src_key(src.substr(slash + 1));
  if (src_bucket == t.bucket && src_key == t.key) {
    return S3ErrorAnswer(400, "InvalidRequest", "This copy request is illegal because it is trying to copy an object "
                                                "to itself without changing the object's metadata", resource);
  }
  auto b = buckets_.find(src_bucket);
  if (b == buckets_.end()) return S3ErrorAnswer(404, "NoSuchBucket", "The specified bucket does not exist", src_bucket);
  auto o = b->second.find(src_key);
  if (o == b->second.end()) return S3ErrorAnswer(404, "NoSuchKey", "The specified key does not exist.", src);
  const Object copy = o->second;
  buckets_[t.bucket][t.key] = copy;
  return XmlAnswer("CopyObjectResult", Tagged("LastModified", kLastModified) + Tagged("ETag", copy.etag));
}

HttpResponse FakeS3Server::CompleteUpload(const HttpRequest& req, const Target& t) {
  const std::string resource = absl::StrCat("/", t.bucket, "/", t.key);
  auto upload = uploads_.find(t.url.Get("uploadId"));
  if (upload == uploads_.end() || upload->second.bucket != t.bucket || upload->second.key != t.key) {
    return S3ErrorAnswer(404, "NoSuchUpload", kNoSuchUpload, resource);
  }
  auto doc = internal::ParseXml(req.body);
  std::vector<std::pair<int, std::string>> listed;  // part number, ETag
  bool readable = doc.ok() && doc->name == "CompleteMultipartUpload";
  for (size_t i = 0; readable && i < doc->children.size(); ++i) {
    const internal::XmlElement& p = doc->children[i];
    int number = 0;
    readable = p.name == "Part" && absl::SimpleAtoi(p.ChildText("PartNumber"), &number);
    listed.emplace_back(number, p.ChildText("ETag"));
  }
  if (!readable || listed.empty()) {
    return S3ErrorAnswer(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against "
                                              "our published schema", resource);
  }
  std::string data, etags;
  for (size_t i = 0; i < listed.size(); ++i) {
    if (i > 0 && listed[i].first <= listed[i - 1].first) {
      return S3ErrorAnswer(400, "InvalidPartOrder", "The list of parts was not in ascending order.", resource);
    }
    auto part = upload->second.parts.find(listed[i].first);
    if (part == upload->second.parts.end() || Unquoted(part->second.etag) != Unquoted(listed[i].second)) {
      return S3ErrorAnswer(400, "InvalidPart", absl::StrCat("One or more of the specified parts could not be found: ",
                                                            listed[i].first), resource);
    }
    if (i + 1 < listed.size() && part->second.data->size() < options_.min_part_size) {
      return S3ErrorAnswer(400, "EntityTooSmall",
                           "Your proposed upload is smaller than the minimum allowed object size.", resource);
    }
    data += *part->second.data;
    etags += part->second.etag;
  }
  const std::string etag = absl::StrCat("\"", Unquoted(ETagOf(etags)), "-", listed.size(), "\"");
  buckets_[t.bucket][t.key] = {std::make_shared<const std::string>(std::move(data)), etag};
  uploads_.erase(upload);
  return XmlAnswer("CompleteMultipartUploadResult",
                   absl::StrCat(Tagged("Location", absl::StrCat("http://", options_.host, resource)),
                                Tagged("Bucket", t.bucket), Tagged("Key", t.key), Tagged("ETag", etag)));
}

}  // namespace testing
}  // namespace cairn
