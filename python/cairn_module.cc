// _cairn: the pybind11 binding of the Cairn client library (client/client.h).
// The Pythonic layer is python/cairn/__init__.py; this module stays close to
// the C++ API.
//
// Save: tensors arrive as objects exposing the buffer protocol (NumPy arrays,
// memoryviews, bytes, ...). They must be C-contiguous and native/little-endian;
// the module passes an absl::string_view over their memory, no copy. The
// buffers are held (PyBuffer) until SaveShard returns, or until
// SaveShardAsync has copied them into its staging buffers.
//
// Restore: each tensor's cairn::Buffer is moved into a heap object owned by a
// py::capsule that is the base of the returned NumPy array: no copy.
//
// Network calls run with the GIL released. Errors raise _cairn.Error (a
// RuntimeError) whose message is the C++ status ("NOT_FOUND: ...") and whose
// `code` attribute is the status code name ("NOT_FOUND").
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/client.h"
#include "storage/bundle/dtype.h"
#include "storage/bundle/tensor.h"
#include "storage/bundle/tensor_slice.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

PyObject* g_error = nullptr;  // _cairn.Error

[[noreturn]] void RaiseStatus(const absl::Status& status) {
  py::object type = py::reinterpret_borrow<py::object>(g_error);
  py::object exc = type(py::str(status.ToString()));
  exc.attr("code") = py::str(absl::StatusCodeToString(status.code()));
  PyErr_SetObject(g_error, exc.ptr());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) RaiseStatus(status);
}

template <typename T>
T Unwrap(absl::StatusOr<T> result) {
  if (!result.ok()) RaiseStatus(result.status());
  return *std::move(result);
}

[[noreturn]] void ValueError(const std::string& message) { throw py::value_error(message); }

// ---------------------------------------------------------------- dtypes

// The TF dtype of a buffer element given its struct format and item size.
// Returns kInvalid if the format is not one Cairn maps.
cairn::DataType DataTypeOfFormat(const std::string& format_in, ssize_t itemsize) {
  std::string format = format_in;
  if (!format.empty() && (format[0] == '@' || format[0] == '=' || format[0] == '<')) {
    format = format.substr(1);
  }
  if (format == "Zf" && itemsize == 8) return cairn::DataType::kComplex64;
  if (format == "Zd" && itemsize == 16) return cairn::DataType::kComplex128;
  if (format.size() != 1) return cairn::DataType::kInvalid;  // '>' big-endian, structs, ...
  switch (format[0]) {
    case '?': return itemsize == 1 ? cairn::DataType::kBool : cairn::DataType::kInvalid;
    case 'e': return cairn::DataType::kHalf;
    case 'f': return cairn::DataType::kFloat;
    case 'd': return cairn::DataType::kDouble;
    case 'b': case 'h': case 'i': case 'l': case 'q':
      switch (itemsize) {
        case 1: return cairn::DataType::kInt8;
        case 2: return cairn::DataType::kInt16;
        case 4: return cairn::DataType::kInt32;
        case 8: return cairn::DataType::kInt64;
      }
      break;
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'c':
      switch (itemsize) {
        case 1: return cairn::DataType::kUint8;
        case 2: return cairn::DataType::kUint16;
        case 4: return cairn::DataType::kUint32;
        case 8: return cairn::DataType::kUint64;
      }
      break;
  }
  return cairn::DataType::kInvalid;
}

// The NumPy dtype a restored tensor is returned as. bfloat16 and the float8
// types have no NumPy dtype: they come back as their raw storage (uint16 /
// uint8); quantized types as their storage integer type.
py::dtype NumpyDtypeOf(cairn::DataType dtype) {
  using cairn::DataType;
  switch (dtype) {
    case DataType::kHalf: return py::dtype("float16");
    case DataType::kFloat: return py::dtype("float32");
    case DataType::kDouble: return py::dtype("float64");
    case DataType::kInt8: case DataType::kQint8: return py::dtype("int8");
    case DataType::kInt16: case DataType::kQint16: return py::dtype("int16");
    case DataType::kInt32: case DataType::kQint32: return py::dtype("int32");
    case DataType::kInt64: return py::dtype("int64");
    case DataType::kUint8: case DataType::kQuint8: return py::dtype("uint8");
    case DataType::kUint16: case DataType::kQuint16: case DataType::kBfloat16:
      return py::dtype("uint16");
    case DataType::kUint32: return py::dtype("uint32");
    case DataType::kUint64: return py::dtype("uint64");
    case DataType::kBool: return py::dtype("bool");
    case DataType::kComplex64: return py::dtype("complex64");
    case DataType::kComplex128: return py::dtype("complex128");
    case DataType::kFloat8E5M2: case DataType::kFloat8E4M3FN: return py::dtype("uint8");
    default:
      break;
  }
  ValueError(absl::StrCat("tensor dtype ", cairn::DataTypeName(dtype), " has no NumPy equivalent"));
}

