// Conversions between Python objects and the client library's types, and
// the module's error reporting (cairn_module.cc binds the classes).
#ifndef CAIRN_PYTHON_CONVERT_H_
#define CAIRN_PYTHON_CONVERT_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/client.h"

namespace cairn_python {

namespace py = pybind11;

// _cairn.Error, set when the module is initialised.
extern PyObject* g_error;

// Raises _cairn.Error: message "CODE: message", attribute `code` = "CODE".
[[noreturn]] void RaiseStatus(const absl::Status& status);
void Check(const absl::Status& status);
template <typename T>
T Unwrap(absl::StatusOr<T> result) {
  if (!result.ok()) RaiseStatus(result.status());
  return *std::move(result);
}
// Raises ValueError (bad arguments from Python).
[[noreturn]] void ValueError(const std::string& message);
// The new reference a Python C API call returned, or the error it set,
// raised (as error_already_set) when it returned null.
inline py::object Steal(PyObject* result) {
  if (result == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(result);
}

// Bytes of a tensor of `dtype` and `shape`; false for a negative dimension
// or a size past 2^64.
bool TensorBytes(cairn::DataType dtype, const std::vector<int64_t>& shape, uint64_t* bytes);
// The same, with ValueError "WHAT: bad shape" instead of false.
uint64_t TensorBytes(const std::string& what, cairn::DataType dtype,
                     const std::vector<int64_t>& shape);
// The TF dtype of a buffer element given its struct format and item size;
// kInvalid if the format is not one Cairn maps.
cairn::DataType DataTypeOfFormat(const std::string& format, ssize_t itemsize);
// `dtype` and the dtypes whose NumPy arrays hold their raw bits as `dtype`
// (uint16: bfloat16, quint16; uint8: float8s, quint8; ...): what a NumPy
// destination of that dtype accepts on restore.
std::vector<cairn::DataType> RawStorageOf(cairn::DataType dtype);
// The NumPy dtype of a Cairn dtype (ValueError if there is none).
py::dtype NumpyDtypeOf(cairn::DataType dtype);

// A Python buffer held while C++ reads it.
struct HeldTensor {
  std::unique_ptr<py::buffer_info> buffer;  // released with the GIL held
};
bool IsCContiguous(const py::buffer_info& info);
// Tensors of a save, from (name, array, dtype_name, full_shape, slice_text)
// tuples; their data views the held buffers, no copy. A string tensor is
// (name, [bytes or str, ...], "string", shape, None), shape [] for one value.
std::vector<cairn::SaveTensor> ToSaveTensors(const py::list& items, std::vector<HeldTensor>* held);
cairn::SaveShardOptions ToSaveOptions(const std::string& job, int64_t step, int shard,
                                      int num_shards, const std::map<std::string, double>& metrics);
py::dict SaveResultToDict(const cairn::SaveShardResult& r);

// Destinations restored into (Client.restore(into=...)): name -> (buffer,
// dtype name or None). The buffer's shape must be what is restored; its
// dtype the tensor's — given by name (a torch bfloat16 tensor's bits are
// an int16 buffer with dtype "bfloat16"), or from the buffer's format, when
// the raw-bits storage NumPy uses for a dtype it lacks is accepted too
// (uint16 for bfloat16). They come back as the caller's own objects.
using IntoMap = std::map<std::string, py::tuple>;
// A NumPy array owning (no copy) the tensor's buffer.
py::object ToArray(cairn::Tensor& tensor);
// {name: (array, full_shape, slice_text or None, dtype name)}
py::dict RestoredToDict(cairn::RestoredTensors restored, const std::optional<IntoMap>& into);
cairn::RestoreRequest ToRestoreRequest(const std::optional<std::vector<std::string>>& tensors,
                                       const std::optional<std::map<std::string, std::string>>& slices,
                                       bool map_files, const std::optional<IntoMap>& into);
py::dict SummaryToDict(const cairn::CheckpointSummary& s);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_CONVERT_H_
