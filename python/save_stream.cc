#include "python/save_stream.h"

#include <string>
#include <utility>

#include "python/torch_block.h"

namespace cairn_python {

using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

PySaveStream::PySaveStream(std::unique_ptr<cairn::SaveStream> stream)
    : stream_(std::move(stream)) {}

PySaveStream::~PySaveStream() { Close(); }

void PySaveStream::CheckNotFinishing(const char* what) const {
  if (finishing_) ValueError(std::string("SaveStream.") + what + ": the stream is finishing");
}

void PySaveStream::Attach(py::object block) {
  CheckNotFinishing("attach");
  if (!stream_) ValueError("SaveStream.attach: the stream has ended");
  TorchBlock& b = block.cast<TorchBlock&>();
  if (b.sink() != nullptr) ValueError("SaveStream.attach: the block sends to a stream already");
  b.SetSink(this);
  attached_.push_back(&b);
  keep_.append(std::move(block));
}

void PySaveStream::AddTensors(std::vector<cairn::SaveTensor> tensors) {
  CheckNotFinishing("add");
  if (!stream_) ValueError("SaveStream.add: the stream has ended");
  Check(stream_->Add(std::move(tensors)));
}

void PySaveStream::AddItems(const py::list& items) {
  CheckNotFinishing("add");
  if (!stream_) ValueError("SaveStream.add: the stream has ended");
  keep_.append(items);
  std::vector<HeldTensor> held;
  std::vector<cairn::SaveTensor> tensors = ToSaveTensors(items, &held);
  for (HeldTensor& h : held) held_.push_back(std::move(h));
  AddTensors(std::move(tensors));
}

py::dict PySaveStream::Finish() {
  CheckNotFinishing("finish");
  if (!stream_) ValueError("SaveStream.finish: the stream has ended");
  // What the attached blocks still hold goes too: a block never given to
  // add() must not leave tensors behind in a save that commits.
  for (TorchBlock* b : attached_) b->Flush(/*all=*/true);
  Detach();
  // Another thread may run Python while the GIL is released below: it
  // finds the stream finishing, and keep_/held_ in place.
  finishing_ = true;
  std::unique_ptr<cairn::SaveStream> stream = std::move(stream_);
  absl::StatusOr<cairn::SaveShardResult> result;
  {
    py::gil_scoped_release release;
    result = stream->Finish();
    stream.reset();
  }
  finishing_ = false;
  held_.clear();  // released with the GIL held
  keep_ = py::list();
  return SaveResultToDict(Unwrap(std::move(result)));
}

void PySaveStream::Close() {
  if (finishing_) return;  // the finishing call cleans up
  Detach();
  if (stream_) {
    std::unique_ptr<cairn::SaveStream> stream = std::move(stream_);
    py::gil_scoped_release release;
    stream.reset();  // abandons the save: the writer sees it cancelled
  }
  held_.clear();
  keep_ = py::list();
}

void PySaveStream::Detach() {
  for (TorchBlock* b : attached_) b->SetSink(nullptr);
  attached_.clear();
}

void DefineSaveStream(py::module_& m) {
  py::class_<PySaveStream>(m, "SaveStream")
      .def("attach", &PySaveStream::Attach, "block"_a)
      .def("add", &PySaveStream::AddItems, "items"_a)
      .def("finish", &PySaveStream::Finish)
      .def("close", &PySaveStream::Close);
}

}  // namespace cairn_python