// ---------------------------------------------------------------- save

// One tensor to save, with the Python buffer it borrows.
struct HeldTensor {
  std::unique_ptr<py::buffer_info> buffer;  // released with the GIL held
};

bool IsCContiguous(const py::buffer_info& info) {
  ssize_t expected = info.itemsize;
  for (ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] != 1 && info.strides[d] != expected) return false;
    expected *= info.shape[d];
  }
  return true;
}

// Converts the Python tensor list into SaveTensors. Each item is a tuple
// (name, buffer, dtype_name or None, full_shape or None, slice_text or None).
std::vector<cairn::SaveTensor> ToSaveTensors(const py::list& items, std::vector<HeldTensor>* held) {
  std::vector<cairn::SaveTensor> out;
  out.reserve(items.size());
  held->reserve(items.size());
  for (const py::handle& item_handle : items) {
    py::tuple item = py::reinterpret_borrow<py::object>(item_handle).cast<py::tuple>();
    if (item.size() != 5) ValueError("internal: tensor item must be a 5-tuple");
    cairn::SaveTensor t;
    t.name = item[0].cast<std::string>();
    const std::string what = absl::StrCat("tensor \"", t.name, "\"");
    py::object obj = item[1];
    if (!PyObject_CheckBuffer(obj.ptr())) {
      throw py::type_error(absl::StrCat(what, ": ", std::string(py::str(obj.get_type())),
                                        " does not expose the buffer protocol"));
    }
    auto info = std::make_unique<py::buffer_info>(obj.cast<py::buffer>().request());
    if (!IsCContiguous(*info)) {
      ValueError(absl::StrCat(what, ": the array is not C-contiguous (use numpy.ascontiguousarray)"));
    }
    cairn::DataType from_format = DataTypeOfFormat(info->format, info->itemsize);
    if (!item[2].is_none()) {
      std::string name = item[2].cast<std::string>();
      if (!cairn::DataTypeFromName(name, &t.dtype) || t.dtype == cairn::DataType::kString) {
        ValueError(absl::StrCat(what, ": unknown dtype \"", name, "\""));
      }
      if (static_cast<size_t>(info->itemsize) != cairn::DataTypeSize(t.dtype)) {
        ValueError(absl::StrCat(what, ": dtype ", name, " has ", cairn::DataTypeSize(t.dtype),
                                "-byte elements but the buffer's items have ", info->itemsize,
                                " bytes (give bfloat16 as uint16 storage)"));
      }
    } else {
      t.dtype = from_format;
      if (t.dtype == cairn::DataType::kInvalid) {
        ValueError(absl::StrCat(what, ": unsupported element format \"", info->format,
                                "\" (itemsize ", info->itemsize,
                                "); give dtype=... explicitly, e.g. \"bfloat16\" over uint16"));
      }
    }
    std::vector<int64_t> buffer_shape(info->shape.begin(), info->shape.end());
    if (item[3].is_none()) {
      if (!item[4].is_none()) ValueError(absl::StrCat(what, ": a slice needs the full shape"));
      t.shape = buffer_shape;
    } else {
      t.shape = item[3].cast<std::vector<int64_t>>();
      if (item[4].is_none()) ValueError(absl::StrCat(what, ": a full shape needs a slice"));
      absl::StatusOr<cairn::TensorSlice> slice =
          cairn::TensorSlice::Parse(item[4].cast<std::string>());
      if (!slice.ok()) RaiseStatus(slice.status());
      t.slice = *std::move(slice);
    }
    t.data = absl::string_view(static_cast<const char*>(info->ptr),
                               static_cast<size_t>(info->size * info->itemsize));
    out.push_back(std::move(t));
    held->push_back(HeldTensor{std::move(info)});
  }
  return out;
}

cairn::SaveShardOptions ToSaveOptions(const std::string& job, int64_t step, int shard,
                                      int num_shards, const std::map<std::string, double>& metrics) {
  cairn::SaveShardOptions o;
  o.job = job;
  o.step = step;
  o.shard_index = shard;
  o.num_shards = num_shards;
  o.metrics = metrics;
  return o;
}

