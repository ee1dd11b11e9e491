// Many plain CPU torch tensors turned into save items in one native call.
//
// A state_dict of 10,000 small tensors spent most of its Python time making
// one save item per tensor (a dozen torch attribute reads and a detached
// alias each, ~2.7 us). TorchBlock does the same checks and reads from C++
// with the GIL held throughout, so no other thread can give a tensor new
// storage between reading its address and taking a reference to that
// storage (which keeps the bytes alive while the save reads them with the
// GIL released).
#ifndef CAIRN_PYTHON_TORCH_BLOCK_H_
#define CAIRN_PYTHON_TORCH_BLOCK_H_

#include <pybind11/pybind11.h>

#include <vector>

#include "client/client.h"

namespace cairn_python {

namespace py = pybind11;

// A save item (ToSaveTensors) holding many tensors: their SaveTensors, whose
// data point into storages `owners` keeps alive.
struct TorchBlock {
  std::vector<cairn::SaveTensor> tensors;
  py::list owners;
};

// torch_block(names, tensors, dtypes, strided, storage_of) -> (block, refused)
//   dtypes:     {torch.dtype: TensorFlow dtype name}
//   strided:    torch.strided
//   storage_of: the Tensor method giving a tensor's untyped storage
// A tensor goes into the block when it is on the CPU, strided, contiguous,
// of a dtype in `dtypes`, with no lazy negation (nor conjugation, if
// complex); `refused` lists the indices of the others, for the caller's
// general path (host copies, materialised views, messages).
py::tuple MakeTorchBlock(const py::list& names, const py::list& tensors, const py::dict& dtypes,
                         const py::object& strided, const py::object& storage_of);

void DefineTorchBlock(py::module_& m);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_TORCH_BLOCK_H_
