#include "storage/bundle/crc32c.h"

#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace cairn {
namespace crc32c {
namespace {

constexpr uint32_t kPoly = 0x82f63b78u;  // reflected Castagnoli polynomial

struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k) {
      for (int i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

inline uint64_t LoadLE64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // x86/ARM little-endian hosts; big-endian hosts are not supported
}

// Multiplication in GF(2) modulo the CRC polynomial, used to combine the
// three interleaved streams of the hardware path: shifting a CRC over `len`
// zero bytes is multiplication by x^(8*len).
uint32_t GfMultiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32; ++i) {
    if (a & 0x80000000u) product ^= b;
    a <<= 1;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return product;
}

// x^(8*len) mod P in the reflected representation (x^0 == 0x80000000).
// The operator that appends `len` zero bytes, as a product of x^(8 * 2^i)
// powers (computed once): Combine runs per received chunk, so it costs
// popcount(len) multiplications, not 2 * log2(len).
uint32_t ZerosOperator(size_t len) {
  struct Powers {
    uint32_t p[64];
    Powers() {
      uint32_t power = 0x00800000u;  // x^8: one zero byte
      for (uint32_t& q : p) {
        q = power;
        power = GfMultiply(power, power);
      }
    }
  };
  static const Powers powers;
  // The operators this thread computed last, by length: a writer combines
  // each tensor's CRC into its file's, and a model's tensors repeat a few
  // sizes (every layer's weight), each costing popcount(len) products.
  struct Memo {
    size_t len = 0;
    uint32_t op = 0x80000000u;  // x^0: appending no bytes
  };
  static thread_local Memo memo[64];
  Memo& m = memo[(static_cast<uint64_t>(len) * 0x9E3779B97F4A7C15ull) >> 58];
  if (m.len == len) return m.op;
  uint32_t result = 0x80000000u;
  for (size_t n = len, i = 0; n; ++i, n >>= 1) {
    if (n & 1) result = GfMultiply(result, powers.p[i]);
  }
  m = {len, result};
  return result;
}

}  // namespace

uint32_t Combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
  // Appending len_b bytes to A shifts A's register by x^(8*len_b); the
  // pre/post inversion of both CRCs cancels out in the XOR.
  if (crc_a == 0) return crc_b;  // the shift is linear: zero stays zero
  return GfMultiply(crc_a, ZerosOperator(len_b)) ^ crc_b;
}

uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n) {
  const Tables& tb = GetTables();
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    uint64_t v = LoadLE64(reinterpret_cast<const char*>(p)) ^ c;
    c = tb.t[7][v & 0xff] ^ tb.t[6][(v >> 8) & 0xff] ^ tb.t[5][(v >> 16) & 0xff] ^
        tb.t[4][(v >> 24) & 0xff] ^ tb.t[3][(v >> 32) & 0xff] ^ tb.t[2][(v >> 40) & 0xff] ^
        tb.t[1][(v >> 48) & 0xff] ^ tb.t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ tb.t[0][(c ^ *p++) & 0xff];
  return ~c;
}

#if defined(__x86_64__)

namespace {

// Three streams of kStride bytes hide the crc32 instruction's 3-cycle latency.
constexpr size_t kStride = 4096;

struct ShiftTable {
  uint32_t op1 = ZerosOperator(kStride);
  uint32_t op2 = ZerosOperator(2 * kStride);
};

const ShiftTable& GetShift() {
  static const ShiftTable table;
  return table;
}

__attribute__((target("sse4.2"))) uint32_t HwRun(uint32_t c, const char* p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    c64 = _mm_crc32_u64(c64, LoadLE64(p));
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n--) c = _mm_crc32_u8(c, static_cast<unsigned char>(*p++));
  return c;
}

}  // namespace

__attribute__((target("sse4.2"))) uint32_t ExtendHardware(uint32_t crc, const char* data,
                                                         size_t n) {
  uint32_t c = ~crc;
  const char* p = data;
  if (n >= 3 * kStride) {
    const ShiftTable& shift = GetShift();
    while (n >= 3 * kStride) {
      uint64_t c0 = c, c1 = 0, c2 = 0;
      const char* p0 = p;
      const char* p1 = p + kStride;
      const char* p2 = p + 2 * kStride;
      for (size_t i = 0; i < kStride; i += 8) {
        c0 = _mm_crc32_u64(c0, LoadLE64(p0 + i));
        c1 = _mm_crc32_u64(c1, LoadLE64(p1 + i));
        c2 = _mm_crc32_u64(c2, LoadLE64(p2 + i));
      }
      // crc(A|B|C) = shift(crcA, |B|+|C|) ^ shift(crcB, |C|) ^ crcC, with raw
      // (uninverted) register values.
      c = GfMultiply(static_cast<uint32_t>(c0), shift.op2) ^
          GfMultiply(static_cast<uint32_t>(c1), shift.op1) ^ static_cast<uint32_t>(c2);
      p += 3 * kStride;
      n -= 3 * kStride;
    }
  }
  return ~HwRun(c, p, n);
}

bool HardwareAvailable() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

#else

uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n) {
  return ExtendPortable(crc, data, n);
}
bool HardwareAvailable() { return false; }

#endif

uint32_t Extend(uint32_t crc, const char* data, size_t n) {
  return HardwareAvailable() ? ExtendHardware(crc, data, n) : ExtendPortable(crc, data, n);
}

}  // namespace crc32c
}  // namespace cairn
