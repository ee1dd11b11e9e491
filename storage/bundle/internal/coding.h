// Little-endian fixed-width and LEB128 varint encodings (spec §2).
// Decoders are bounds-checked: they never read past `limit` and report
// failure instead.
#ifndef CAIRN_STORAGE_BUNDLE_INTERNAL_CODING_H_
#define CAIRN_STORAGE_BUNDLE_INTERNAL_CODING_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

inline void PutFixed32(std::string* dst, uint32_t v) {
  char buf[4];
  for (int i = 0; i < 4; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(buf, 4);
}

inline void PutFixed64(std::string* dst, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(buf, 8);
}

inline uint32_t DecodeFixed32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

inline uint64_t DecodeFixed64(const char* p) {
  return static_cast<uint64_t>(DecodeFixed32(p)) |
         (static_cast<uint64_t>(DecodeFixed32(p + 4)) << 32);
}

inline void PutVarint64(std::string* dst, uint64_t v) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  dst->append(buf, n);
}

inline void PutVarint32(std::string* dst, uint32_t v) { PutVarint64(dst, v); }

inline int VarintLength(uint64_t v) {
  int len = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++len;
  }
  return len;
}

// Decodes a varint64 from [p, limit). Returns the position after it, or
// nullptr if truncated or longer than 10 bytes.
inline const char* GetVarint64Ptr(const char* p, const char* limit, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && p < limit; shift += 7) {
    uint64_t byte = static_cast<unsigned char>(*p++);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return p;
    }
  }
  return nullptr;
}

// Same for varint32: values above 2^32-1 are rejected.
inline const char* GetVarint32Ptr(const char* p, const char* limit, uint32_t* value) {
  uint64_t v;
  const char* q = GetVarint64Ptr(p, limit, &v);
  if (q == nullptr || v > 0xffffffffu) return nullptr;
  *value = static_cast<uint32_t>(v);
  return q;
}

// Consumes a varint from the front of `*input`.
inline bool GetVarint64(absl::string_view* input, uint64_t* value) {
  const char* p = input->data();
  const char* q = GetVarint64Ptr(p, p + input->size(), value);
  if (q == nullptr) return false;
  input->remove_prefix(q - p);
  return true;
}

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_INTERNAL_CODING_H_
