// Native halves of the manager's flattener (cairn/_state.py), for the shape
// most of a training state has: dicts whose values are torch tensors (a
// module's state_dict, an optimizer's per-parameter state). In Python these
// cost ~1 us per tensor to name and describe and another ~1 us to write as
// JSON, which a state of 10,000 small tensors notices (issue 15). Both
// functions produce exactly what the Python code does, and leave anything
// unusual to it.
#ifndef CAIRN_PYTHON_STRUCTURE_H_
#define CAIRN_PYTHON_STRUCTURE_H_

#include <pybind11/pybind11.h>

namespace cairn_python {

namespace py = pybind11;

// tensor_dict_entries(mapping, path, leaves, tensor_type, dtype_names,
//                     reserved) -> (entries, pending)
// The structure entries [kind, key, {"tensor": name, "torch": dtype}] of
// `mapping`'s values that are exactly `tensor_type`, their names (path/key,
// '%' and '/' escaped) added to `leaves`. Every other entry is
// [kind or None, key, None] with its index in `pending`, for the Python
// walk to fill: values of other types, keys that are not exactly str or
// int, names already taken (or `reserved`, or empty), dtypes not yet in
// `dtype_names` ({torch.dtype: "float32", ...}).
py::tuple TensorDictEntries(const py::handle& mapping, const py::str& path, const py::dict& leaves,
                            const py::handle& tensor_type, const py::dict& dtype_names,
                            const py::str& reserved);

// structure_json(value) -> str or None
// `value` (dicts with str keys, lists, tuples, str, int, bool, None, finite
// floats) as compact JSON: byte for byte the document json.dumps(value,
// separators=(",", ":")) gives (non-ASCII escaped as \uXXXX). None for
// anything else (the caller falls back to json.dumps).
py::object StructureJson(const py::handle& value);

void DefineStructure(py::module_& m);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_STRUCTURE_H_
