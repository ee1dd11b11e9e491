// Native halves of the manager's flattener (cairn/_state.py), for the shape
// most of a training state has: dicts whose values are torch tensors (a
// module's state_dict, an optimizer's per-parameter state). In Python,
// naming and describing each tensor, making its save item and writing its
// JSON cost ~3 us a tensor, which a state of 10,000 small tensors notices
// (issue 15); here it is one pass that makes no Python object per tensor.
// Both functions produce exactly what the Python code does, and leave
// anything unusual to it.
#ifndef CAIRN_PYTHON_STRUCTURE_H_
#define CAIRN_PYTHON_STRUCTURE_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace cairn_python {

namespace py = pybind11;

// What tensor_dict_entries gives for a dict whose every entry it named: the
// entries as compact JSON, which structure_json writes as it is (no
// Python objects per entry). len() is the number of entries.
struct JsonText {
  std::string text;
  size_t entries = 0;
};

// tensor_dict_entries(mapping, path, names, leaves, tensor_type,
//                     dtype_names, reserved, block, world_size, rank)
//   -> (entries, pending)
// The structure entries [kind, key, {"tensor": name, "torch": dtype}] of
// `mapping`'s values that are exactly `tensor_type`, their names (path/key,
// '%' and '/' escaped) added to `names`. Such a tensor this rank writes
// (all of them when world_size is 1; else those _state._owner gives `rank`)
// goes into `block` (a TorchBlock) if it takes it, else into `leaves`
// {name: tensor} for the Python walk; one another rank writes is only
// named. Every other entry is [kind or None, key, value] with its index in
// `pending`, for the Python walk to decide: values of other types, keys
// that are not exactly str or int, names already taken (or `reserved`, or
// empty), dtypes not yet in `dtype_names` ({torch.dtype: "float32", ...}).
// With nothing pending (and at least one entry), `entries` is a JsonText.
py::tuple TensorDictEntries(const py::handle& mapping, const py::str& path, const py::set& names,
                            const py::dict& leaves, const py::handle& tensor_type,
                            const py::dict& dtype_names, const py::str& reserved,
                            const py::object& block, int64_t world_size, int64_t rank);

// structure_json(value) -> str or None
// `value` (dicts with str keys, lists, tuples, str, int, bool, None, finite
// floats, JsonText) as compact JSON: byte for byte the document json.dumps(value,
// separators=(",", ":")) gives (non-ASCII escaped as \uXXXX). None for
// anything else (the caller falls back to json.dumps).
py::object StructureJson(const py::handle& value);

void DefineStructure(py::module_& m);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_STRUCTURE_H_
