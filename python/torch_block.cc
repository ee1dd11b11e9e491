#include "python/torch_block.h"

#include <cstdint>
#include <iterator>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "python/convert.h"
#include "python/save_stream.h"
#include "storage/bundle/dtype.h"

namespace cairn_python {

using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

namespace {

struct Names {
  py::str dtype{"dtype"}, is_cpu{"is_cpu"}, layout{"layout"}, is_contiguous{"is_contiguous"},
      is_neg{"is_neg"}, is_conj{"is_conj"}, data_ptr{"data_ptr"}, shape{"shape"};
};
const Names& N() {
  static const Names* const names = new Names();
  return *names;
}

py::object Attr(PyObject* self, const py::str& name) {
  return Steal(PyObject_GetAttr(self, name.ptr()));
}
py::object CallMethod(PyObject* self, const py::str& name) {
  return Steal(PyObject_CallMethodObjArgs(self, name.ptr(), nullptr));
}
bool IsTrue(const py::object& value) { return value.ptr() == Py_True; }

int64_t ToInt64(PyObject* value) {
  const long long v = PyLong_AsLongLong(value);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool IsComplex(cairn::DataType dtype) {
  return dtype == cairn::DataType::kComplex64 || dtype == cairn::DataType::kComplex128;
}

}  // namespace

TorchBlock::TorchBlock(const py::dict& dtypes, py::object strided, py::object storage_of)
    : dtypes_owner_(dtypes), strided_(std::move(strided)), storage_of_(std::move(storage_of)) {
  for (const auto& [torch_dtype, tf_name] : dtypes) {
    cairn::DataType dtype;
    if (!cairn::DataTypeFromName(tf_name.cast<std::string>(), &dtype) ||
        cairn::DataTypeSize(dtype) == 0) {
      ValueError(absl::StrCat("TorchBlock: unknown dtype ", tf_name.cast<std::string>()));
    }
    dtypes_.emplace_back(torch_dtype.ptr(), dtype);
  }
}

cairn::DataType TorchBlock::Find(PyObject* torch_dtype) const {
  for (const auto& [key, dtype] : dtypes_) {
    if (key == torch_dtype) return dtype;
  }
  return cairn::DataType::kInvalid;
}

bool TorchBlock::TryAdd(PyObject* t, PyObject* torch_dtype, PyObject* name) {
  const cairn::DataType dtype = Find(torch_dtype);
  if (dtype == cairn::DataType::kInvalid || !IsTrue(Attr(t, N().is_cpu)) ||
      !Attr(t, N().layout).is(strided_) || !IsTrue(CallMethod(t, N().is_contiguous)) ||
      IsTrue(CallMethod(t, N().is_neg)) ||
      (IsComplex(dtype) && IsTrue(CallMethod(t, N().is_conj)))) {
    return false;
  }
  Py_ssize_t name_size = 0;
  const char* name_utf8 = PyUnicode_AsUTF8AndSize(name, &name_size);
  if (name_utf8 == nullptr) {  // a lone surrogate: the general path says so
    PyErr_Clear();
    return false;
  }
  const py::object shape = Attr(t, N().shape);
  if (!PyTuple_Check(shape.ptr())) return false;
  cairn::SaveTensor out;
  out.dtype = dtype;
  const Py_ssize_t rank = PyTuple_GET_SIZE(shape.ptr());
  out.shape.resize(static_cast<size_t>(rank));
  for (Py_ssize_t d = 0; d < rank; ++d) {
    out.shape[static_cast<size_t>(d)] = ToInt64(PyTuple_GET_ITEM(shape.ptr(), d));
  }
  uint64_t nbytes;
  if (!TensorBytes(dtype, out.shape, &nbytes)) return false;
  out.name.assign(name_utf8, static_cast<size_t>(name_size));
  // Storage first, then the address in it: with the GIL held all along,
  // both are of the same storage.
  owners_.append(Steal(PyObject_CallOneArg(storage_of_.ptr(), t)));
  const auto address = static_cast<uintptr_t>(ToInt64(CallMethod(t, N().data_ptr).ptr()));
  out.data = absl::string_view(reinterpret_cast<const char*>(address), nbytes);
  tensors_.push_back(std::move(out));
  return true;
}

py::list TorchBlock::AddAll(const py::list& names, const py::list& tensors) {
  if (names.size() != tensors.size()) ValueError("TorchBlock.add: names and tensors differ in length");
  Reserve(tensors.size());
  py::list refused;
  for (size_t i = 0; i < tensors.size(); ++i) {
    PyObject* t = PyList_GET_ITEM(tensors.ptr(), i);
    PyObject* name = PyList_GET_ITEM(names.ptr(), i);
    if (!PyUnicode_Check(name)) ValueError("TorchBlock.add: names are str");
    if (!TryAdd(t, Attr(t, N().dtype).ptr(), name)) refused.append(i);
  }
  return refused;
}

std::vector<cairn::SaveTensor> TorchBlock::TakeUnsent() {
  std::vector<cairn::SaveTensor> unsent(std::make_move_iterator(tensors_.begin() + sent_),
                                        std::make_move_iterator(tensors_.end()));
  sent_ = tensors_.size();
  return unsent;
}

std::vector<cairn::SaveTensor> TorchBlock::Take() {
  if (taken_) ValueError("internal: a TorchBlock is one save's, and was saved already");
  taken_ = true;
  return TakeUnsent();
}

void TorchBlock::Flush(bool all) {
  // A few hundred at a time: a batch's worth, and the lock and wake-up of
  // the stream's thread spread thin.
  constexpr size_t kFlushEvery = 256;
  if (sink_ == nullptr || tensors_.size() - sent_ < (all ? 1 : kFlushEvery)) return;
  sink_->AddTensors(TakeUnsent());
}

void DefineTorchBlock(py::module_& m) {
  py::class_<TorchBlock>(m, "TorchBlock")
      .def(py::init<const py::dict&, py::object, py::object>(), "dtypes"_a, "strided"_a,
           "storage_of"_a)
      .def("add", &TorchBlock::AddAll, "names"_a, "tensors"_a)
      .def("__len__", &TorchBlock::size);
}

}  // namespace cairn_python
