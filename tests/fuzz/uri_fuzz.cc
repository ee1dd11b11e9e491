// Fuzzes the parsing of storage URIs and relative paths: no input may crash,
// and no accepted relative path may climb out of the storage root.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_split.h"
#include "storage/internal/path.h"
#include "storage/storage.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto split = cairn::SplitPrefixUri(input);
  if (split.ok() && split->prefix.empty()) __builtin_trap();
  if (cairn::internal::ValidateRelativePath(input).ok()) {
    if (!input.empty() && input[0] == '/') __builtin_trap();
    for (absl::string_view part : absl::StrSplit(input, '/')) {
      if (part == "..") __builtin_trap();
    }
  }
  cairn::StorageOptions options;  // no credentials: s3:// must fail cleanly
  auto storage = cairn::OpenStorage(input, options);
  (void)storage;
  (void)cairn::JoinPath(input, input);
  return 0;
}
