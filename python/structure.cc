#include "python/structure.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "python/convert.h"
#include "python/torch_block.h"

namespace cairn_python {

using namespace pybind11::literals;  // NOLINT: pybind11's "name"_a keywords

namespace {

struct Strings {
  py::str s{"s"}, i{"i"}, tensor{"tensor"}, torch{"torch"}, dtype{"dtype"}, items{"items"},
      slash{"/"}, percent{"%"}, percent_escaped{"%25"}, slash_escaped{"%2F"};
};
const Strings& S() {
  static const Strings* const strings = new Strings();
  return *strings;
}

// ---------------------------------------------------------------- JSON

void AppendHex4(unsigned value, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHex[(value >> shift) & 0xf]);
}

// A JSON string as json.dumps writes it (ensure_ascii): ASCII as is but
// for '"', '\\' and control characters, everything else as \uXXXX
// (surrogate pairs above the BMP; lone surrogates as they are).
void AppendString(PyObject* text, std::string* out) {
  const int kind = PyUnicode_KIND(text);
  const void* data = PyUnicode_DATA(text);
  const Py_ssize_t length = PyUnicode_GET_LENGTH(text);
  out->push_back('"');
  for (Py_ssize_t i = 0; i < length; ++i) {
    if (kind == PyUnicode_1BYTE_KIND) {  // a run of plain ASCII at once (most names)
      const auto* bytes = static_cast<const unsigned char*>(data);
      Py_ssize_t end = i;
      while (end < length && bytes[end] >= 0x20 && bytes[end] < 0x7f && bytes[end] != '"' &&
             bytes[end] != '\\') {
        ++end;
      }
      out->append(reinterpret_cast<const char*>(bytes + i), static_cast<size_t>(end - i));
      if (end == length) break;
      i = end;
    }
    const Py_UCS4 c = PyUnicode_READ(kind, data, i);
    switch (c) {
      case '"': out->append("\\\""); continue;
      case '\\': out->append("\\\\"); continue;
      case '\n': out->append("\\n"); continue;
      case '\r': out->append("\\r"); continue;
      case '\t': out->append("\\t"); continue;
      case '\b': out->append("\\b"); continue;
      case '\f': out->append("\\f"); continue;
      default: break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out->push_back(static_cast<char>(c));
    } else if (c < 0x10000) {
      AppendHex4(c, out);
    } else {
      const Py_UCS4 v = c - 0x10000;
      AppendHex4(0xd800 | (v >> 10), out);
      AppendHex4(0xdc00 | (v & 0x3ff), out);
    }
  }
  out->push_back('"');
}

bool AppendRepr(PyTypeObject* type, PyObject* value, std::string* out) {
  PyObject* repr = type->tp_repr(value);
  if (repr == nullptr) {
    PyErr_Clear();
    return false;
  }
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(repr, &size);
  if (text != nullptr) out->append(text, static_cast<size_t>(size));
  Py_DECREF(repr);
  if (text == nullptr) PyErr_Clear();
  return text != nullptr;
}

// False for what is not written here (the caller uses json.dumps).
bool AppendJson(PyObject* value, int depth, std::string* out) {
  if (depth > 2000) return false;
  if (value == Py_None) {
    out->append("null");
  } else if (value == Py_True) {
    out->append("true");
  } else if (value == Py_False) {
    out->append("false");
  } else if (PyUnicode_Check(value)) {
    AppendString(value, out);
  } else if (PyLong_Check(value)) {
    return AppendRepr(&PyLong_Type, value, out);  // what json.dumps writes of an int subclass
  } else if (PyFloat_Check(value)) {
    if (!std::isfinite(PyFloat_AS_DOUBLE(value))) return false;
    return AppendRepr(&PyFloat_Type, value, out);
  } else if (PyDict_CheckExact(value)) {  // (an OrderedDict's order is its own)
    out->push_back('{');
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* item;
    bool first = true;
    while (PyDict_Next(value, &pos, &key, &item)) {
      if (!PyUnicode_Check(key)) return false;
      if (!first) out->push_back(',');
      first = false;
      AppendString(key, out);
      out->push_back(':');
      if (!AppendJson(item, depth + 1, out)) return false;
    }
    out->push_back('}');
  } else if (PyList_Check(value) || PyTuple_Check(value)) {
    const bool list = PyList_Check(value);
    const Py_ssize_t n = list ? PyList_GET_SIZE(value) : PyTuple_GET_SIZE(value);
    out->push_back('[');
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (i > 0) out->push_back(',');
      PyObject* item = list ? PyList_GET_ITEM(value, i) : PyTuple_GET_ITEM(value, i);
      if (!AppendJson(item, depth + 1, out)) return false;
    }
    out->push_back(']');
  } else if (py::isinstance<JsonText>(value)) {
    out->append(py::handle(value).cast<const JsonText&>().text);
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- entries

// The leaf name of `key` under `path`: path/key with '%' and '/' escaped
// (_state._join(path, _state._escape(str(key)))).
py::object ChildName(const py::str& path, const py::object& key_text) {
  py::object escaped = key_text;
  if (PyUnicode_FindChar(key_text.ptr(), '%', 0, PY_SSIZE_T_MAX, 1) >= 0 ||
      PyUnicode_FindChar(key_text.ptr(), '/', 0, PY_SSIZE_T_MAX, 1) >= 0) {
    escaped = key_text.attr("replace")(S().percent, S().percent_escaped)
                  .attr("replace")(S().slash, S().slash_escaped);
  }
  const Py_ssize_t path_length = PyUnicode_GET_LENGTH(path.ptr());
  if (path_length == 0) return escaped;
  const Py_ssize_t key_length = PyUnicode_GET_LENGTH(escaped.ptr());
  const Py_UCS4 max_char = std::max(PyUnicode_MAX_CHAR_VALUE(path.ptr()),
                                    PyUnicode_MAX_CHAR_VALUE(escaped.ptr()));
  py::object name = Steal(PyUnicode_New(path_length + 1 + key_length, max_char));
  if (PyUnicode_CopyCharacters(name.ptr(), 0, path.ptr(), 0, path_length) < 0 ||
      PyUnicode_WriteChar(name.ptr(), path_length, '/') < 0 ||
      PyUnicode_CopyCharacters(name.ptr(), path_length + 1, escaped.ptr(), 0, key_length) < 0) {
    throw py::error_already_set();
  }
  return name;
}

// The rank that writes whole tensor `name`: _state._owner, zlib's CRC-32 of
// its UTF-8; -1 for a name that has none (a lone surrogate).
int64_t Owner(PyObject* name, int64_t world_size) {
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(name, &size);
  if (utf8 == nullptr) {
    PyErr_Clear();
    return -1;
  }
  const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(utf8), static_cast<uInt>(size));
  return static_cast<int64_t>(crc % static_cast<uLong>(world_size));
}

class Entries {
 public:
  Entries(const py::str& path, const py::set& names, const py::dict& leaves,
          const py::handle& tensor_type, const py::dict& dtype_names, const py::str& reserved,
          TorchBlock* block, int64_t world_size, int64_t rank)
      : path_(path), names_(names), leaves_(leaves), tensor_type_(tensor_type),
        dtype_names_(dtype_names), reserved_(reserved), block_(block), world_size_(world_size),
        rank_(rank) {}

