#include "python/convert.h"

#include <algorithm>
#include <pybind11/stl.h>

#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "storage/bundle/dtype.h"
#include "storage/bundle/tensor.h"
#include "python/torch_block.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn_python {

using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

PyObject* g_error = nullptr;

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

[[noreturn]] void ValueError(const std::string& message) { throw py::value_error(message); }

bool TensorBytes(cairn::DataType dtype, const std::vector<int64_t>& shape, uint64_t* bytes) {
  *bytes = cairn::DataTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(*bytes, static_cast<uint64_t>(d), bytes)) return false;
  }
  return true;
}

uint64_t TensorBytes(const std::string& what, cairn::DataType dtype,
                     const std::vector<int64_t>& shape) {
  uint64_t bytes;
  if (!TensorBytes(dtype, shape, &bytes)) ValueError(absl::StrCat(what, ": bad shape"));
  return bytes;
}

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

// `dtype` and the dtypes restored as `dtype`'s NumPy arrays (NumpyDtypeOf:
// NumPy has no bfloat16, float8 or quantized types and holds their raw bits).
std::vector<cairn::DataType> RawStorageOf(cairn::DataType dtype) {
  using cairn::DataType;
  static constexpr std::pair<DataType, DataType> kRawBits[] = {
      {DataType::kQint8, DataType::kInt8},       {DataType::kQint16, DataType::kInt16},
      {DataType::kQint32, DataType::kInt32},     {DataType::kQuint8, DataType::kUint8},
      {DataType::kQuint16, DataType::kUint16},   {DataType::kBfloat16, DataType::kUint16},
      {DataType::kFloat8E5M2, DataType::kUint8}, {DataType::kFloat8E4M3FN, DataType::kUint8},
  };
  std::vector<DataType> out = {dtype};
  for (const auto& [stored, raw] : kRawBits) {
    if (raw == dtype) out.push_back(stored);
  }
  return out;
}

// ---------------------------------------------------------------- save

// One tensor to save, with the Python buffer it borrows.
bool IsCContiguous(const py::buffer_info& info) {
  ssize_t expected = info.itemsize;
  for (ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] != 1 && info.strides[d] != expected) return false;
    expected *= info.shape[d];
  }
  return true;
}

namespace {

// The dtype of a tensor item given by name (item[2]); `itemsize` checked
// unless 0.
cairn::DataType NamedDtype(const std::string& what, const std::string& name, size_t itemsize) {
  cairn::DataType dtype;
  if (!cairn::DataTypeFromName(name, &dtype) || dtype == cairn::DataType::kString ||
      cairn::DataTypeSize(dtype) == 0) {
    ValueError(absl::StrCat(what, ": unknown dtype \"", name, "\""));
  }
  if (itemsize != 0 && itemsize != cairn::DataTypeSize(dtype)) {
    ValueError(absl::StrCat(what, ": dtype ", name, " has ", cairn::DataTypeSize(dtype),
                            "-byte elements but the buffer's items have ", itemsize,
                            " bytes (give bfloat16 as uint16 storage)"));
  }
  return dtype;
}

// The full shape and slice of item[3], item[4]: a whole tensor of
// `local_shape` when both are None.
void SetShapeAndSlice(const std::string& what, const py::tuple& item,
                      std::vector<int64_t> local_shape, cairn::SaveTensor* t) {
  if (item[3].is_none()) {
    if (!item[4].is_none()) ValueError(absl::StrCat(what, ": a slice needs the full shape"));
    t->shape = std::move(local_shape);
    return;
  }
  t->shape = item[3].cast<std::vector<int64_t>>();
  if (item[4].is_none()) ValueError(absl::StrCat(what, ": a full shape needs a slice"));
  absl::StatusOr<cairn::TensorSlice> slice = cairn::TensorSlice::Parse(item[4].cast<std::string>());
  if (!slice.ok()) RaiseStatus(slice.status());
  t->slice = *std::move(slice);
}

}  // namespace

