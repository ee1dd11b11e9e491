// Restoring: straight from the checkpoint files in storage, tensors read in
// parallel, every checksum verified; Client::Restore adds the coordinator's
// view (newest committed step, a lease while reading).
#include "client/client.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/internal/client_rep.h"
#include "client/internal/lease.h"
#include "client/internal/progress.h"
#include "client/internal/restore_plan.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace {

using internal::RestoreItem;

// Restores one item into caller memory of exactly item.cost bytes: whole
// stored tensors straight from the file (checksummed), anything assembled
// from slices or cut from a tensor through a temporary.
absl::StatusOr<Tensor> ReadInto(const BundleReader& reader, const RestoreItem& item,
                                absl::Span<char> dst) {
  Tensor t;
  t.dtype = item.entry.data_type();
  if (!item.slice.has_value() && !item.entry.is_sliced()) {
    RETURN_IF_ERROR(reader.ReadEntryInto(item.entry, dst.data()));
    t.shape = item.entry.shape;
  } else {
    ASSIGN_OR_RETURN(Tensor read, item.slice.has_value() ? reader.ReadSlice(item.entry.key, *item.slice)
                                                         : reader.ReadTensor(item.entry.key));
    if (read.data.size() != dst.size()) {
      return absl::InternalError(absl::StrCat("tensor \"", item.entry.key, "\": read ",
                                              read.data.size(), " bytes for a ", dst.size(),
                                              "-byte destination"));
    }
    std::memcpy(dst.data(), read.data.data(), dst.size());
    t.shape = std::move(read.shape);
  }
  // A view of the caller's memory: nothing to free.
  t.data = Buffer(std::shared_ptr<char>(dst.data(), [](char*) {}), dst.size());
  return t;
}


}  // namespace

absl::StatusOr<RestoredTensors> Client::Restore(const std::string& job,
                                                std::optional<int64_t> step,
                                                const RestoreRequest& request,
                                                const ProgressFn& progress,
                                                CheckpointSummary* restored_from) {
  absl::StatusOr<RestoredTensors> restored;
  absl::Status s = ReadCommitted(
      job, step,
      [&](const CheckpointSummary& ckpt) {
        restored = RestoreFromPrefix(ckpt.prefix_uri, request, rep_->options.restore_threads,
                                     progress, rep_->options.storage);
        return restored.status();
      },
      restored_from);
  if (!s.ok()) return s;
  return restored;
}

absl::Status Client::ReadCommitted(const std::string& job, std::optional<int64_t> step,
                                   const std::function<absl::Status(const CheckpointSummary&)>& fn,
                                   CheckpointSummary* read_from) {
  ASSIGN_OR_RETURN(CheckpointSummary ckpt, Get(job, step));
  if (ckpt.state != CheckpointState::kCommitted) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", job, "/", ckpt.step, " is ",
                                                      CheckpointStateName(ckpt.state), ", not committed"));
  }
  if (ckpt.prefix_uri.empty()) {
    return absl::InternalError(absl::StrCat(rep_->CoordinatorName(), " gave no prefix for ", job,
                                            "/", ckpt.step));
  }
  // Hold a lease on the resolved step while reading, so retention cannot
  // delete the files under us (released, best effort, on every path below),
  // and check the files are the committed ones.
  ASSIGN_OR_RETURN(internal::ScopedLease lease, internal::LeaseForRestore(this, ckpt, rep_->options.storage));
  absl::Status s = fn(ckpt);
  lease.Release();
  if (s.ok() && read_from != nullptr) *read_from = std::move(ckpt);
  return s;
}

