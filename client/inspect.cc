// inspect and verify: reading a checkpoint back, every CRC and hash checked.
#include "client/tools.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/internal/progress.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/checkpoint_state.h"
#include "storage/bundle/crc32c.h"
#include "storage/bundle/safetensors.h"
#include "storage/status_macros.h"
#include "storage/storage.h"
#include "storage/bundle/tensor_slice.h"

#include "client/internal/locate.h"

namespace cairn {
namespace {

using internal::Located;
using internal::Locate;


// JSON strings must be UTF-8; tensor names are arbitrary bytes.
std::string Dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<std::string> InspectCheckpoint(absl::string_view prefix_uri, bool json,
                                             const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(Located loc, Locate(prefix_uri, storage_options));
  ASSIGN_OR_RETURN(auto reader, BundleReader::Open(loc.storage.get(), loc.name));
  ASSIGN_OR_RETURN(std::vector<BundleEntry> tensors, reader->ListTensors());
  if (json) {
    nlohmann::json out;
    out["num_shards"] = reader->num_shards();
    out["tensors"] = nlohmann::json::array();
    for (const BundleEntry& e : tensors) {
      nlohmann::json t;
      t["name"] = e.key;
      t["dtype"] = DataTypeName(e.data_type());
      t["shape"] = e.shape;
      t["shard"] = e.shard_id;
      t["offset"] = e.offset;
      t["size"] = e.size;
      t["crc32c"] = e.masked_crc32c;
      t["slices"] = nlohmann::json::array();
      for (const TensorSlice& s : e.slices) t["slices"].push_back(s.ToString());
      out["tensors"].push_back(std::move(t));
    }
    return Dump(out, 2) + "\n";
  }
  std::string text = absl::StrCat("checkpoint ", prefix_uri, ": ", tensors.size(), " tensors in ",
                                  reader->num_shards(), " data file(s)\n");
  for (const BundleEntry& e : tensors) {
    absl::StrAppend(&text, absl::StrFormat("  %-50s %-9s %-14s", e.key, DataTypeName(e.data_type()),
                                           ShapeString(e.shape)));
    if (e.is_sliced()) {
      std::vector<std::string> parts;
      for (const TensorSlice& s : e.slices) parts.push_back(s.ToString());
      absl::StrAppend(&text, " slices ", absl::StrJoin(parts, " "), "\n");
    } else {
      absl::StrAppend(&text, absl::StrFormat(" shard %d offset %d size %d\n", e.shard_id,
                                             e.offset, e.size));
    }
  }
  return text;
}

absl::StatusOr<VerifyReport> VerifyCheckpoint(absl::string_view prefix_uri,
                                              const ProgressFn& progress_fn,
                                              const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(Located loc, Locate(prefix_uri, storage_options));
  ASSIGN_OR_RETURN(auto reader, BundleReader::Open(loc.storage.get(), loc.name));
  VerifyReport report;
  std::vector<BundleEntry> entries;
  RETURN_IF_ERROR(reader->ForEachEntry([&](const BundleEntry& e) {
    entries.push_back(e);
    return absl::OkStatus();
  }));
  std::map<std::string, const BundleEntry*> by_key;
  uint64_t data_bytes = 0;
  for (const BundleEntry& e : entries) {
    by_key[e.key] = &e;
    if (!e.is_sliced()) data_bytes += static_cast<uint64_t>(e.size);
  }
  internal::ProgressCounter progress(progress_fn, data_bytes);
  progress.Begin();
  for (const BundleEntry& e : entries) {
    if (e.is_sliced()) {
      // The full entry holds no data; each slice must have its own entry.
      for (const TensorSlice& s : e.slices) {
        if (!by_key.count(EncodeSliceKey(e.key, s))) {
          report.problems.push_back(absl::StrCat("tensor \"", e.key, "\": the data of slice ",
                                                 s.ToString(), " is missing"));
        }
      }
      continue;
    }
    ++report.tensors;
    auto t = reader->ReadEntry(e);
    if (!t.ok()) {
      report.problems.push_back(std::string(t.status().message()));
    } else {
      report.bytes += static_cast<uint64_t>(e.size);
    }
    progress.Add(static_cast<uint64_t>(e.size));
  }
  progress.Finish();
  return report;
}

absl::StatusOr<VerifyReport> VerifyFiles(absl::string_view root_uri,
                                         const std::vector<ExpectedFile>& files,
                                         const ProgressFn& progress_fn,
                                         const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(auto storage, OpenStorage(root_uri, storage_options));
  VerifyReport report;
  std::string buf(8 << 20, '\0');
  uint64_t total = 0;
  for (const ExpectedFile& f : files) total += f.size;
  internal::ProgressCounter progress(progress_fn, total);
  progress.Begin();
  // Whatever of a file was not counted as read (it was skipped, or a read
  // failed) counts once its check ends, however it ends.
  struct CountRest {
    internal::ProgressCounter& progress;
    uint64_t size;
    uint64_t counted = 0;
    ~CountRest() { progress.Add(size - counted); }
  };
  for (const ExpectedFile& f : files) {
    CountRest rest{progress, f.size};
    auto file = storage->NewReadableFile(f.path);
    if (!file.ok()) {
      report.problems.push_back(absl::StrCat("file ", f.path, ": ", file.status().message()));
      continue;
    }
    if ((*file)->Size() != f.size) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": ", (*file)->Size(),
                                             " bytes, the catalog recorded ", f.size));
      continue;
    }
    // The SHA-256 only where one was recorded (it costs several times the CRC).
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(
        f.sha256.empty() ? nullptr : EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (sha) EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
    uint32_t crc = 0;
    absl::Status read;
    for (uint64_t off = 0; off < f.size && read.ok();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size - off));
      read = (*file)->ReadAt(off, n, buf.data());
      crc = crc32c::Extend(crc, buf.data(), n);
      if (sha) EVP_DigestUpdate(sha.get(), buf.data(), n);
      off += n;
      progress.Add(n);
      rest.counted += n;
    }
    if (!read.ok()) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": ", read.message()));
      continue;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (sha) EVP_DigestFinal_ex(sha.get(), digest, &len);
    const std::string got(reinterpret_cast<char*>(digest), len);
    ++report.tensors;
    report.bytes += f.size;
    if (crc != f.crc32c && f.crc32c != 0) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": CRC32C mismatch with the catalog"));
    } else if (!f.sha256.empty() && got != f.sha256) {
      report.problems.push_back(absl::StrCat("file ", (*file)->name(), ": SHA-256 ",
                                             absl::BytesToHexString(got), " does not match the catalog's ",
                                             absl::BytesToHexString(f.sha256)));
    }
  }
  progress.Finish();
  return report;
}

}  // namespace cairn
