#include "python/structure.h"

#include <cmath>
#include <string>

#include "python/convert.h"

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

// The leaf name of `key` under `path`: path/key with '%' and '/' escaped
// (_state._join(path, _state._escape(str(key)))).
py::object ChildName(const py::str& path, const py::object& key_text) {
  py::object escaped = key_text;
  if (PyUnicode_FindChar(key_text.ptr(), '%', 0, PY_SSIZE_T_MAX, 1) >= 0 ||
      PyUnicode_FindChar(key_text.ptr(), '/', 0, PY_SSIZE_T_MAX, 1) >= 0) {
    escaped = key_text.attr("replace")(S().percent, S().percent_escaped)
                  .attr("replace")(S().slash, S().slash_escaped);
  }
  if (PyUnicode_GET_LENGTH(path.ptr()) == 0) return escaped;
  return Steal(PyUnicode_FromFormat("%U/%U", path.ptr(), escaped.ptr()));
}

class Entries {
 public:
  Entries(const py::str& path, const py::dict& leaves, const py::handle& tensor_type,
          const py::dict& dtype_names, const py::str& reserved)
      : path_(path), leaves_(leaves), tensor_type_(tensor_type), dtype_names_(dtype_names),
        reserved_(reserved) {}

  void Add(PyObject* key, PyObject* value) {
    const py::handle kind = PyUnicode_CheckExact(key) ? py::handle(S().s)
                            : PyLong_CheckExact(key)  ? py::handle(S().i)
                                                      : py::handle();
    py::object leaf = kind ? Leaf(key, value) : py::object();
    if (!leaf) {
      pending_.append(PyList_GET_SIZE(entries_.ptr()));
      leaf = py::reinterpret_borrow<py::object>(value);
    }
    py::list entry(3);
    entry[0] = kind ? py::reinterpret_borrow<py::object>(kind) : py::none();
    entry[1] = py::reinterpret_borrow<py::object>(key);
    entry[2] = std::move(leaf);
    entries_.append(std::move(entry));
  }

  py::tuple Result() { return py::make_tuple(entries_, pending_); }

 private:
  // {"tensor": name, "torch": dtype} with the value added to the leaves, or
  // nothing when the Python walk must decide.
  py::object Leaf(PyObject* key, PyObject* value) {
    if (Py_TYPE(value) != reinterpret_cast<PyTypeObject*>(tensor_type_.ptr())) return {};
    const py::object dtype = Steal(PyObject_GetAttr(value, S().dtype.ptr()));
    PyObject* dtype_name = PyDict_GetItemWithError(dtype_names_.ptr(), dtype.ptr());  // borrowed
    if (dtype_name == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      return {};
    }
    const py::object text = PyUnicode_CheckExact(key) ? py::reinterpret_borrow<py::object>(key)
                                                      : Steal(PyObject_Str(key));
    py::object name = ChildName(path_, text);
    if (PyUnicode_GET_LENGTH(name.ptr()) == 0 || name.equal(reserved_)) return {};
    const int taken = PyDict_Contains(leaves_.ptr(), name.ptr());
    if (taken < 0) throw py::error_already_set();
    if (taken) return {};
    if (PyDict_SetItem(leaves_.ptr(), name.ptr(), value) < 0) throw py::error_already_set();
    py::dict leaf;
    leaf[S().tensor] = std::move(name);
    leaf[S().torch] = py::reinterpret_borrow<py::object>(dtype_name);
    return std::move(leaf);
  }

  const py::str& path_;
  const py::dict& leaves_;
  const py::handle tensor_type_;
  const py::dict& dtype_names_;
  const py::str& reserved_;
  py::list entries_;
  py::list pending_;
};

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
  } else {
    return false;
  }
  return true;
}

}  // namespace

py::tuple TensorDictEntries(const py::handle& mapping, const py::str& path, const py::dict& leaves,
                            const py::handle& tensor_type, const py::dict& dtype_names,
                            const py::str& reserved) {
  Entries entries(path, leaves, tensor_type, dtype_names, reserved);
  if (PyDict_CheckExact(mapping.ptr())) {
    // Nothing below runs Python code that could change the dict.
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* value;
    while (PyDict_Next(mapping.ptr(), &pos, &key, &value)) entries.Add(key, value);
  } else {  // an OrderedDict (its own order), any other Mapping
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
  m.def("tensor_dict_entries", &TensorDictEntries, "mapping"_a, "path"_a, "leaves"_a,
        "tensor_type"_a, "dtype_names"_a, "reserved"_a);
  m.def("structure_json", &StructureJson, "value"_a);
}

}  // namespace cairn_python