  void Reserve(size_t n) {
    records_.reserve(n);
    if (block_ != nullptr) block_->Reserve(n);
  }

  void Add(PyObject* key, PyObject* value) {
    Record r;
    r.kind = PyUnicode_CheckExact(key) ? S().s.ptr() : PyLong_CheckExact(key) ? S().i.ptr()
                                                                             : nullptr;
    r.key = py::reinterpret_borrow<py::object>(key);
    if (r.kind == nullptr || !Leaf(key, value, &r)) {
      r.value = py::reinterpret_borrow<py::object>(value);
      pending_.append(records_.size());
    }
    records_.push_back(std::move(r));
  }

  // (JsonText of the entries, []) when every entry is a tensor named here;
  // else (the entries as Python lists, the indices of those left to the
  // Python walk).
  py::tuple Result() {
    if (PyList_GET_SIZE(pending_.ptr()) == 0 && !records_.empty()) {
      return py::make_tuple(py::cast(Json()), pending_);
    }
    py::list entries(records_.size());
    for (size_t i = 0; i < records_.size(); ++i) {
      Record& r = records_[i];
      py::list entry(3);
      entry[0] = r.kind != nullptr ? py::reinterpret_borrow<py::object>(r.kind) : py::none();
      entry[1] = std::move(r.key);
      if (r.value) {
        entry[2] = std::move(r.value);
      } else {
        py::dict leaf;
        leaf[S().tensor] = std::move(r.name);
        leaf[S().torch] = std::move(r.dtype_name);
        entry[2] = std::move(leaf);
      }
      PyList_SET_ITEM(entries.ptr(), static_cast<Py_ssize_t>(i), entry.release().ptr());
    }
    return py::make_tuple(entries, pending_);
  }

 private:
  struct Record {
    PyObject* kind = nullptr;  // S().s or S().i (immortal for the process), or none
    py::object key;
    py::object value;  // set when the Python walk decides
    py::object name;   // else the tensor's leaf name and torch dtype name
    py::object dtype_name;
  };

