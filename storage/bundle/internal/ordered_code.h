// OrderedCode primitives used by TensorFlow's slice keys (spec §8.1).
//
// Encodings are order-preserving: comparing encodings bytewise orders them
// like the values they encode. Every value has exactly one encoding, and the
// readers accept only that encoding, so for any `src` a successful Read
// followed by the matching Append reproduces the consumed bytes exactly.
//
//   std::string key;
//   AppendNumIncreasing(0, &key);            // 00
//   AppendString("foo", &key);               // 66 6f 6f 00 01
//   AppendSignedNumIncreasing(-1, &key);     // 7f
//
//   absl::string_view in = key;
//   uint64_t zero; std::string name; int64_t v;
//   RETURN_IF_ERROR(ReadNumIncreasing(&in, &zero));
//   ...
#ifndef CAIRN_STORAGE_BUNDLE_INTERNAL_ORDERED_CODE_H_
#define CAIRN_STORAGE_BUNDLE_INTERNAL_ORDERED_CODE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

// NumIncreasing: a length byte L (0..8) followed by the L significant
// big-endian bytes of `v` (0 encodes as the single byte 00).
void AppendNumIncreasing(uint64_t v, std::string* dest);

// String: `s` with 0x00 escaped as `00 ff` and 0xff escaped as `ff 00`,
// followed by the terminator `00 01`.
void AppendString(absl::string_view s, std::string* dest);

// SignedNumIncreasing: 1 to 10 bytes whose leading bits give the length
// (see spec §8.1 for the table).
void AppendSignedNumIncreasing(int64_t v, std::string* dest);

// Number of bytes AppendSignedNumIncreasing(v) appends (1..10).
int SignedNumIncreasingLength(int64_t v);

// Readers. Each decodes one value from the front of `*src`; on success it
// stores the value and advances `*src` past the consumed bytes. On failure it
// returns InvalidArgument (quoting the offending bytes) and leaves `*src` and
// the output unchanged. They never read outside `*src` and reject
// non-canonical encodings (e.g. a NumIncreasing with a leading zero byte).
absl::Status ReadNumIncreasing(absl::string_view* src, uint64_t* v);
absl::Status ReadString(absl::string_view* src, std::string* s);
absl::Status ReadSignedNumIncreasing(absl::string_view* src, int64_t* v);

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_INTERNAL_ORDERED_CODE_H_
