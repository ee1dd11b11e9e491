#include "python/torch_block.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "python/convert.h"
#include "storage/bundle/dtype.h"

namespace cairn_python {

using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

namespace {

py::object CallMethod(PyObject* self, PyObject* name) {
  return Steal(PyObject_CallMethodObjArgs(self, name, nullptr));
}

bool IsTrue(const py::object& value) { return value.ptr() == Py_True; }

int64_t ToInt64(const py::object& value) {
  const long long v = PyLong_AsLongLong(value.ptr());
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

struct Names {
  py::str dtype{"dtype"}, is_cpu{"is_cpu"}, layout{"layout"}, is_contiguous{"is_contiguous"},
      is_neg{"is_neg"}, is_conj{"is_conj"}, data_ptr{"data_ptr"}, shape{"shape"};
};

// The dtypes of the block: torch dtype object -> Cairn dtype (a handful).
struct DtypeTable {
  std::vector<std::pair<PyObject*, cairn::DataType>> entries;

  explicit DtypeTable(const py::dict& dtypes) {
    for (const auto& [torch_dtype, tf_name] : dtypes) {
      cairn::DataType dtype;
      if (!cairn::DataTypeFromName(tf_name.cast<std::string>(), &dtype) ||
          cairn::DataTypeSize(dtype) == 0) {
        ValueError(absl::StrCat("torch_block: unknown dtype ", tf_name.cast<std::string>()));
      }
      entries.emplace_back(torch_dtype.ptr(), dtype);
    }
  }
  cairn::DataType Find(PyObject* torch_dtype) const {
    for (const auto& [key, dtype] : entries) {
      if (key == torch_dtype) return dtype;
    }
    return cairn::DataType::kInvalid;
  }
};

bool IsComplex(cairn::DataType dtype) {
  return dtype == cairn::DataType::kComplex64 || dtype == cairn::DataType::kComplex128;
}

}  // namespace

py::tuple MakeTorchBlock(const py::list& names, const py::list& tensors, const py::dict& dtypes,
                         const py::object& strided, const py::object& storage_of) {
  if (names.size() != tensors.size()) ValueError("torch_block: names and tensors differ in length");
  static const Names* const kNames = new Names();
  const DtypeTable table(dtypes);
  auto block = std::make_unique<TorchBlock>();
  block->tensors.reserve(tensors.size());
  py::list refused;
  for (size_t i = 0; i < tensors.size(); ++i) {
    PyObject* t = PyList_GET_ITEM(tensors.ptr(), i);
    const cairn::DataType dtype = table.Find(Steal(PyObject_GetAttr(t, kNames->dtype.ptr())).ptr());
    if (dtype == cairn::DataType::kInvalid ||
        !IsTrue(Steal(PyObject_GetAttr(t, kNames->is_cpu.ptr()))) ||
        !Steal(PyObject_GetAttr(t, kNames->layout.ptr())).is(strided) ||
        !IsTrue(CallMethod(t, kNames->is_contiguous.ptr())) ||
        IsTrue(CallMethod(t, kNames->is_neg.ptr())) ||
        (IsComplex(dtype) && IsTrue(CallMethod(t, kNames->is_conj.ptr())))) {
      refused.append(i);
      continue;
    }
    cairn::SaveTensor out;
    out.name = names[i].cast<std::string>();
    out.dtype = dtype;
    const std::string what = absl::StrCat("tensor \"", out.name, "\"");
    const py::object shape = Steal(PyObject_GetAttr(t, kNames->shape.ptr()));
    if (!PyTuple_Check(shape.ptr())) ValueError(absl::StrCat(what, ": bad shape"));
    out.shape.reserve(PyTuple_GET_SIZE(shape.ptr()));
    for (Py_ssize_t d = 0; d < PyTuple_GET_SIZE(shape.ptr()); ++d) {
      out.shape.push_back(
          ToInt64(py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(shape.ptr(), d))));
    }
    const uint64_t nbytes = TensorBytes(what, dtype, out.shape);
    // Storage first, then the address in it: with the GIL held all along,
    // both are of the same storage.
    block->owners.append(Steal(PyObject_CallOneArg(storage_of.ptr(), t)));
    const auto address = static_cast<uintptr_t>(ToInt64(CallMethod(t, kNames->data_ptr.ptr())));
    out.data = absl::string_view(reinterpret_cast<const char*>(address), nbytes);
    block->tensors.push_back(std::move(out));
  }
  return py::make_tuple(py::cast(std::move(block)), refused);
}

void DefineTorchBlock(py::module_& m) {
  py::class_<TorchBlock>(m, "TorchBlock")
      .def("__len__", [](const TorchBlock& b) { return b.tensors.size(); });
  m.def("torch_block", &MakeTorchBlock, "names"_a, "tensors"_a, "dtypes"_a, "strided"_a,
        "storage_of"_a);
}

}  // namespace cairn_python
