// libFuzzer target for the safetensors header parser.
//
// The input is a whole safetensors file: [u64 LE N][N header bytes][data].
// Every header must either be rejected with InvalidArgument or parse into a
// header that satisfies the documented invariants; a parsed header must then
// rebuild into a canonical prefix that parses back to the same tensors and
// that rebuilds to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/safetensors.h"

namespace {

#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                  \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

// Safetensors element sizes, independent of the code under test.
uint64_t ElementSize(cairn::DataType dtype) {
  switch (dtype) {
    case cairn::DataType::kBool:
    case cairn::DataType::kInt8:
    case cairn::DataType::kUint8:
      return 1;
    case cairn::DataType::kHalf:
    case cairn::DataType::kBfloat16:
    case cairn::DataType::kInt16:
    case cairn::DataType::kUint16:
      return 2;
    case cairn::DataType::kFloat:
    case cairn::DataType::kInt32:
    case cairn::DataType::kUint32:
      return 4;
    case cairn::DataType::kDouble:
    case cairn::DataType::kInt64:
    case cairn::DataType::kUint64:
      return 8;
    default:
      return 0;
  }
}

// Bytes a tensor needs; false on overflow.
bool ByteSize(const cairn::SafetensorsTensor& t, uint64_t* bytes) {
  unsigned __int128 n = ElementSize(t.dtype);
  for (int64_t dim : t.shape) {
    if (dim < 0) return false;
    n *= static_cast<uint64_t>(dim);
    if (n > UINT64_MAX) return false;
  }
  *bytes = static_cast<uint64_t>(n);
  return true;
}

// The invariants ParseSafetensorsHeader promises for an accepted header.
void CheckParsed(const cairn::SafetensorsHeader& h, uint64_t header_size, uint64_t data_size) {
  FUZZ_CHECK(h.data_start == 8 + header_size);
  uint64_t prev_begin = 0;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const cairn::SafetensorsTensor& t = h.tensors[i];
    FUZZ_CHECK(t.name != "__metadata__");
    FUZZ_CHECK(!cairn::SafetensorsName(t.dtype).empty());
    FUZZ_CHECK(t.shape.size() <= 64);
    FUZZ_CHECK(t.begin <= t.end);
    FUZZ_CHECK(t.end <= data_size);
    uint64_t bytes = 0;
    FUZZ_CHECK(ByteSize(t, &bytes));
    FUZZ_CHECK(bytes == t.end - t.begin);
    if (i > 0) {
      FUZZ_CHECK(t.begin >= prev_begin);  // data-offset order
      FUZZ_CHECK(t.begin >= prev_end);    // no overlap
    }
    prev_begin = t.begin;
    prev_end = t.end;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8) return 0;  // a truncated file; nothing to parse
  const absl::string_view header_json(reinterpret_cast<const char*>(data) + 8, n);
  const uint64_t data_size = size - 8 - n;

  absl::StatusOr<cairn::SafetensorsHeader> parsed =
      cairn::ParseSafetensorsHeader(header_json, data_size);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  CheckParsed(*parsed, n, data_size);

  // Rebuild canonically. Parsed tensors fit in the data section without
  // overlapping, so their total size cannot overflow and the build succeeds.
  std::vector<cairn::SafetensorsTensor> tensors = parsed->tensors;
  absl::StatusOr<std::string> prefix = cairn::BuildSafetensorsPrefix(&tensors, parsed->metadata);
  FUZZ_CHECK(prefix.ok());
  FUZZ_CHECK(prefix->size() >= 8 && prefix->size() % 8 == 0);
  FUZZ_CHECK(tensors.size() == parsed->tensors.size());
  uint64_t offset = 0;
  for (const cairn::SafetensorsTensor& t : tensors) {
    FUZZ_CHECK(t.begin == offset);  // contiguous from 0
    uint64_t bytes = 0;
    FUZZ_CHECK(ByteSize(t, &bytes));
    FUZZ_CHECK(t.end - t.begin == bytes);
    offset = t.end;
  }
  FUZZ_CHECK(offset <= data_size);

  // The rebuilt header parses back to the same tensors and metadata.
  const absl::string_view rebuilt_json = absl::string_view(*prefix).substr(8);
  uint64_t rebuilt_n = 0;
  for (int i = 7; i >= 0; --i) {
    rebuilt_n = (rebuilt_n << 8) | static_cast<unsigned char>((*prefix)[i]);
  }
  FUZZ_CHECK(rebuilt_n == rebuilt_json.size());
  absl::StatusOr<cairn::SafetensorsHeader> reparsed =
      cairn::ParseSafetensorsHeader(rebuilt_json, offset);
  FUZZ_CHECK(reparsed.ok());
  CheckParsed(*reparsed, rebuilt_n, offset);
  FUZZ_CHECK(reparsed->metadata == parsed->metadata);
  // Compared by name: empty tensors sharing an offset may be listed in a
  // different order by the parser (data-offset order) than by the builder.
  std::map<std::string, const cairn::SafetensorsTensor*> by_name;
  for (const cairn::SafetensorsTensor& t : reparsed->tensors) by_name[t.name] = &t;
  FUZZ_CHECK(by_name.size() == tensors.size());
  for (const cairn::SafetensorsTensor& a : tensors) {
    auto it = by_name.find(a.name);
    FUZZ_CHECK(it != by_name.end());
    const cairn::SafetensorsTensor& b = *it->second;
    FUZZ_CHECK(a.dtype == b.dtype && a.shape == b.shape && a.begin == b.begin &&
               a.end == b.end);
  }

  // Canonical means idempotent: rebuilding the reparsed header gives the
  // same bytes.
  std::vector<cairn::SafetensorsTensor> again = reparsed->tensors;
  absl::StatusOr<std::string> prefix2 = cairn::BuildSafetensorsPrefix(&again, reparsed->metadata);
  FUZZ_CHECK(prefix2.ok() && *prefix2 == *prefix);
  return 0;
}
