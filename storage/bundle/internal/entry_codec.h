// Conversions between the index's protobuf values and Cairn's structs, with
// the validation a reader owes hostile input.
#ifndef CAIRN_STORAGE_BUNDLE_INTERNAL_ENTRY_CODEC_H_
#define CAIRN_STORAGE_BUNDLE_INTERNAL_ENTRY_CODEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/tensor.h"

namespace cairn {
namespace internal {

struct BundleHeader {
  int32_t num_shards = 1;
  bool big_endian = false;
};

// Serializes as TensorFlow does (proto3, fields in order, defaults omitted).
std::string EncodeHeader(const BundleHeader& header);
std::string EncodeEntry(const BundleEntry& entry);
// The same into `*out` (replacing what it held): one buffer for a whole
// index costs no allocation per entry.
void EncodeEntry(const BundleEntry& entry, std::string* out);

// Parses and validates a header: num_shards >= 1 (or 0 for an empty bundle)
// and the version check of TensorFlow's CheckVersions. DataLoss on failure.
absl::Status DecodeHeader(absl::string_view bytes, BundleHeader* header);
// Parses an entry: shape dims >= 0 and known rank, offset/size >= 0, shard
// id in [0, num_shards), slice extents valid and fitting the shape. Sets
// entry->key = key. DataLoss naming the key on failure.
absl::Status DecodeEntry(absl::string_view key, absl::string_view bytes, int32_t num_shards,
                         BundleEntry* entry);

// Printable form of a key for messages: names as-is, slice keys decoded as
// "name[slice]", other bytes C-escaped.
std::string PrintableKey(absl::string_view key);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_INTERNAL_ENTRY_CODEC_H_
