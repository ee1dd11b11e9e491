// Fuzzes the whole read path of a checkpoint: the input is the `.index` file
// (table footer, blocks, restart arrays, Snappy, header and entry protos,
// slice keys); a fixed data file sits beside it. Every entry is decoded and
// every tensor read; nothing may crash, hang or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <string>

#include "storage/bundle/bundle_reader.h"
#include "storage/storage.h"
#include "storage/bundle/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto storage = cairn::NewMemoryStorage();
  {
    auto f = std::move(storage->NewWritableFile("p.index")).value();
    (void)f->Append(std::string(reinterpret_cast<const char*>(data), size));
    (void)f->Close();
  }
  for (int shards = 1; shards <= 2; ++shards) {
    for (int s = 0; s < shards; ++s) {
      auto f = std::move(storage->NewWritableFile(cairn::DataFileName("p", s, shards))).value();
      std::string bytes(256, '\0');
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 37);
      (void)f->Append(bytes);
      (void)f->Close();
    }
  }
  auto reader = cairn::BundleReader::Open(storage.get(), "p");
  if (!reader.ok()) return 0;
  int budget = 64;
  (void)(*reader)->ForEachEntry([&](const cairn::BundleEntry& e) -> absl::Status {
    if (--budget < 0) return absl::CancelledError("enough");
    (void)(*reader)->ReadEntry(e);
    if (e.key[0] != '\0') (void)(*reader)->ReadTensor(e.key);
    return absl::OkStatus();
  });
  return 0;
}