py::dict SaveResultToDict(const cairn::SaveShardResult& r) {
  py::dict d;
  d["committed"] = r.committed;
  d["bytes"] = r.bytes;
  d["num_tensors"] = r.num_tensors;
  return d;
}

// ---------------------------------------------------------------- restore

py::object ToArray(cairn::Tensor& tensor) {
  std::vector<ssize_t> shape(tensor.shape.begin(), tensor.shape.end());
  if (tensor.dtype == cairn::DataType::kString) {
    py::list values;
    for (const std::string& s : tensor.strings) values.append(py::bytes(s));
    py::module_ np = py::module_::import("numpy");
    return np.attr("array")(values, "dtype"_a = "object").attr("reshape")(shape);
  }
  py::dtype dtype = NumpyDtypeOf(tensor.dtype);
  if (tensor.data.size() == 0) return py::array(dtype, shape);
  auto* owned = new cairn::Buffer(std::move(tensor.data));
  py::capsule base(owned, [](void* p) { delete static_cast<cairn::Buffer*>(p); });
  return py::array(dtype, shape, {}, owned->data(), base);
}

// {name: (array, full_shape, slice_text or None)}
// Destinations restored into (Client.restore(into=...)) come back as the
// caller's own objects.
using IntoMap = std::map<std::string, py::buffer>;

py::dict RestoredToDict(cairn::RestoredTensors restored, const std::optional<IntoMap>& into) {
  py::dict out;
  for (auto& [name, r] : restored) {
    py::object slice = r.slice ? py::object(py::str(r.slice->ToString())) : py::object(py::none());
    py::object value;
    if (into && into->count(name)) {
      value = into->at(name);
    } else {
      value = ToArray(r.tensor);
    }
    out[py::str(name)] = py::make_tuple(value, py::tuple(py::cast(r.full_shape)), slice);
  }
  return out;
}

cairn::RestoreRequest ToRestoreRequest(const std::optional<std::vector<std::string>>& tensors,
                                       const std::optional<std::map<std::string, std::string>>& slices,
                                       bool map_files, const std::optional<IntoMap>& into) {
  cairn::RestoreRequest request;
  request.map_files = map_files;
  if (into) {
    for (const auto& [name, buffer] : *into) {
      py::buffer_info info = buffer.request(/*writable=*/true);
      ssize_t expect = info.itemsize;
      for (ssize_t i = info.ndim - 1; i >= 0; --i) {
        if (info.strides[i] != expect) {
          throw std::invalid_argument("into[\"" + name + "\"] must be C-contiguous");
        }
        expect *= info.shape[i];
      }
      request.into[name] = absl::Span<char>(static_cast<char*>(info.ptr),
                                            static_cast<size_t>(info.size * info.itemsize));
    }
  }
  if (tensors) request.tensors = *tensors;
  if (slices) {
    for (const auto& [name, text] : *slices) {
      request.slices[name] = Unwrap(cairn::TensorSlice::Parse(text));
    }
  }
  return request;
}

py::dict SummaryToDict(const cairn::CheckpointSummary& s) {
  py::dict d;
  d["job"] = s.job;
  d["step"] = s.step;
  d["state"] = s.state;
  d["num_shards"] = s.num_shards;
  d["created_at_micros"] = s.created_at_micros;
  d["committed_at_micros"] = s.committed_at_micros;
  d["bytes"] = s.bytes;
  d["metrics"] = s.metrics;
  d["pinned"] = s.pinned;
  d["kept_by"] = s.kept_by;
  d["prefix_uri"] = s.prefix_uri;
  py::list files;
  for (const cairn::CheckpointFile& f : s.files) {
    py::dict fd;
    fd["path"] = f.path;
    fd["size"] = f.size;
    fd["crc32c"] = f.crc32c;
    files.append(fd);
  }
  d["files"] = files;
  return d;
}

// ---------------------------------------------------------------- classes

class PySaveHandle {
 public:
  explicit PySaveHandle(std::unique_ptr<cairn::SaveHandle> handle) : handle_(std::move(handle)) {}
  py::dict Wait() {
    absl::StatusOr<cairn::SaveShardResult> result;
    {
      py::gil_scoped_release release;
      result = handle_->Wait();
    }
    return SaveResultToDict(Unwrap(std::move(result)));
  }
  bool Done() const { return handle_->Done(); }
  int64_t DurableAfterMicros() const { return handle_->durable_after_micros(); }

