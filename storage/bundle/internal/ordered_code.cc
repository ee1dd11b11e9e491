#include "storage/bundle/internal/ordered_code.h"

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {
namespace {

constexpr size_t kMaxQuotedBytes = 24;
constexpr int kMaxSignedLength = 10;

// The bytes of `data` as space-separated hex in double quotes, truncated
// with "..." after kMaxQuotedBytes bytes.
std::string QuoteBytes(absl::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  const size_t n = data.size() < kMaxQuotedBytes ? data.size() : kMaxQuotedBytes;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (i > 0) out.push_back(' ');
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  if (n < data.size()) out += " ...";
  out.push_back('"');
  return out;
}

absl::Status Malformed(absl::string_view what, absl::string_view problem,
                       absl::string_view data) {
  return absl::InvalidArgumentError(
      absl::StrCat("OrderedCode ", what, ": ", problem, " in ", QuoteBytes(data)));
}

uint8_t ByteAt(absl::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

// Number of leading one bits of an 8-bit value.
int LeadingOnes(uint8_t b) {
  const uint32_t inverted = static_cast<uint8_t>(~b);
  return inverted == 0 ? 8 : __builtin_clz(inverted) - 24;
}

// Bit length of x (0 for 0).
int BitLength(uint64_t x) { return x == 0 ? 0 : 64 - __builtin_clzll(x); }

// The first two header bytes of a SignedNumIncreasing of `len` bytes (for a
// non-negative value): `len` one bits followed by zeros, as a 16-bit value.
uint16_t SignedHeader(int len) {
  return static_cast<uint16_t>(0xffffu << (16 - len));
}

// The length of the SignedNumIncreasing starting at `src` (whose first byte
// exists), from its leading bits, XORed with `invert` (0xff for negatives).
// Returns 0 if the prefix is truncated or denotes more than 10 bytes.
int SignedLengthFromPrefix(absl::string_view src, uint8_t invert) {
  const uint8_t t0 = ByteAt(src, 0) ^ invert;
  if (t0 != 0xff) return LeadingOnes(t0);
  if (src.size() < 2) return 0;
  const int len = 8 + LeadingOnes(ByteAt(src, 1) ^ invert);
  return len > kMaxSignedLength ? 0 : len;
}

}  // namespace

void AppendNumIncreasing(uint64_t v, std::string* dest) {
  const int len = (BitLength(v) + 7) / 8;
  dest->push_back(static_cast<char>(len));
  for (int i = len - 1; i >= 0; --i) {
    dest->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

void AppendString(absl::string_view s, std::string* dest) {
  dest->reserve(dest->size() + s.size() + 2);
  for (char c : s) {
    const uint8_t b = static_cast<uint8_t>(c);
    if (b == 0x00) {
      dest->append("\x00\xff", 2);
    } else if (b == 0xff) {
      dest->append("\xff\x00", 2);
    } else {
      dest->push_back(c);
    }
  }
  dest->append("\x00\x01", 2);
}

int SignedNumIncreasingLength(int64_t v) {
  const uint64_t x = static_cast<uint64_t>(v < 0 ? ~v : v);
  return BitLength(x) / 7 + 1;
}

void AppendSignedNumIncreasing(int64_t v, std::string* dest) {
  const int len = SignedNumIncreasingLength(v);
  // v as a 10-byte big-endian two's-complement number (sign-extended).
  uint8_t buf[kMaxSignedLength];
  const uint8_t fill = v < 0 ? 0xff : 0x00;
  buf[0] = buf[1] = fill;
  const uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) buf[2 + i] = static_cast<uint8_t>(u >> (8 * (7 - i)));
  uint8_t* kept = buf + (kMaxSignedLength - len);
  const uint16_t header = SignedHeader(len);
  kept[0] ^= static_cast<uint8_t>(header >> 8);
  if (len >= 2) kept[1] ^= static_cast<uint8_t>(header & 0xff);
  dest->append(reinterpret_cast<const char*>(kept), len);
}

absl::Status ReadNumIncreasing(absl::string_view* src, uint64_t* v) {
  const absl::string_view in = *src;
  if (in.empty()) return Malformed("NumIncreasing", "empty input", in);
  const size_t len = ByteAt(in, 0);
  if (len > 8) return Malformed("NumIncreasing", absl::StrCat("length byte ", len, " > 8"), in);
  if (in.size() < 1 + len) return Malformed("NumIncreasing", "truncated value", in);
  if (len > 0 && ByteAt(in, 1) == 0) {
    return Malformed("NumIncreasing", "non-canonical leading zero byte", in.substr(0, 1 + len));
  }
  uint64_t value = 0;
  for (size_t i = 1; i <= len; ++i) value = (value << 8) | ByteAt(in, i);
  *v = value;
  src->remove_prefix(1 + len);
  return absl::OkStatus();
}

absl::Status ReadString(absl::string_view* src, std::string* s) {
  const absl::string_view in = *src;
  std::string out;
  size_t i = 0;
  while (true) {
    // Copy the run of bytes that need no unescaping.
    size_t run = i;
    while (run < in.size() && ByteAt(in, run) != 0x00 && ByteAt(in, run) != 0xff) ++run;
    out.append(in.data() + i, run - i);
    i = run;
    if (i + 1 >= in.size()) return Malformed("String", "missing 00 01 terminator", in);
    const uint8_t escape = ByteAt(in, i);
    const uint8_t next = ByteAt(in, i + 1);
    i += 2;
    if (escape == 0x00 && next == 0x01) break;
    if (escape == 0x00 && next == 0xff) {
      out.push_back('\x00');
    } else if (escape == 0xff && next == 0x00) {
      out.push_back('\xff');
    } else {
      return Malformed("String", absl::StrCat("invalid escape at byte ", i - 2), in);
    }
  }
  *s = std::move(out);
  src->remove_prefix(i);
  return absl::OkStatus();
}

absl::Status ReadSignedNumIncreasing(absl::string_view* src, int64_t* v) {
  const absl::string_view in = *src;
  if (in.empty()) return Malformed("SignedNumIncreasing", "empty input", in);
  // Negative numbers are the bitwise complement of the non-negative layout.
  const uint8_t invert = (ByteAt(in, 0) & 0x80) ? 0x00 : 0xff;
  const int len = SignedLengthFromPrefix(in, invert);
  if (len == 0) return Malformed("SignedNumIncreasing", "invalid length prefix", in);
  if (in.size() < static_cast<size_t>(len)) {
    return Malformed("SignedNumIncreasing", absl::StrCat("truncated ", len, "-byte value"), in);
  }
  const absl::string_view bytes = in.substr(0, len);
  // The first len + 1 bits are the header; the rest is the magnitude x
  // (v itself, or ~v for negatives), which must fit in 63 bits.
  const int header_bits = len + 1;
  uint64_t x = 0;
  for (int i = 0; i < len; ++i) {
    uint8_t b = ByteAt(bytes, i) ^ invert;
    if (header_bits >= 8 * (i + 1)) continue;
    if (header_bits > 8 * i) b &= static_cast<uint8_t>(0xff >> (header_bits - 8 * i));
    if ((x >> 56) != 0) return Malformed("SignedNumIncreasing", "value exceeds int64", bytes);
    x = (x << 8) | b;
  }
  if ((x >> 63) != 0) return Malformed("SignedNumIncreasing", "value exceeds int64", bytes);
  const int64_t value = invert ? ~static_cast<int64_t>(x) : static_cast<int64_t>(x);
  if (SignedNumIncreasingLength(value) != len) {
    return Malformed("SignedNumIncreasing", "non-canonical (overlong) encoding", bytes);
  }
  *v = value;
  src->remove_prefix(len);
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace cairn
