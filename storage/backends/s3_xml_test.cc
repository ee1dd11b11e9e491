#include "storage/backends/s3_xml.h"

#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

// Shaped as AWS documents S3's answers (namespace, declaration, fields the
// backend does not read).
constexpr char kListPage[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>job/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>job/a&amp;b &lt;1&gt;</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key><![CDATA[job/c]]></Key><Size>1</Size></Contents>
  <Contents><Key> job/&#x41;&#66; </Key><Size>1</Size></Contents>
</ListBucketResult>)";

TEST(S3Xml, ListPageKeysEntitiesAndContinuation) {
  auto page = ParseListObjectsV2(kListPage);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->keys, (std::vector<std::string>{"job/a&b <1>", "job/c", " job/AB "}));
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

  auto last = ParseListObjectsV2("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->keys.empty());
  EXPECT_FALSE(last->truncated);
}

TEST(S3Xml, ErrorBodiesGiveCodeAndMessage) {
  const S3ErrorBody e = ParseErrorBody(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>"
      "<Message>The specified bucket does not exist</Message><BucketName>b</BucketName>"
      "<RequestId>tx0</RequestId></Error>");
  EXPECT_EQ(e.code, "NoSuchBucket");
  EXPECT_EQ(e.message, "The specified bucket does not exist");
  // No body (HEAD), a proxy's HTML, or another document: no S3 error.
  for (const char* body : {"", "<html><body><h1>502 Bad Gateway</h1></body></html>", "Bad Gateway",
                           "<ListBucketResult/>"}) {
    EXPECT_EQ(ParseErrorBody(body).code, "") << body;
    EXPECT_EQ(ParseErrorBody(body).message, "") << body;
  }
}

TEST(S3Xml, A200MayStillReportAFailure) {
  // S3 keeps a long CompleteMultipartUpload alive with spaces, then answers.
  EXPECT_FALSE(BodyReportsFailure(
      "   \n <?xml version=\"1.0\"?><CompleteMultipartUploadResult><ETag>\"x-2\"</ETag>"
      "</CompleteMultipartUploadResult>"));
  EXPECT_FALSE(BodyReportsFailure(""));
  EXPECT_TRUE(BodyReportsFailure("  <Error><Code>InternalError</Code></Error>"));
  EXPECT_TRUE(BodyReportsFailure("<CompleteMultipartUploadResult><Loc"));  // cut short
}

TEST(S3Xml, MultipartAnswers) {
  auto id = ParseInitiateMultipartUpload(
      "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "VXBsb2FkIElE");

  auto uploads = ParseListMultipartUploads(
      "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket>"
      "<IsTruncated>false</IsTruncated>"
      "<Upload><Key>a/x</Key><UploadId>1</UploadId><Initiator><ID>i</ID></Initiator></Upload>"
      "<Upload><Key>a/y</Key><UploadId>2</UploadId></Upload></ListMultipartUploadsResult>");
  ASSERT_TRUE(uploads.ok()) << uploads.status();
  ASSERT_EQ(uploads->size(), 2u);
  EXPECT_EQ((*uploads)[0].key, "a/x");
  EXPECT_EQ((*uploads)[0].upload_id, "1");
  EXPECT_EQ((*uploads)[1].key, "a/y");

  auto etag = ParseCopyPartResult("<CopyPartResult><LastModified>t</LastModified><ETag>\"e1\"</ETag></CopyPartResult>");
  ASSERT_TRUE(etag.ok()) << etag.status();
  EXPECT_EQ(*etag, "\"e1\"");
}

TEST(S3Xml, DeleteResultListsTheFailures) {
  auto errors = ParseDeleteResult(
      "<DeleteResult><Deleted><Key>ok</Key></Deleted>"
      "<Error><Key>a&amp;b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
      "</DeleteResult>");
  ASSERT_TRUE(errors.ok()) << errors.status();
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ((*errors)[0].key, "a&b");
  EXPECT_EQ((*errors)[0].code, "AccessDenied");
  EXPECT_EQ((*errors)[0].message, "Access Denied");
}

TEST(S3Xml, MalformedOrUnexpectedAnswersAreErrors) {
  auto cut = ParseListObjectsV2("<ListBucketResult><Contents><Key>a</Key>");
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cut.status().message().find("not XML"), std::string::npos) << cut.status();
  auto other = ParseListObjectsV2("<ListMultipartUploadsResult/>");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  auto error = ParseListObjectsV2("<Error><Code>AccessDenied</Code><Message>no</Message></Error>");
  EXPECT_NE(error.status().message().find("AccessDenied: no"), std::string::npos) << error.status();
  EXPECT_FALSE(ParseXml("").ok());
}

TEST(S3Xml, ExternalEntitiesAreNotLoaded) {
  auto page = ParseListObjectsV2(
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
      "<ListBucketResult><Contents><Key>k&e;</Key></Contents></ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->keys.size(), 1u);
  EXPECT_EQ(page->keys[0], "k");
}

TEST(S3Xml, RequestBodiesEscapeAndParseBack) {
  auto del = ParseXml(DeleteObjectsXml({"a&b", "<c>", "d'\"e"}));
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->name, "Delete");
  EXPECT_EQ(del->ChildText("Quiet"), "true");
  std::vector<std::string> keys;
  for (const XmlElement& o : del->children) {
    if (o.name == "Object") keys.push_back(o.ChildText("Key"));
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a&b", "<c>", "d'\"e"}));

  EXPECT_EQ(CompleteMultipartUploadXml({{2, "\"b\""}, {1, "\"a\""}}),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>&quot;b&quot;</ETag></Part></CompleteMultipartUpload>");
}

}  // namespace
}  // namespace internal
}  // namespace cairn