  // Names a tensor value (exactly `tensor_type`, a dtype in `dtype_names`)
  // and puts it in the block (or `leaves`, for the Python walk) if this
  // rank writes it; false, nothing taken, for the Python walk to decide.
  bool Leaf(PyObject* key, PyObject* value, Record* r) {
    if (Py_TYPE(value) != reinterpret_cast<PyTypeObject*>(tensor_type_.ptr())) return false;
    const py::object dtype = Steal(PyObject_GetAttr(value, S().dtype.ptr()));
    PyObject* dtype_name = PyDict_GetItemWithError(dtype_names_.ptr(), dtype.ptr());  // borrowed
    if (dtype_name == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      return false;
    }
    const py::object text = PyUnicode_CheckExact(key) ? py::reinterpret_borrow<py::object>(key)
                                                      : Steal(PyObject_Str(key));
    py::object name = ChildName(path_, text);
    if (PyUnicode_GET_LENGTH(name.ptr()) == 0 || name.equal(reserved_)) return false;
    const int taken = PySet_Contains(names_.ptr(), name.ptr());
    if (taken < 0) throw py::error_already_set();
    if (taken) return false;
    bool python_walk = true;  // in `leaves`, for _items
    if (block_ != nullptr && world_size_ > 1) {
      const int64_t owner = Owner(name.ptr(), world_size_);
      if (owner < 0) return false;
      // Another rank's: named only.
      python_walk = owner == rank_ && !block_->TryAdd(value, dtype.ptr(), name.ptr());
    } else if (block_ != nullptr) {
      python_walk = !block_->TryAdd(value, dtype.ptr(), name.ptr());
    }
    if (block_ != nullptr) block_->Flush();  // to its save stream, if it has one
    if (PySet_Add(names_.ptr(), name.ptr()) < 0) throw py::error_already_set();
    if (python_walk && PyDict_SetItem(leaves_.ptr(), name.ptr(), value) < 0) {
      throw py::error_already_set();
    }
    r->name = std::move(name);
    r->dtype_name = py::reinterpret_borrow<py::object>(dtype_name);
    return true;
  }

  JsonText Json() const {
    JsonText json;
    json.entries = records_.size();
    std::string& out = json.text;
    out.reserve(records_.size() * 64);
    out.push_back('[');
    for (size_t i = 0; i < records_.size(); ++i) {
      const Record& r = records_[i];
      if (i > 0) out.push_back(',');
      out.append(r.kind == S().s.ptr() ? "[\"s\"," : "[\"i\",");
      if (r.kind == S().s.ptr()) {
        AppendString(r.key.ptr(), &out);
      } else if (!AppendRepr(&PyLong_Type, r.key.ptr(), &out)) {
        ValueError("internal: an int key without a repr");
      }
      out.append(",{\"tensor\":");
      AppendString(r.name.ptr(), &out);
      out.append(",\"torch\":");
      AppendString(r.dtype_name.ptr(), &out);
      out.append("}]");
    }
    out.push_back(']');
    return json;
  }

  const py::str& path_;
  const py::set& names_;
  const py::dict& leaves_;
  const py::handle tensor_type_;
  const py::dict& dtype_names_;
  const py::str& reserved_;
  TorchBlock* const block_;
  const int64_t world_size_;
  const int64_t rank_;
  std::vector<Record> records_;
  py::list pending_;
};

}  // namespace

py::tuple TensorDictEntries(const py::handle& mapping, const py::str& path, const py::set& names,
                            const py::dict& leaves, const py::handle& tensor_type,
                            const py::dict& dtype_names, const py::str& reserved,
                            const py::object& block, int64_t world_size, int64_t rank) {
  if (world_size < 1 || rank < 0 || rank >= world_size) ValueError("tensor_dict_entries: bad rank");
  TorchBlock* torch_block = block.is_none() ? nullptr : &block.cast<TorchBlock&>();
  Entries entries(path, names, leaves, tensor_type, dtype_names, reserved, torch_block,
                  world_size, rank);
  if (PyDict_CheckExact(mapping.ptr())) {
    entries.Reserve(static_cast<size_t>(PyDict_GET_SIZE(mapping.ptr())));
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* value;
    while (PyDict_Next(mapping.ptr(), &pos, &key, &value)) {
      // Held: torch's methods run below, and with them, in principle,
      // Python code that could change the dict.
      const py::object k = py::reinterpret_borrow<py::object>(key);
      const py::object v = py::reinterpret_borrow<py::object>(value);
      entries.Add(k.ptr(), v.ptr());
    }
  } else {  // an OrderedDict (its own order), any other Mapping
    const Py_ssize_t size = PyObject_Length(mapping.ptr());
    if (size < 0) throw py::error_already_set();
    entries.Reserve(static_cast<size_t>(size));
    for (const py::handle pair : mapping.attr(S().items)()) {
      const py::tuple kv = py::reinterpret_borrow<py::tuple>(pair);
      entries.Add(kv[0].ptr(), kv[1].ptr());
    }
  }
  return entries.Result();
}

py::object StructureJson(const py::handle& value) {
  std::string out;
  if (!AppendJson(value.ptr(), 0, &out)) return py::none();
  return Steal(PyUnicode_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size())));
}

void DefineStructure(py::module_& m) {
  py::class_<JsonText>(m, "JsonText")
      .def_property_readonly("text", [](const JsonText& j) { return j.text; })
      .def("__len__", [](const JsonText& j) { return j.entries; });
  m.def("tensor_dict_entries", &TensorDictEntries, "mapping"_a, "path"_a, "names"_a, "leaves"_a,
        "tensor_type"_a, "dtype_names"_a, "reserved"_a, "block"_a, "world_size"_a, "rank"_a);
  m.def("structure_json", &StructureJson, "value"_a);
}

}  // namespace cairn_python