 private:
  std::unique_ptr<cairn::SaveHandle> handle_;
};

class PyClient {
 public:
  static std::unique_ptr<PyClient> Connect(const std::string& coordinator, const std::string& token,
                                           const std::string& tls_ca, const std::string& tls_cert,
                                           const std::string& tls_key, int64_t rpc_timeout_ms,
                                           int64_t save_timeout_ms, int restore_threads) {
    cairn::ClientOptions options;
    options.coordinator = coordinator;
    options.token = token;
    options.tls.ca_file = tls_ca;
    options.tls.cert_file = tls_cert;
    options.tls.key_file = tls_key;
    options.rpc_timeout_ms = rpc_timeout_ms;
    options.save_timeout_ms = save_timeout_ms;
    options.restore_threads = restore_threads;
    absl::StatusOr<std::unique_ptr<cairn::Client>> client;
    {
      py::gil_scoped_release release;
      client = cairn::Client::Connect(options);
    }
    return std::unique_ptr<PyClient>(new PyClient(Unwrap(std::move(client))));
  }

  py::dict Save(const std::string& job, int64_t step, int shard, int num_shards,
                const py::list& tensors, const std::map<std::string, double>& metrics) {
    std::vector<HeldTensor> held;
    std::vector<cairn::SaveTensor> save = ToSaveTensors(tensors, &held);
    cairn::SaveShardOptions options = ToSaveOptions(job, step, shard, num_shards, metrics);
    absl::StatusOr<cairn::SaveShardResult> result;
    {
      py::gil_scoped_release release;
      result = client_->SaveShard(options, save);
    }
    return SaveResultToDict(Unwrap(std::move(result)));  // `held` released here, GIL held
  }

  std::unique_ptr<PySaveHandle> SaveAsync(const std::string& job, int64_t step, int shard,
                                          int num_shards, const py::list& tensors,
                                          const std::map<std::string, double>& metrics) {
    std::vector<HeldTensor> held;
    std::vector<cairn::SaveTensor> save = ToSaveTensors(tensors, &held);
    cairn::SaveShardOptions options = ToSaveOptions(job, step, shard, num_shards, metrics);
    absl::StatusOr<std::unique_ptr<cairn::SaveHandle>> handle;
    {
      // Returns once the tensors are copied into staging buffers: the caller
      // may modify its arrays afterwards.
      py::gil_scoped_release release;
      handle = client_->SaveShardAsync(options, save);
    }
    return std::make_unique<PySaveHandle>(Unwrap(std::move(handle)));
  }

  py::list List(const std::string& job) {
    absl::StatusOr<std::vector<cairn::CheckpointSummary>> result;
    {
      py::gil_scoped_release release;
      result = client_->List(job);
    }
    py::list out;
    for (const cairn::CheckpointSummary& s : Unwrap(std::move(result))) out.append(SummaryToDict(s));
    return out;
  }

  py::dict Get(const std::string& job, std::optional<int64_t> step) {
    absl::StatusOr<cairn::CheckpointSummary> result;
    {
      py::gil_scoped_release release;
      result = client_->Get(job, step);
    }
    return SummaryToDict(Unwrap(std::move(result)));
  }

