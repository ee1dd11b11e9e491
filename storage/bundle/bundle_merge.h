// Merges single-writer bundles into one checkpoint, as TensorFlow's
// MergeBundles does after a sharded save (spec §1.3):
//
//   inputs  P_temp/part-00000-of-00002.{index,data-00000-of-00001}, ...
//   output  P.index + P.data-0000i-of-0000N (the inputs' data files, renamed)
//
// Entries keep their offsets, sizes and checksums; each distinct input data
// file gets a new shard id in order of first appearance. Slices of one
// partitioned tensor spread over several inputs are joined into one full
// entry; any other duplicate name is InvalidArgument. Input index files are
// deleted afterwards. One deliberate difference: the header's num_shards is
// the number of data files the output really has (TensorFlow sums the
// inputs' counts, which disagree only when an input bundle is empty, and then
// names files the reader cannot find); data files of empty inputs are deleted.
#ifndef CAIRN_STORAGE_BUNDLE_BUNDLE_MERGE_H_
#define CAIRN_STORAGE_BUNDLE_BUNDLE_MERGE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "storage/storage.h"

namespace cairn {

struct MergeResult {
  int num_shards = 0;
  uint64_t num_entries = 0;
};

absl::StatusOr<MergeResult> MergeBundles(Storage* storage,
                                         const std::vector<std::string>& input_prefixes,
                                         absl::string_view output_prefix);

// A file of a merged checkpoint with its size and checksums (what an
// inventory of the checkpoint records).
struct MergedFile {
  std::string path;
  uint64_t size = 0;
  uint32_t crc32c = 0;  // unmasked CRC32C of the whole file
  std::string sha256;   // raw SHA-256 (index only; data files: empty)
};

// A positional, restartable merge: `parts[i]` is a single-data-file bundle
// and becomes shard i of `output_prefix`, always (an empty part
// still yields its, empty, data file, so a checkpoint of N shards has N data
// files). Unlike MergeBundles it is restartable: run again after a crash at
// any point, it finishes the job (data files already moved stay moved; the
// part indexes are deleted only after the merged index is durable). Returns
// the output's files: data files (size only; crc32c 0) then the index (with
// its CRC and SHA-256). InvalidArgument on duplicate tensor names across parts.
//
// It streams: a k-way merge of the parts' indexes (in key order) in passes
// of at most `fan_in` inputs, each pass writing sorted runs beside the
// output, so memory is bounded by `fan_in` open index files (read block by
// block above 256 KiB) whatever the number of parts or tensors.
constexpr int kMergeFanIn = 64;
absl::StatusOr<std::vector<MergedFile>> MergeBundleParts(Storage* storage,
                                                         const std::vector<std::string>& parts,
                                                         absl::string_view output_prefix,
                                                         int fan_in = kMergeFanIn);

}  // namespace cairn

#endif  // CAIRN_STORAGE_BUNDLE_BUNDLE_MERGE_H_
