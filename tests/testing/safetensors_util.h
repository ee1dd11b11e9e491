// Safetensors files and tensor bytes for tests.
#ifndef CAIRN_TESTS_TESTING_SAFETENSORS_UTIL_H_
#define CAIRN_TESTS_TESTING_SAFETENSORS_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/bundle/safetensors.h"

namespace cairn {
namespace testing {

// name → raw bytes of every tensor in the safetensors file at `path`. A file
// that does not parse is a test failure (and an empty map). `header_out`, if
// given, receives the parsed header (metadata included).
std::map<std::string, std::string> ReadSafetensorsTensors(const std::string& path,
                                                          SafetensorsHeader* header_out = nullptr);

// Writes a safetensors file of `infos` (data by tensor name) and `metadata`
// with the project's own canonical writer. A failure is a test failure.
void WriteSafetensors(const std::string& path, std::vector<SafetensorsTensor> infos,
                      std::map<std::string, std::string> data,
                      const std::map<std::string, std::string>& metadata);

// `n` deterministic pseudo-random bytes; different seeds give different bytes.
std::string PatternBytes(size_t n, uint32_t seed);

// Writes DIR/TENSOR<seed>.safetensors holding one float32 tensor `tensor` of
// 256 elements (PatternBytes(1024, seed)); returns its path.
std::string WriteOneTensorFile(const std::string& dir, uint32_t seed,
                               const std::string& tensor = "w");

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_SAFETENSORS_UTIL_H_
