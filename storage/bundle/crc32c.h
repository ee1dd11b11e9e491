// CRC-32C (Castagnoli), the checksum of every block and tensor in a TensorFlow
// checkpoint, and the "masked" form TensorFlow stores (spec §2).
//
// Extend() uses the SSE4.2 crc32 instruction when the CPU has it (detected at
// run time) and a portable slicing-by-8 table otherwise; both give identical
// results. Thread-safe.
#ifndef CAIRN_STORAGE_BUNDLE_CRC32C_H_
#define CAIRN_STORAGE_BUNDLE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace cairn {
namespace crc32c {

// Returns the CRC-32C of data[0, n) appended to a message whose CRC was
// `crc`. Extend(0, ...) starts a new message.
uint32_t Extend(uint32_t crc, const char* data, size_t n);
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// The CRC of A|B given crc_a = Value(A), crc_b = Value(B) and |B| = len_b,
// in O(log len_b) without touching the data.
uint32_t Combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

// The portable and the hardware implementations, exposed for tests and
// benchmarks. ExtendHardware REQUIRES HardwareAvailable().
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);
uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n);
bool HardwareAvailable();

// TensorFlow/LevelDB store CRCs masked, since a CRC of data that itself
// contains CRCs is weak: rotate right by 15, then add kMaskDelta.
constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace crc32c
}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_CRC32C_H_
