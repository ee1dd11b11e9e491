#include "client/internal/restore_plan.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

absl::Status TensorNotFound(const std::string& name, absl::string_view prefix_uri) {
  return absl::NotFoundError(
      absl::StrCat("tensor \"", name, "\" not found in checkpoint ", prefix_uri));
}

absl::StatusOr<std::vector<RestoreItem>> PlanRestore(const BundleReader& reader,
                                                    const RestoreRequest& request,
                                                    absl::string_view prefix_uri) {
  auto not_found = [&](const std::string& name) { return TensorNotFound(name, prefix_uri); };
  std::vector<BundleEntry> entries;
  if (request.tensors.empty()) {
    ASSIGN_OR_RETURN(entries, reader.ListTensors());
    std::set<std::string> present;
    for (const BundleEntry& e : entries) present.insert(e.key);
    for (const auto& wanted : request.slices) {
      if (!present.count(wanted.first)) return not_found(wanted.first);
    }
  } else {
    std::set<std::string> names(request.tensors.begin(), request.tensors.end());
    for (const auto& wanted : request.slices) names.insert(wanted.first);
    for (const std::string& name : names) {
      absl::StatusOr<BundleEntry> e = reader.Lookup(name);
      if (absl::IsNotFound(e.status())) return not_found(name);
      if (!e.ok()) return e.status();
      entries.push_back(*std::move(e));
    }
  }

  for (const auto& [name, shape] : request.full_shapes) {
    auto e = std::find_if(entries.begin(), entries.end(),
                          [&name = name](const BundleEntry& b) { return b.key == name; });
    if (e == entries.end()) return not_found(name);
    if (e->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" was asked for with the full shape ", ShapeString(shape),
          " but its shape is ", ShapeString(e->shape), " in checkpoint ", prefix_uri));
    }
  }

  std::vector<RestoreItem> items;
  items.reserve(entries.size());
  for (BundleEntry& e : entries) {
    RestoreItem item;
    auto wanted = request.slices.find(e.key);
    std::vector<int64_t> out_shape = e.shape;
    if (wanted != request.slices.end()) {
      const TensorSlice& slice = wanted->second;
      absl::Status fits = slice.CheckFits(e.shape);
      if (!fits.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice \"", slice.ToString(), "\" of tensor \"", e.key, "\" does not fit its shape ",
            ShapeString(e.shape), " in checkpoint ", prefix_uri, ": ", fits.message()));
      }
      if (e.data_type() == DataType::kString && !slice.CoversAll(e.shape)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", e.key, "\" holds strings, which are restored whole; the slice \"",
                         slice.ToString(), "\" cannot be cut from it"));
      }
      item.slice = slice;
      out_shape = slice.SliceShape(e.shape);
    }
    int64_t n = 0;
    NumElements(out_shape, &n);
    item.cost = static_cast<uint64_t>(n) * std::max<size_t>(DataTypeSize(e.data_type()), 1);
    item.entry = std::move(e);
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace internal
}  // namespace cairn
