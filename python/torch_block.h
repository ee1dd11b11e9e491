// Many plain CPU torch tensors as one save item.
//
// A state_dict of 10,000 small tensors spent most of its Python time making
// one save item per tensor (a dozen torch attribute reads and a detached
// alias each, ~2.7 us). A TorchBlock does the same checks and reads from
// C++ with the GIL held throughout, so no other thread can give a tensor
// new storage between reading its address and taking a reference to that
// storage (which keeps the bytes alive while the save reads them with the
// GIL released). The manager's flattener (structure.h) adds the tensors of
// a state_dict to one block as it names them.
#ifndef CAIRN_PYTHON_TORCH_BLOCK_H_
#define CAIRN_PYTHON_TORCH_BLOCK_H_

#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

#include "client/client.h"

namespace cairn_python {

namespace py = pybind11;

class PySaveStream;

// _cairn.TorchBlock(dtypes, strided, storage_of)
//   dtypes:     {torch.dtype: TensorFlow dtype name}
//   strided:    torch.strided
//   storage_of: the Tensor method giving a tensor's untyped storage
// A save item (ToSaveTensors) holding many tensors: their SaveTensors, whose
// data point into storages the block keeps alive. One save's: the save
// takes its tensors (a second save of it is refused). Attached to a
// SaveStream (save_stream.h), it sends them there as it fills instead.
class TorchBlock {
 public:
  TorchBlock(const py::dict& dtypes, py::object strided, py::object storage_of);

  // Adds `t` (a torch tensor, `dtype` its torch.dtype) as `name` (a str)
  // when it is on the CPU, strided, contiguous, of a dtype in `dtypes`,
  // with no lazy negation (nor conjugation, if complex); false, nothing
  // added, for any other (the caller's general path: host copies,
  // materialised views, messages) and for a name that is not UTF-8.
  bool TryAdd(PyObject* t, PyObject* dtype, PyObject* name);

  // block.add(names, tensors) -> the indices of the tensors not added.
  py::list AddAll(const py::list& names, const py::list& tensors);

  size_t size() const { return tensors_.size(); }
  void Reserve(size_t n) { tensors_.reserve(tensors_.size() + n); }
  // The tensors not yet sent to a stream, for the save given this block;
  // ValueError the second time.
  std::vector<cairn::SaveTensor> Take();
  // Where Flush sends the tensors (nullptr: nowhere, they wait for Take).
  void SetSink(PySaveStream* sink) { sink_ = sink; }
  PySaveStream* sink() const { return sink_; }
  // Sends the tensors added since the last flush to the sink, once there
  // are enough of them to be worth a batch (or `all`).
  void Flush(bool all = false);

 private:
  cairn::DataType Find(PyObject* torch_dtype) const;
  // Moves out the tensors not yet sent or taken.
  std::vector<cairn::SaveTensor> TakeUnsent();

  std::vector<std::pair<PyObject*, cairn::DataType>> dtypes_;  // a handful
  py::dict dtypes_owner_;  // keeps the dtype objects of `dtypes_` alive
  py::object strided_;
  py::object storage_of_;
  std::vector<cairn::SaveTensor> tensors_;
  size_t sent_ = 0;  // tensors_[0, sent_) were moved out (to a stream)
  py::list owners_;
  bool taken_ = false;
  PySaveStream* sink_ = nullptr;
};

void DefineTorchBlock(py::module_& m);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_TORCH_BLOCK_H_
