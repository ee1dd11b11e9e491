// The XML of S3's REST API (2006-03-01) that the S3 backend reads and
// writes: answers are parsed with libxml2 (only s3_xml.cc includes it),
// request bodies are written by hand.
//
//   S3ErrorBody e = ParseErrorBody(response.body);   // e.code "NoSuchKey", e.message
//   ASSIGN_OR_RETURN(ListObjectsPage page, ParseListObjectsV2(response.body));
//
// Elements are matched by local name: S3 puts its answers in the namespace
// http://s3.amazonaws.com/doc/2006-03-01/, some compatible stores in none.
#ifndef CAIRN_STORAGE_BACKENDS_S3_XML_H_
#define CAIRN_STORAGE_BACKENDS_S3_XML_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

// One element of a parsed document.
struct XmlElement {
  std::string name;  // local name, namespace prefix dropped
  std::string text;  // its own text and CDATA (entities decoded), not its children's
  std::vector<XmlElement> children;  // child elements, in document order

  // The first child named `child`, or nullptr.
  const XmlElement* Child(absl::string_view child) const;
  // The text of the first child named `child`; "" if there is none.
  std::string ChildText(absl::string_view child) const;
};

// Parses a whole document; leading whitespace is allowed (S3 may send spaces
// to keep a long CompleteMultipartUpload alive). InvalidArgument with
// libxml2's complaint if `xml` is not well-formed. No network access, no
// external entities.
absl::StatusOr<XmlElement> ParseXml(absl::string_view xml);

// The <Error> document S3 answers a failed request with. Both fields are
// empty if `body` is not one (a HEAD has no body, a proxy may answer HTML).
struct S3ErrorBody {
  std::string code;     // e.g. "NoSuchBucket", "SlowDown"
  std::string message;  // human-readable
};
S3ErrorBody ParseErrorBody(absl::string_view body);

// True if the body of a 2xx answer says the request failed after all: an
// <Error> document or text that is not XML (an answer cut short). S3 may
// answer CompleteMultipartUpload and CopyObject with "200 OK" and fail them
// later. An empty body is no failure.
bool BodyReportsFailure(absl::string_view body);

// The answers the backend reads. Each is InvalidArgument if the body is not
// well-formed or its root element is not the expected one.

// ListObjectsV2 (GET /BUCKET?list-type=2): one page.
struct ListObjectsPage {
  std::vector<std::string> keys;  // in the answer's order
  bool truncated = false;         // IsTruncated: more pages follow
  std::string next_token;         // NextContinuationToken
};
absl::StatusOr<ListObjectsPage> ParseListObjectsV2(absl::string_view body);

// CreateMultipartUpload (POST /BUCKET/KEY?uploads): the UploadId ("" if absent).
absl::StatusOr<std::string> ParseInitiateMultipartUpload(absl::string_view body);

// ListMultipartUploads (GET /BUCKET?uploads): the open uploads listed.
struct MultipartUploadEntry {
  std::string key;
  std::string upload_id;
};
absl::StatusOr<std::vector<MultipartUploadEntry>> ParseListMultipartUploads(absl::string_view body);

// DeleteObjects (POST /BUCKET?delete): the keys that were not deleted. An
// empty body (a quiet answer with nothing to report) lists none.
struct DeleteError {
  std::string key;
  std::string code;
  std::string message;
};
absl::StatusOr<std::vector<DeleteError>> ParseDeleteResult(absl::string_view body);

// UploadPartCopy (PUT /BUCKET/KEY?partNumber=N&uploadId=ID with
// x-amz-copy-source): the new part's ETag ("" if absent).
absl::StatusOr<std::string> ParseCopyPartResult(absl::string_view body);

// Request bodies.

// `s` with the five XML special characters escaped.
std::string XmlEscape(absl::string_view s);
// DeleteObjects in quiet mode (only failures are listed in the answer).
// REQUIRES: at most 1000 keys (S3's limit per request).
std::string DeleteObjectsXml(const std::vector<std::string>& keys);
// CompleteMultipartUpload of the parts numbered as the keys of `etags`.
std::string CompleteMultipartUploadXml(const std::map<int, std::string>& etags);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_S3_XML_H_
