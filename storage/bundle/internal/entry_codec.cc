#include "storage/bundle/internal/entry_codec.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/tensor_bundle.pb.h"
#include "storage/bundle/internal/coding.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {

std::string IndexFileName(absl::string_view prefix) { return absl::StrCat(prefix, ".index"); }

std::string DataFileName(absl::string_view prefix, int shard, int num_shards) {
  return absl::StrFormat("%s.data-%05d-of-%05d", prefix, shard, num_shards);
}

namespace internal {
namespace {

// TensorFlow's tensor bundle version (tensor_bundle.h): producer 1, and this
// reader is consumer 1 with min producer 0.
constexpr int kBundleVersionProducer = 1;
constexpr int kBundleConsumer = 1;
constexpr int kBundleMinProducer = 0;
constexpr int kMaxRank = 254;  // TensorShape's limit

absl::Status Bad(absl::string_view key, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("invalid index entry for tensor \"", PrintableKey(key), "\": ", what));
}

}  // namespace

std::string PrintableKey(absl::string_view key) {
  if (!key.empty() && key[0] == '\0') {
    std::string name;
    TensorSlice slice;
    if (DecodeSliceKey(key, &name, &slice).ok()) {
      return absl::StrCat(name, "[", slice.ToString(), "]");
    }
  }
  return absl::CEscape(key);
}

std::string EncodeHeader(const BundleHeader& header) {
  tf::BundleHeaderProto proto;
  proto.set_num_shards(header.num_shards);
  proto.set_endianness(header.big_endian ? tf::BundleHeaderProto::BIG
                                         : tf::BundleHeaderProto::LITTLE);
  proto.mutable_version()->set_producer(kBundleVersionProducer);
  return proto.SerializeAsString();
}

namespace {

// Protobuf wire format: a field's key is (number << 3) | wire type.
constexpr uint8_t kVarint = 0, kLengthDelimited = 2, kFixed32 = 5;
void PutKey(std::string* out, int field, uint8_t wire_type) {
  out->push_back(static_cast<char>((field << 3) | wire_type));
}
// int32 and int64 fields go as 64-bit varints (negative: ten bytes).
void PutIntField(std::string* out, int field, int64_t v) {
  if (v == 0) return;  // proto3: defaults are not written
  PutKey(out, field, kVarint);
  PutVarint64(out, static_cast<uint64_t>(v));
}
void PutMessage(std::string* out, int field, const std::string& body) {
  PutKey(out, field, kLengthDelimited);
  PutVarint64(out, body.size());
  out->append(body);
}

}  // namespace

// By hand, byte for byte what protobuf's serializer writes for the
// BundleEntryProto EncodeEntryProto (entry_codec_test.cc) builds: fields in
// number order, proto3 defaults omitted, the shape always present (TF sets
// it even for a scalar), a sliced extent's length always present (a oneof).
// An index of 10,000 small tensors spent ~0.5 us an entry building and
// freeing the proto messages.
std::string EncodeEntry(const BundleEntry& entry) {
  std::string out;
  EncodeEntry(entry, &out);
  return out;
}

void EncodeEntry(const BundleEntry& entry, std::string* buffer) {
  std::string& out = *buffer;
  out.clear();
  PutIntField(&out, 1, entry.dtype);
  std::string shape, dim;
  for (int64_t d : entry.shape) {
    dim.clear();
    PutIntField(&dim, 1, d);
    PutMessage(&shape, 2, dim);
  }
  PutMessage(&out, 2, shape);
  PutIntField(&out, 3, entry.shard_id);
  PutIntField(&out, 4, entry.offset);
  PutIntField(&out, 5, entry.size);
  if (entry.masked_crc32c != 0) {
    PutKey(&out, 6, kFixed32);
    PutFixed32(&out, entry.masked_crc32c);
  }
  std::string slice, extent;
  for (const TensorSlice& s : entry.slices) {
    slice.clear();
    for (const Extent& e : s.extents()) {
      extent.clear();
      if (!e.full()) {
        PutIntField(&extent, 1, e.start);
        PutKey(&extent, 2, kVarint);
        PutVarint64(&extent, static_cast<uint64_t>(e.length));
      }
      PutMessage(&slice, 1, extent);
    }
    PutMessage(&out, 7, slice);
  }
}

absl::Status DecodeHeader(absl::string_view bytes, BundleHeader* header) {
  tf::BundleHeaderProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("unparseable bundle header");
  }
  if (proto.num_shards() < 0) {
    return absl::DataLossError(absl::StrCat("bundle header has num_shards ", proto.num_shards()));
  }
  const auto& v = proto.version();
  if (v.producer() < kBundleMinProducer) {
    return absl::DataLossError(absl::StrCat("bundle producer version ", v.producer(),
                                            " is below the minimum ", kBundleMinProducer));
  }
  if (v.min_consumer() > kBundleConsumer) {
    return absl::DataLossError(absl::StrCat("bundle needs consumer version ", v.min_consumer(),
                                            " but this reader is ", kBundleConsumer));
  }
  for (int bad : v.bad_consumers()) {
    if (bad == kBundleConsumer) {
      return absl::DataLossError(absl::StrCat("bundle disallows consumer version ", bad));
    }
  }
  header->num_shards = proto.num_shards();
  header->big_endian = proto.endianness() == tf::BundleHeaderProto::BIG;
  return absl::OkStatus();
}

absl::Status DecodeEntry(absl::string_view key, absl::string_view bytes, int32_t num_shards,
                         BundleEntry* entry) {
  tf::BundleEntryProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Bad(key, "unparseable BundleEntryProto");
  }
  entry->key = std::string(key);
  entry->dtype = proto.dtype();
  if (proto.shape().unknown_rank()) return Bad(key, "shape of unknown rank");
  if (proto.shape().dim_size() > kMaxRank) return Bad(key, "rank too large");
  entry->shape.clear();
  for (const auto& dim : proto.shape().dim()) {
    if (dim.size() < 0) return Bad(key, absl::StrCat("negative dimension ", dim.size()));
    entry->shape.push_back(dim.size());
  }
  int64_t elements;
  if (!NumElements(entry->shape, &elements)) return Bad(key, "element count overflows");
  if (proto.shard_id() < 0 || proto.shard_id() >= std::max(num_shards, 1)) {
    return Bad(key, absl::StrCat("shard id ", proto.shard_id(), " outside [0, ", num_shards, ")"));
  }
  if (proto.offset() < 0 || proto.size() < 0) return Bad(key, "negative offset or size");
  int64_t end;
  if (__builtin_add_overflow(proto.offset(), proto.size(), &end)) {
    return Bad(key, "offset + size overflows");
  }
  entry->shard_id = proto.shard_id();
  entry->offset = proto.offset();
  entry->size = proto.size();
  entry->masked_crc32c = proto.crc32c();
  entry->slices.clear();
  for (const auto& sp : proto.slices()) {
    std::vector<Extent> extents;
    for (const auto& ep : sp.extent()) {
      Extent e;
      e.start = ep.start();
      e.length = ep.has_length_case() == tf::TensorSliceProto::Extent::kLength
                     ? ep.length()
                     : Extent::kFullLength;
      if (e.start < 0 || (e.length < 0 && e.length != Extent::kFullLength) ||
          (e.full() && e.start != 0)) {
        return Bad(key, "invalid slice extent");
      }
      extents.push_back(e);
    }
    TensorSlice slice(std::move(extents));
    absl::Status fits = slice.CheckFits(entry->shape);
    if (!fits.ok()) return Bad(key, fits.message());
    entry->slices.push_back(std::move(slice));
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace cairn
