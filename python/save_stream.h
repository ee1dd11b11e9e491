// _cairn.SaveStream: a save fed while it streams (cairn::SaveStream), for
// the manager's synchronous saves: the tensors of a state_dict go to the
// shard writer while the rest of the state is still being walked.
//
//   stream = client.save_stream(job, step, shard, num_shards, metrics)
//   stream.attach(block)    # a TorchBlock: its tensors are sent as it fills
//   stream.add(items)       # save items (ToSaveTensors), kept alive
//   stream.finish()         # GIL released; the result dict of Client.save
//   stream.close()          # abandons the save unless finished
#ifndef CAIRN_PYTHON_SAVE_STREAM_H_
#define CAIRN_PYTHON_SAVE_STREAM_H_

#include <pybind11/pybind11.h>

#include <memory>
#include <vector>

#include "client/client.h"
#include "python/convert.h"

namespace cairn_python {

namespace py = pybind11;

class TorchBlock;

class PySaveStream {
 public:
  explicit PySaveStream(std::unique_ptr<cairn::SaveStream> stream);
  ~PySaveStream();

  // The block sends its tensors here as it fills (TorchBlock::Flush), and
  // finish() sends the rest; the stream keeps it alive until it ends.
  void Attach(py::object block);
  void AddItems(const py::list& items);
  // Tensors whose memory the caller keeps alive until the stream ends.
  void AddTensors(std::vector<cairn::SaveTensor> tensors);
  py::dict Finish();
  void Close();

 private:
  void Detach();

  // Refuses a call while another thread's finish() runs (it released the
  // GIL; the memory it sends must stay).
  void CheckNotFinishing(const char* what) const;

  std::unique_ptr<cairn::SaveStream> stream_;
  bool finishing_ = false;
  py::list keep_;  // items and blocks given: their memory is being sent
  std::vector<TorchBlock*> attached_;
  std::vector<HeldTensor> held_;
};

void DefineSaveStream(py::module_& m);

}  // namespace cairn_python

#endif  // CAIRN_PYTHON_SAVE_STREAM_H_
