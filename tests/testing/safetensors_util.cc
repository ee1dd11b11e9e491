#include "tests/testing/safetensors_util.h"

#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace testing {

std::map<std::string, std::string> ReadSafetensorsTensors(const std::string& path,
                                                          SafetensorsHeader* header_out) {
  const std::string bytes = ReadFile(path);
  std::map<std::string, std::string> out;
  if (bytes.size() < 8) {
    ADD_FAILURE() << path << " is too short to be a safetensors file";
    return out;
  }
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) {
    ADD_FAILURE() << path << ": header length " << n << " exceeds the file";
    return out;
  }
  auto header = ParseSafetensorsHeader(absl::string_view(bytes).substr(8, n), bytes.size() - 8 - n);
  EXPECT_TRUE(header.ok()) << path << ": " << header.status();
  if (!header.ok()) return out;
  for (const auto& t : header->tensors) {
    out[t.name] = bytes.substr(header->data_start + t.begin, t.end - t.begin);
  }
  if (header_out) *header_out = *header;
  return out;
}

std::string PatternBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t v = rng();
    std::memcpy(&s[i], &v, 4);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

std::string WriteOneTensorFile(const std::string& dir, uint32_t seed, const std::string& tensor) {
  const std::string path = dir + "/" + tensor + std::to_string(seed) + ".safetensors";
  std::vector<SafetensorsTensor> infos = {{tensor, DataType::kFloat, {256}}};
  WriteFile(path, *BuildSafetensorsPrefix(&infos, {}) + PatternBytes(1024, seed));
  return path;
}

void WriteSafetensors(const std::string& path, std::vector<SafetensorsTensor> infos,
                      std::map<std::string, std::string> data,
                      const std::map<std::string, std::string>& metadata) {
  auto prefix = BuildSafetensorsPrefix(&infos, metadata);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  std::string bytes = *prefix;
  for (const auto& info : infos) bytes += data[info.name];
  WriteFile(path, bytes);
}

}  // namespace testing
}  // namespace cairn