// Converts the Python tensor list into SaveTensors. Each item is a tuple
// (name, buffer, dtype_name or None, full_shape or None, slice_text or None),
// or, for memory Python code vouches for (a contiguous CPU torch tensor, kept
// alive by the item), (name, owner, dtype_name, full_shape, slice_text,
// address, nbytes, local_shape): no buffer protocol round trip per tensor.
std::vector<cairn::SaveTensor> ToSaveTensors(const py::list& items, std::vector<HeldTensor>* held) {
  size_t n = 0;
  for (const py::handle& item_handle : items) {
    n += py::isinstance<TorchBlock>(item_handle) ? item_handle.cast<const TorchBlock&>().size() : 1;
  }
  std::vector<cairn::SaveTensor> out;
  out.reserve(n);
  held->reserve(items.size());
  for (const py::handle& item_handle : items) {
    if (py::isinstance<TorchBlock>(item_handle)) {  // many tensors at once (torch_block.h)
      std::vector<cairn::SaveTensor> block = item_handle.cast<TorchBlock&>().Take();
      out.insert(out.end(), std::make_move_iterator(block.begin()),
                 std::make_move_iterator(block.end()));
      continue;  // `items` keeps the block, and so its storages, alive
    }
    py::tuple item = py::reinterpret_borrow<py::object>(item_handle).cast<py::tuple>();
    if (item.size() != 5 && item.size() != 8) ValueError("internal: tensor item must be a 5- or 8-tuple");
    cairn::SaveTensor t;
    t.name = item[0].cast<std::string>();
    const std::string what = absl::StrCat("tensor \"", t.name, "\"");
    py::object obj = item[1];
    if (item.size() == 8) {
      const auto local_shape = item[7].cast<std::vector<int64_t>>();
      t.dtype = NamedDtype(what, item[2].cast<std::string>(), /*itemsize=*/0);
      const auto nbytes = item[6].cast<uint64_t>();
      const uint64_t expected = TensorBytes(what, t.dtype, local_shape);
      if (nbytes != expected) {
        ValueError(absl::StrCat(what, ": ", nbytes, " bytes where its shape and dtype need ", expected));
      }
      SetShapeAndSlice(what, item, local_shape, &t);
      t.data = absl::string_view(reinterpret_cast<const char*>(item[5].cast<uintptr_t>()), nbytes);
      out.push_back(std::move(t));
      held->push_back(HeldTensor{});  // `items` keeps the owner alive
      continue;
    }
    if (!item[2].is_none() && item[2].cast<std::string>() == "string") {
      t.dtype = cairn::DataType::kString;
      t.shape = item[3].cast<std::vector<int64_t>>();
      for (const py::handle& v : obj.cast<py::list>()) {
        if (PyUnicode_Check(v.ptr())) {
          t.strings.push_back(v.cast<std::string>());  // UTF-8
        } else if (PyBytes_Check(v.ptr())) {
          t.strings.push_back(std::string(v.cast<py::bytes>()));
        } else {
          throw py::type_error(absl::StrCat(what, ": a string tensor holds str or bytes, not ",
                                            std::string(py::str(v.get_type()))));
        }
      }
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      if (n != static_cast<int64_t>(t.strings.size())) {
        ValueError(absl::StrCat(what, ": ", t.strings.size(), " strings for ", n, " elements"));
      }
      out.push_back(std::move(t));
      held->push_back(HeldTensor{});
      continue;
    }
    if (!PyObject_CheckBuffer(obj.ptr())) {
      throw py::type_error(absl::StrCat(what, ": ", std::string(py::str(obj.get_type())),
                                        " does not expose the buffer protocol"));
    }
    auto info = std::make_unique<py::buffer_info>(obj.cast<py::buffer>().request());
    if (!IsCContiguous(*info)) {
      ValueError(absl::StrCat(what, ": the array is not C-contiguous (use numpy.ascontiguousarray)"));
    }
    if (!item[2].is_none()) {
      t.dtype = NamedDtype(what, item[2].cast<std::string>(), static_cast<size_t>(info->itemsize));
    } else {
      t.dtype = DataTypeOfFormat(info->format, info->itemsize);
      if (t.dtype == cairn::DataType::kInvalid) {
        ValueError(absl::StrCat(what, ": unsupported element format \"", info->format,
                                "\" (itemsize ", info->itemsize,
                                "); give dtype=... explicitly, e.g. \"bfloat16\" over uint16"));
      }
    }
    SetShapeAndSlice(what, item, std::vector<int64_t>(info->shape.begin(), info->shape.end()), &t);
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
  // C-order strides computed here, from Cairn's element size: pybind11 2.10
  // (Debian 12) would compute them from dtype.itemsize(), which reads a field
  // of NumPy's dtype struct that NumPy 2 moved, giving garbage strides (the
  // TensorFlow / JAX test environment has NumPy 2).
  std::vector<ssize_t> strides(shape.size());
  ssize_t stride = static_cast<ssize_t>(cairn::DataTypeSize(tensor.dtype));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<ssize_t>(shape[i], 1);
  }
  if (tensor.data.size() == 0) return py::array(dtype, shape, strides);
  auto* owned = new cairn::Buffer(std::move(tensor.data));
  py::capsule base(owned, [](void* p) { delete static_cast<cairn::Buffer*>(p); });
  return py::array(dtype, shape, strides, owned->data(), base);
}