  py::dict Restore(const std::string& job, std::optional<int64_t> step,
                   const std::optional<std::vector<std::string>>& tensors,
                   const std::optional<std::map<std::string, std::string>>& slices,
                   bool map_files, const std::optional<IntoMap>& into) {
    cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, map_files, into);
    absl::StatusOr<cairn::RestoredTensors> result;
    {
      py::gil_scoped_release release;
      result = client_->Restore(job, step, request);
    }
    return RestoredToDict(Unwrap(std::move(result)), into);
  }

  void Pin(const std::string& job, int64_t step, bool pinned) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->Pin(job, step, pinned);
    }
    Check(status);
  }

  void SetPolicy(const std::string& job, int64_t keep_last, int64_t keep_every_steps,
                 double keep_every_hours, int64_t keep_best, const std::string& metric,
                 bool maximize) {
    cairn::RetentionPolicy policy;
    policy.keep_last = keep_last;
    policy.keep_every_steps = keep_every_steps;
    policy.keep_every_hours = keep_every_hours;
    policy.keep_best = keep_best;
    policy.metric = metric;
    policy.maximize = maximize;
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->SetPolicy(job, policy);
    }
    Check(status);
  }

  py::dict Gc(const std::string& job, bool dry_run) {
    absl::StatusOr<cairn::GcResult> result;
    {
      py::gil_scoped_release release;
      result = client_->Gc(job, dry_run);
    }
    cairn::GcResult gc = Unwrap(std::move(result));
    py::list decisions;
    for (const cairn::RetentionDecision& d : gc.decisions) {
      py::dict dd;
      dd["step"] = d.step;
      dd["keep"] = d.keep;
      dd["kept_by"] = d.kept_by;
      dd["reason"] = d.reason;
      decisions.append(dd);
    }
    py::dict out;
    out["decisions"] = decisions;
    out["deleted"] = gc.deleted;
    return out;
  }

  py::dict Rollback(const std::string& job, int64_t to_step, bool dry_run) {
    absl::StatusOr<cairn::RollbackResult> result;
    {
      py::gil_scoped_release release;
      result = client_->Rollback(job, to_step, dry_run);
    }
    cairn::RollbackResult r = Unwrap(std::move(result));
    py::dict out;
    out["deleted_steps"] = r.deleted_steps;
    out["aborted_steps"] = r.aborted_steps;
    return out;
  }

 private:
  explicit PyClient(std::unique_ptr<cairn::Client> client) : client_(std::move(client)) {}
  std::unique_ptr<cairn::Client> client_;
};

py::dict RestoreFromPrefix(const std::string& prefix_uri,
                           const std::optional<std::vector<std::string>>& tensors,
                           const std::optional<std::map<std::string, std::string>>& slices,
                           int threads, bool map_files, const std::optional<IntoMap>& into) {
  cairn::RestoreRequest request = ToRestoreRequest(tensors, slices, map_files, into);
  absl::StatusOr<cairn::RestoredTensors> result;
  {
    py::gil_scoped_release release;
    result = cairn::RestoreFromPrefix(prefix_uri, request, threads);
  }
  return RestoredToDict(Unwrap(std::move(result)), into);
}

}  // namespace

PYBIND11_MODULE(_cairn, m) {
  m.doc() = "Cairn checkpoint client (C++ binding; use the `cairn` package)";

  static py::exception<std::runtime_error> error(m, "Error", PyExc_RuntimeError);
  g_error = error.ptr();

  py::class_<PySaveHandle>(m, "SaveHandle")
      .def("wait", &PySaveHandle::Wait)
      .def("done", &PySaveHandle::Done)
      .def_property_readonly("durable_after_micros", &PySaveHandle::DurableAfterMicros);

  py::class_<PyClient>(m, "Client")
      .def_static("connect", &PyClient::Connect, "coordinator"_a, "token"_a = "", "tls_ca"_a = "",
                  "tls_cert"_a = "", "tls_key"_a = "", "rpc_timeout_ms"_a = 60000,
                  "save_timeout_ms"_a = 3600000, "restore_threads"_a = 4)
      .def("save", &PyClient::Save, "job"_a, "step"_a, "shard"_a, "num_shards"_a, "tensors"_a,
           "metrics"_a)
      // The handle keeps its client alive.
      .def("save_async", &PyClient::SaveAsync, "job"_a, "step"_a, "shard"_a, "num_shards"_a,
           "tensors"_a, "metrics"_a, py::keep_alive<0, 1>())
      .def("list", &PyClient::List, "job"_a)
      .def("get", &PyClient::Get, "job"_a, "step"_a = py::none())
      .def("restore", &PyClient::Restore, "job"_a, "step"_a = py::none(), "tensors"_a = py::none(),
           "slices"_a = py::none(), "map_files"_a = false, "into"_a = py::none())
      .def("pin", &PyClient::Pin, "job"_a, "step"_a, "pinned"_a = true)
      .def("set_policy", &PyClient::SetPolicy, "job"_a, "keep_last"_a = 0,
           "keep_every_steps"_a = 0, "keep_every_hours"_a = 0.0, "keep_best"_a = 0,
           "metric"_a = "", "maximize"_a = false)
      .def("gc", &PyClient::Gc, "job"_a, "dry_run"_a = false)
      .def("rollback", &PyClient::Rollback, "job"_a, "to_step"_a, "dry_run"_a = false);

  m.def("restore_from_prefix", &RestoreFromPrefix, "prefix_uri"_a, "tensors"_a = py::none(),
        "slices"_a = py::none(), "threads"_a = 4, "map_files"_a = false, "into"_a = py::none());
}