absl::StatusOr<RestoredTensors> RestoreFromPrefix(absl::string_view prefix_uri,
                                                  const RestoreRequest& request, int threads,
                                                  const ProgressFn& progress_fn,
                                                  const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(prefix_uri));
  ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(split.root_uri, storage_options));
  BundleReaderOptions reader_options;
  reader_options.map_files = request.map_files;
  ASSIGN_OR_RETURN(std::unique_ptr<BundleReader> reader,
                   BundleReader::Open(storage.get(), split.prefix, reader_options));

  auto not_found = [&](const std::string& name) {
    return internal::TensorNotFound(name, prefix_uri);
  };
  ASSIGN_OR_RETURN(std::vector<RestoreItem> items, internal::PlanRestore(*reader, request, prefix_uri));
  // Destinations in the caller's memory: every name selected, every size
  // right, before anything is read or written. `items` is still in key order
  // here (the index's, or the set of names asked for): binary search.
  for (const auto& [name, dst] : request.into) {
    auto item = std::lower_bound(items.begin(), items.end(), name,
                                 [](const RestoreItem& i, const std::string& key) { return i.entry.key < key; });
    if (item == items.end() || item->entry.key != name) {
      if (request.tensors.empty()) return not_found(name);
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" has a destination but is not among the tensors requested"));
    }
    if (DataTypeSize(item->entry.data_type()) == 0) {  // strings, unknown dtypes
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" has dtype ", DataTypeName(item->entry.data_type()),
          ", which cannot be restored into caller memory"));
    }
    const std::vector<int64_t> out_shape =
        item->slice ? item->slice->SliceShape(item->entry.shape) : item->entry.shape;
    if (auto shape = request.into_shapes.find(name);
        shape != request.into_shapes.end() && shape->second != out_shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" is restored with the shape ", ShapeString(out_shape),
          " but its destination has the shape ", ShapeString(shape->second)));
    }
    if (auto dtypes = request.into_dtypes.find(name); dtypes != request.into_dtypes.end()) {
      const DataType dtype = item->entry.data_type();
      if (std::find(dtypes->second.begin(), dtypes->second.end(), dtype) == dtypes->second.end()) {
        std::vector<std::string> names;
        for (DataType d : dtypes->second) names.push_back(DataTypeName(d));
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", name, "\" has dtype ", DataTypeName(dtype),
            " but its destination holds ", absl::StrJoin(names, " or ")));
      }
    }
    if (dst.size() != item->cost) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" takes ", item->cost,
                                                     " bytes but its destination holds ", dst.size()));
    }
  }
  // Largest first, so the pool finishes together.
  std::stable_sort(items.begin(), items.end(),
                   [](const RestoreItem& a, const RestoreItem& b) { return a.cost > b.cost; });

  uint64_t total_cost = 0;
  for (const RestoreItem& item : items) total_cost += item.cost;
  internal::ProgressCounter progress(progress_fn, total_cost);
  progress.Begin();

  // Each worker takes the next item; the first error stops the others
  // before their next item and is the one reported.
  std::vector<Tensor> results(items.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  absl::Status first_error;
  auto work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      const size_t i = next.fetch_add(1);
      if (i >= items.size()) return;
      const RestoreItem& item = items[i];
      auto dst = request.into.find(item.entry.key);
      absl::StatusOr<Tensor> t =
          dst != request.into.end() ? ReadInto(*reader, item, dst->second)
          : item.slice.has_value() && item.entry.data_type() != DataType::kString
              ? reader->ReadSlice(item.entry.key, *item.slice)
              : reader->ReadTensor(item.entry.key);
      if (!t.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = t.status();
        failed.store(true);
        return;
      }
      results[i] = *std::move(t);
      progress.Add(item.cost);
    }
  };
  const size_t num_threads =
      std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), items.size());
  if (num_threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(num_threads - 1);
    for (size_t i = 1; i < num_threads; ++i) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
  }
  RETURN_IF_ERROR(first_error);
  progress.Finish();

  RestoredTensors out;
  for (size_t i = 0; i < items.size(); ++i) {
    RestoredTensor& r = out[items[i].entry.key];
    r.tensor = std::move(results[i]);
    r.full_shape = std::move(items[i].entry.shape);
    r.slice = std::move(items[i].slice);
  }
  return out;
}

}  // namespace cairn