// {name: (array, full_shape, slice_text or None)}
// Destinations restored into (Client.restore(into=...)) come back as the
// caller's own objects.

py::dict RestoredToDict(cairn::RestoredTensors restored, const std::optional<IntoMap>& into) {
  py::dict out;
  for (auto& [name, r] : restored) {
    py::object slice = r.slice ? py::object(py::str(r.slice->ToString())) : py::object(py::none());
    py::object value;
    if (into && into->count(name)) {
      value = into->at(name)[0];
    } else {
      value = ToArray(r.tensor);
    }
    out[py::str(name)] = py::make_tuple(value, py::tuple(py::cast(r.full_shape)), slice,
                                        py::str(cairn::DataTypeName(r.tensor.dtype)));
  }
  return out;
}

cairn::RestoreRequest ToRestoreRequest(const std::optional<std::vector<std::string>>& tensors,
                                       const std::optional<std::map<std::string, std::string>>& slices,
                                       bool map_files, const std::optional<IntoMap>& into) {
  cairn::RestoreRequest request;
  request.map_files = map_files;
  if (into) {
    for (const auto& [name, dest] : *into) {
      const std::string what = absl::StrCat("into[\"", name, "\"]");
      if (dest.size() != 2) ValueError("internal: an into item must be (buffer, dtype or None)");
      if (!PyObject_CheckBuffer(dest[0].ptr())) {
        throw py::type_error(absl::StrCat(what, ": ", std::string(py::str(dest[0].get_type())),
                                          " does not expose the buffer protocol"));
      }
      py::buffer_info info = dest[0].cast<py::buffer>().request(/*writable=*/true);
      if (!IsCContiguous(info)) ValueError(absl::StrCat(what, " must be C-contiguous"));
      request.into[name] = absl::Span<char>(static_cast<char*>(info.ptr),
                                            static_cast<size_t>(info.size * info.itemsize));
      request.into_shapes[name] = std::vector<int64_t>(info.shape.begin(), info.shape.end());
      std::vector<cairn::DataType>& accepts = request.into_dtypes[name];
      if (!dest[1].is_none()) {
        const std::string dtype_name = dest[1].cast<std::string>();
        cairn::DataType dtype;
        if (!cairn::DataTypeFromName(dtype_name, &dtype) ||
            static_cast<ssize_t>(cairn::DataTypeSize(dtype)) != info.itemsize) {
          ValueError(absl::StrCat(what, ": dtype \"", dtype_name, "\" does not fit ",
                                  info.itemsize, "-byte items"));
        }
        accepts.push_back(dtype);
      } else {
        const cairn::DataType dtype = DataTypeOfFormat(info.format, info.itemsize);
        if (dtype == cairn::DataType::kInvalid) {
          ValueError(absl::StrCat(what, ": unsupported element format \"", info.format, "\""));
        }
        // The dtypes NumPy holds as this one's raw storage (NumpyDtypeOf).
        accepts = RawStorageOf(dtype);
      }
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
  d["state"] = std::string(cairn::CheckpointStateName(s.state));
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

}  // namespace cairn_python
