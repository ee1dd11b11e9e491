#include "storage/backends/s3_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <climits>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {
namespace {

// libxml2 wants one xmlInitParser() before threads parse concurrently.
void InitLibXml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

struct FreeDoc {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};
struct FreeParserCtxt {
  void operator()(xmlParserCtxt* ctxt) const { xmlFreeParserCtxt(ctxt); }
};

XmlElement Convert(const xmlNode* node) {
  XmlElement out;
  out.name = reinterpret_cast<const char*>(node->name);
  for (const xmlNode* c = node->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) {
      out.children.push_back(Convert(c));
    } else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
      out.text += reinterpret_cast<const char*>(c->content);
    }
  }
  return out;
}

// The parsed document, whose root must be named `root`.
absl::StatusOr<XmlElement> ParseRoot(absl::string_view body, absl::string_view root) {
  ASSIGN_OR_RETURN(XmlElement doc, ParseXml(body));
  if (doc.name == "Error") {
    return absl::InvalidArgumentError(absl::StrCat("expected a <", root, "> document, got an <Error>: ",
                                                   doc.ChildText("Code"), ": ", doc.ChildText("Message")));
  }
  if (doc.name != root) {
    return absl::InvalidArgumentError(absl::StrCat("expected a <", root, "> document, got <", doc.name, ">"));
  }
  return doc;
}

}  // namespace

const XmlElement* XmlElement::Child(absl::string_view child) const {
  for (const XmlElement& c : children) {
    if (c.name == child) return &c;
  }
  return nullptr;
}

std::string XmlElement::ChildText(absl::string_view child) const {
  const XmlElement* c = Child(child);
  return c ? c->text : "";
}

absl::StatusOr<XmlElement> ParseXml(absl::string_view xml) {
  xml = absl::StripLeadingAsciiWhitespace(xml);
  if (xml.empty()) return absl::InvalidArgumentError("not XML: empty");
  if (xml.size() > INT_MAX) return absl::InvalidArgumentError("not XML: over 2 GiB");
  InitLibXml();
  std::unique_ptr<xmlParserCtxt, FreeParserCtxt> ctxt(xmlNewParserCtxt());
  if (!ctxt) return absl::ResourceExhaustedError("libxml2 could not allocate a parser");
  // NONET: never fetch a DTD; entities other than the predefined five stay
  // unexpanded (no XML_PARSE_NOENT); errors are returned, not printed.
  std::unique_ptr<xmlDoc, FreeDoc> doc(
      xmlCtxtReadMemory(ctxt.get(), xml.data(), static_cast<int>(xml.size()), nullptr, nullptr,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  const xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (root == nullptr) {
    const xmlError* e = xmlCtxtGetLastError(ctxt.get());
    std::string why = e && e->message ? std::string(absl::StripTrailingAsciiWhitespace(e->message))
                                      : "no root element";
    if (e && e->line > 0) why = absl::StrCat("line ", e->line, ": ", why);
    return absl::InvalidArgumentError(absl::StrCat("not XML: ", why));
  }
  return Convert(root);
}

S3ErrorBody ParseErrorBody(absl::string_view body) {
  auto doc = ParseXml(body);
  if (!doc.ok() || doc->name != "Error") return {};
  return {doc->ChildText("Code"), doc->ChildText("Message")};
}

bool BodyReportsFailure(absl::string_view body) {
  if (absl::StripAsciiWhitespace(body).empty()) return false;
  auto doc = ParseXml(body);
  return !doc.ok() || doc->name == "Error";
}

absl::StatusOr<ListObjectsPage> ParseListObjectsV2(absl::string_view body) {
  ASSIGN_OR_RETURN(XmlElement doc, ParseRoot(body, "ListBucketResult"));
  ListObjectsPage page;
  for (const XmlElement& c : doc.children) {
    if (c.name == "Contents") page.keys.push_back(c.ChildText("Key"));
  }
  page.truncated = doc.ChildText("IsTruncated") == "true";
  page.next_token = doc.ChildText("NextContinuationToken");
  return page;
}

absl::StatusOr<std::string> ParseInitiateMultipartUpload(absl::string_view body) {
  ASSIGN_OR_RETURN(XmlElement doc, ParseRoot(body, "InitiateMultipartUploadResult"));
  return doc.ChildText("UploadId");
}

absl::StatusOr<std::vector<MultipartUploadEntry>> ParseListMultipartUploads(absl::string_view body) {
  ASSIGN_OR_RETURN(XmlElement doc, ParseRoot(body, "ListMultipartUploadsResult"));
  std::vector<MultipartUploadEntry> out;
  for (const XmlElement& c : doc.children) {
    if (c.name == "Upload") out.push_back({c.ChildText("Key"), c.ChildText("UploadId")});
  }
  return out;
}

absl::StatusOr<std::vector<DeleteError>> ParseDeleteResult(absl::string_view body) {
  if (absl::StripAsciiWhitespace(body).empty()) return std::vector<DeleteError>();
  ASSIGN_OR_RETURN(XmlElement doc, ParseRoot(body, "DeleteResult"));
  std::vector<DeleteError> out;
  for (const XmlElement& c : doc.children) {
    if (c.name == "Error") out.push_back({c.ChildText("Key"), c.ChildText("Code"), c.ChildText("Message")});
  }
  return out;
}

absl::StatusOr<std::string> ParseCopyPartResult(absl::string_view body) {
  ASSIGN_OR_RETURN(XmlElement doc, ParseRoot(body, "CopyPartResult"));
  return doc.ChildText("ETag");
}

std::string XmlEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string DeleteObjectsXml(const std::vector<std::string>& keys) {
  std::string xml = "<Delete><Quiet>true</Quiet>";
  for (const std::string& key : keys) absl::StrAppend(&xml, "<Object><Key>", XmlEscape(key), "</Key></Object>");
  xml += "</Delete>";
  return xml;
}

std::string CompleteMultipartUploadXml(const std::map<int, std::string>& etags) {
  std::string xml = "<CompleteMultipartUpload>";
  for (const auto& [number, etag] : etags) {
    absl::StrAppend(&xml, "<Part><PartNumber>", number, "</PartNumber><ETag>", XmlEscape(etag), "</ETag></Part>");
  }
  xml += "</CompleteMultipartUpload>";
  return xml;
}

}  // namespace internal
}  // namespace cairn
